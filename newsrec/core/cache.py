"""On-disk cache of preprocessed arrays (``.npy`` files, never pickle).

An entry is a folder holding one ``.npy`` file per array and a ``manifest.json`` that records
each file's size and CRC-32 plus free-form JSON metadata. Writes are atomic (a temporary folder
renamed into place), and a truncated or corrupted entry is detected on load, reported with a
warning and treated as missing so that it is rebuilt. A lock file serialises builders, so that
several processes (DDP ranks, two shells) preparing the same root never corrupt it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
import time
import warnings
import zlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from newsrec.core.files import replace_folder

__all__ = ["ArrayCache", "cache_key", "file_fingerprint", "CacheCorruptWarning"]

MANIFEST = "manifest.json"


class CacheCorruptWarning(UserWarning):
    """A cache entry failed its size/checksum check and will be rebuilt."""


def file_fingerprint(path: str | os.PathLike) -> dict[str, Any]:
    """Name, size and modification time of a raw file (what a cache key depends on)."""
    st = Path(path).stat()
    return {"name": Path(path).name, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def cache_key(*parts: Any) -> str:
    """A short stable hash of JSON-serialisable ``parts`` (raw-file fingerprints, settings)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _crc32(path: Path) -> int:
    crc = 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            crc = zlib.crc32(chunk, crc)
    return crc


class ArrayCache:
    """A folder of named entries, each a set of numpy arrays plus JSON metadata."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self._warned: set[str] = set()  # one warning per entry and cache object

    def _warn(self, d: Path, message: str) -> None:
        if str(d) not in self._warned:
            self._warned.add(str(d))
            warnings.warn(message, CacheCorruptWarning, stacklevel=3)

    def path(self, name: str) -> Path:
        return self.root / name

    def save(self, name: str, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any] | None = None) -> Path:
        """Write an entry atomically (replacing an older one of the same name)."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=f".{name}.", suffix=".tmp"))
        try:
            files = {}
            for key, arr in arrays.items():
                arr = np.ascontiguousarray(arr)
                if arr.dtype == object:
                    raise TypeError(f"cache arrays must not be object arrays ({name}/{key})")
                f = tmp / f"{key}.npy"
                with open(f, "wb") as out:
                    np.save(out, arr, allow_pickle=False)
                    out.flush()
                    os.fsync(out.fileno())
                files[key] = {"size": f.stat().st_size, "crc32": _crc32(f)}
            manifest = {"files": files, "meta": json.loads(json.dumps(dict(meta or {}), default=str))}
            manifest["checksum"] = _manifest_checksum(manifest)
            manifest["created"] = time.time()
            _durable_write(tmp / MANIFEST, json.dumps(manifest, default=str))  # last: a manifest = complete
            replace_folder(tmp, self.path(name))  # a kill between its two renames is recovered by load()
            _fsync_dir(self.root)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return self.path(name)

    def load(self, name: str, *, mmap: bool = False, verify: bool = True) -> tuple[dict[str, np.ndarray], dict] | None:
        """Load an entry; ``None`` when it is missing or fails its checks (with a warning)."""
        d = self.path(name)
        mf = d / MANIFEST
        if not mf.exists():
            self._recover(name)
        if not mf.exists():
            if d.exists():
                self._warn(d, f"cache entry {d} has no manifest; rebuilding it")
            return None
        try:
            manifest = json.loads(mf.read_text())
            if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
                raise ValueError("manifest is not a JSON object with 'files'")
            if "checksum" not in manifest:
                return None  # written by a newsrec before manifests checked themselves: rebuilt quietly
            if manifest["checksum"] != _manifest_checksum(manifest):
                raise ValueError("manifest checksum mismatch (edited or corrupt)")
            arrays = {}
            for key, info in manifest["files"].items():
                f = d / f"{key}.npy"
                if not f.exists() or f.stat().st_size != info["size"]:
                    raise ValueError(f"{f.name}: missing or truncated")
                if verify and _crc32(f) != info["crc32"]:
                    raise ValueError(f"{f.name}: checksum mismatch")
                arrays[key] = np.load(f, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (ValueError, KeyError, TypeError, AttributeError, OSError, json.JSONDecodeError) as e:
            self._warn(d, f"cache entry {d} is corrupt ({e}); rebuilding it")
            return None
        return arrays, manifest["meta"]

    def _recover(self, name: str) -> None:
        """An entry whose writer was killed between moving the old entry aside and renaming the
        new one in: put the newest complete copy (its manifest is written last) back in place,
        the new one if it was complete, else the old one."""
        candidates = []
        for d in self.root.glob(f".{name}.*"):
            if d.is_dir() and (d / MANIFEST).exists():
                try:
                    created = float(json.loads((d / MANIFEST).read_text()).get("created", 0))
                except (OSError, ValueError, AttributeError):
                    continue
                candidates.append((created, d))
        target = self.path(name)
        for _, d in sorted(candidates, reverse=True):
            try:
                if target.exists() and not (target / MANIFEST).exists():
                    shutil.rmtree(target, ignore_errors=True)
                os.replace(d, target)
                _fsync_dir(self.root)
                return
            except OSError:
                continue  # another process recovered it first

    def load_or_build(
        self, name: str, build: Callable[[], tuple[Mapping[str, np.ndarray], Mapping[str, Any]]]
    ) -> tuple[dict[str, np.ndarray], dict]:
        """The entry ``name``, built with ``build() -> (arrays, meta)`` and saved when missing (or
        corrupt). The build runs under :meth:`lock`, and the entry is looked up again once the lock
        is held, so that of several processes preparing the same root only one builds it."""
        got = self.load(name)
        if got is None:
            with self.lock(name):
                got = self.load(name)  # another process may have built it meanwhile
                if got is None:
                    arrays, meta = build()
                    self.save(name, arrays, meta)
                    got = dict(arrays), dict(meta or {})
        return got

    @contextlib.contextmanager
    def lock(self, name: str, timeout: float = 3600.0) -> Iterator[None]:
        """An exclusive inter-process lock (a lock file created with O_EXCL).

        A lock whose owning process no longer exists (on this machine) is taken over.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        lock = self.root / f".{name}.lock"
        start = time.monotonic()
        while True:
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                os.write(fd, str(os.getpid()).encode())
                os.close(fd)
                break
            except OSError as e:
                if e.errno != errno.EEXIST:
                    raise
                if _stale(lock):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(lock)
                    continue
                if time.monotonic() - start > timeout:
                    raise TimeoutError(f"waited {timeout:.0f}s for {lock}; delete it if no process holds it") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(lock)


def _manifest_checksum(manifest: Mapping[str, Any]) -> int:
    """CRC-32 of the manifest's files and meta in canonical JSON: the manifest checks itself, so
    an edited vocabulary or id list in ``meta`` is caught like a changed ``.npy`` file."""
    body = json.dumps({"files": manifest.get("files"), "meta": manifest.get("meta")}, sort_keys=True, default=str)
    return zlib.crc32(body.encode("utf-8"))


def _stale(lock: Path) -> bool:
    """A lock is stale when the process that wrote it no longer exists (same machine)."""
    try:
        pid = int(lock.read_text() or "0")
    except (OSError, ValueError):
        return False
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _durable_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` and fsync it."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    """Make the renames inside ``path`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
