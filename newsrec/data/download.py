"""Download helpers for every data set, with one signature.

``download_mind(root, "small")``, ``download_ebnerd(root, "small")`` and
``download_adressa(root, "one_week")`` all take ``(root, variant, *, base_url=None, url=None,
sha256=None, force=False, show_progress=True)`` and return the path that the next step reads:

============================  ======================================  ===========================
call                          returns                                 next step
============================  ======================================  ===========================
``download_mind``             ``root`` (``train/``, ``dev/`` [, ``test/``])  ``newsrec prepare ROOT``
``download_ebnerd``           ``root/ebnerd_<variant>/`` (extracted)   ``newsrec convert ebnerd``
``download_adressa``          ``root/downloads/<variant>.tar.gz``     ``newsrec convert adressa``
============================  ======================================  ===========================

Archives are written to ``root/downloads/`` under a temporary name and renamed when complete (an
interrupted download never leaves a truncated archive under the final name), checked against
``sha256`` when given and extracted with :func:`safe_extract_zip`. ``base_url`` is a mirror that
serves the official archive names (``https://`` or a ``file://`` folder of archives downloaded by
hand); ``url`` overrides the whole address. MIND has one archive per split: its ``url`` and
``sha256`` may be dicts by split (``urls=`` is the old name of ``url``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from newsrec.errors import DataFormatError
from newsrec.utils import progress

__all__ = [
    "ADRESSA_URLS",
    "EBNERD_URLS",
    "MIND_URLS",
    "archive_address",
    "download_adressa",
    "download_ebnerd",
    "download_mind",
    "fetch_archive",
    "flatten_single_folder",
    "safe_extract_zip",
]

_MIND_BASE = "https://mind201910small.blob.core.windows.net/release/"
_DEMO_BASE = "https://recodatasets.z20.web.core.windows.net/newsrec/"

#: Official archive names and where they were published. Storage has moved before: pass
#: ``base_url`` or ``urls`` to :func:`download_mind` to use a mirror or local copies.
MIND_URLS: dict[str, dict[str, str]] = {
    "demo": {
        "train": _DEMO_BASE + "MINDdemo_train.zip",
        "dev": _DEMO_BASE + "MINDdemo_dev.zip",
    },
    "small": {
        "train": _MIND_BASE + "MINDsmall_train.zip",
        "dev": _MIND_BASE + "MINDsmall_dev.zip",
    },
    "large": {
        "train": _MIND_BASE + "MINDlarge_train.zip",
        "dev": _MIND_BASE + "MINDlarge_dev.zip",
        "test": _MIND_BASE + "MINDlarge_test.zip",
    },
}


def safe_extract_zip(archive: str | os.PathLike, dest: str | os.PathLike) -> list[Path]:
    """Extract a zip archive into ``dest``, refusing absolute paths, ``..`` components, links
    and anything else that would land outside ``dest``.

    The archive's integrity (CRC of every member) is checked before anything is written.

    Returns:
        the extracted file paths.

    Raises:
        DataFormatError: the archive is corrupt or holds an unsafe member name.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as e:
        raise DataFormatError(archive, None, f"not a valid zip archive ({e})") from None
    out: list[Path] = []
    with zf:
        bad = zf.testzip()
        if bad is not None:
            raise DataFormatError(archive, None, f"member {bad!r} is corrupt (CRC mismatch)")
        for info in zf.infolist():
            name = info.filename
            mode = (info.external_attr >> 16) & 0o170000
            if mode == 0o120000:
                raise DataFormatError(archive, None, f"member {name!r} is a symbolic link")
            parts = Path(name.replace("\\", "/")).parts
            if name.startswith(("/", "\\")) or (parts and (":" in parts[0])) or ".." in parts:
                raise DataFormatError(archive, None, f"unsafe member path {name!r}")
            target = (root / name).resolve()
            if root != target and root not in target.parents:
                raise DataFormatError(archive, None, f"unsafe member path {name!r}")
        for info in zf.infolist():
            target = root / info.filename
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            out.append(target)
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fetch(url: str, target: Path, show_progress: bool) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=target.name + ".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url) as resp:  # noqa: S310
            total = int(resp.headers.get("Content-Length") or 0) or None
            with progress(
                total=total, desc=f"downloading {target.name}", unit="B", unit_scale=True, disable=not show_progress
            ) as bar:
                for chunk in iter(lambda: resp.read(1 << 20), b""):
                    out.write(chunk)
                    bar.update(len(chunk))
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def fetch_archive(
    address: str,
    archive: Path,
    what: str,
    *,
    sha256: str | None = None,
    force: bool = False,
    show_progress: bool = True,
    hint: str = "Download it by hand and pass base_url='file:///path/to/dir' "
    "(a folder holding the archive under its official name).",
) -> Path:
    """Download ``address`` to ``archive`` (unless it is there and not ``force``; written under a
    temporary name, then renamed) and check its SHA-256 when given. ``what`` names the data in
    the error, and ``hint`` says there how to use a hand-downloaded copy."""
    if force or not archive.exists():
        try:
            _fetch(address, archive, show_progress)
        except OSError as e:
            raise OSError(f"could not download {what} from {address}: {e}. {hint}") from e
    if sha256 and _sha256(archive) != sha256.lower():
        raise DataFormatError(archive, None, "SHA-256 checksum mismatch")
    return archive


def archive_address(official: str, base_url: str | None = None, url: str | None = None) -> tuple[str, str]:
    """``(address, file name)`` of a data set's archive: ``url`` if given, else the official
    file name under the mirror ``base_url`` (``https://`` or ``file://``), else ``official``."""
    name = official.rsplit("/", 1)[1]
    return url or (base_url.rstrip("/") + "/" + name if base_url else official), name


def flatten_single_folder(folder: Path, marker: str = "news.tsv") -> None:
    """Some archives wrap their files in one folder (``MINDsmall_train/news.tsv``): when
    ``folder/marker`` is missing but one subfolder holds it, lift that subfolder's contents."""
    if (folder / marker).exists():
        return
    subdirs = [p for p in folder.iterdir() if p.is_dir()]
    for sub in subdirs:
        if (sub / marker).exists():
            for item in sub.iterdir():
                os.replace(item, folder / item.name)
            sub.rmdir()
            return


#: the public EB-NeRD archives (see docs/data.md for the terms of use)
EBNERD_URLS = {
    "demo": "https://ebnerd-dataset.s3.eu-west-1.amazonaws.com/ebnerd_demo.zip",
    "small": "https://ebnerd-dataset.s3.eu-west-1.amazonaws.com/ebnerd_small.zip",
    "large": "https://ebnerd-dataset.s3.eu-west-1.amazonaws.com/ebnerd_large.zip",
    "test": "https://ebnerd-dataset.s3.eu-west-1.amazonaws.com/ebnerd_testset.zip",
}

#: the public Adressa archives (NTNU SmartMedia; research use under its terms, see docs/data.md)
ADRESSA_URLS = {
    "one_week": "http://reclab.idi.ntnu.no/dataset/one_week.tar.gz",
    "three_month": "http://reclab.idi.ntnu.no/dataset/three_month.tar.gz",
}


def _variant(table: Mapping, variant: str, what: str) -> None:
    if variant not in table:
        raise ValueError(f"{what}: the variant must be one of {sorted(table)}, got {variant!r}")


def _per_split(value, split: str):
    return value.get(split) if isinstance(value, Mapping) else value


def download_mind(
    root: str | os.PathLike,
    variant: str = "small",
    *,
    splits: Sequence[str] | None = None,
    base_url: str | None = None,
    url: str | Mapping[str, str] | None = None,
    sha256: str | Mapping[str, str] | None = None,
    force: bool = False,
    show_progress: bool = True,
    urls: Mapping[str, str] | None = None,
    size: str | None = None,
) -> Path:
    """Download and extract MIND (``"demo"``, ``"small"`` or ``"large"``) into
    ``root/{train,dev[,test]}/``; returns ``Path(root)``. ``splits``: which splits (default: all
    of the variant); ``url`` and ``sha256`` may be dicts by split; a split whose ``news.tsv`` and
    ``behaviors.tsv`` exist is skipped unless ``force`` (module docstring for the rest).
    ``urls=`` and ``size=`` are the old names of ``url`` and ``variant`` (deprecated)."""
    if urls is not None or size is not None:
        warnings.warn("download_mind: urls= and size= are now url= and variant=", DeprecationWarning, stacklevel=2)
        url, variant = url or urls, size or variant
    _variant(MIND_URLS, variant, "MIND")
    root = Path(root)
    official = MIND_URLS[variant]
    splits = list(splits) if splits is not None else list(official)
    for split in splits:
        if split not in official:
            raise ValueError(f"MIND {variant} has no split {split!r} (it has {list(official)})")
        split_dir = root / split
        if (split_dir / "news.tsv").exists() and (split_dir / "behaviors.tsv").exists() and not force:
            continue
        address, name = archive_address(official[split], base_url, _per_split(url, split))
        fetch_archive(
            address, root / "downloads" / name, f"MIND {variant} {split}", sha256=_per_split(sha256, split),
            force=force, show_progress=show_progress,
            hint="The archives have moved before; download them by hand and pass "
            "base_url='file:///path/to/dir' or url={...}.",
        )  # fmt: skip
        safe_extract_zip(root / "downloads" / name, split_dir)
        flatten_single_folder(split_dir)
    return root


def download_ebnerd(
    root: str | os.PathLike,
    variant: str = "small",
    *,
    base_url: str | None = None,
    url: str | None = None,
    sha256: str | None = None,
    force: bool = False,
    show_progress: bool = True,
    size: str | None = None,
) -> Path:
    """Download and extract EB-NeRD (``"demo"``, ``"small"``, ``"large"`` or ``"test"``) into
    ``root/ebnerd_<variant>/``; returns that folder, the ``SRC`` of
    :func:`~newsrec.data.convert_ebnerd`. The organisers publish no checksum, so none is built
    in. The data are released for research under Ekstra Bladet's terms (see docs/data.md).
    ``size=`` is the old name of ``variant`` (deprecated)."""
    if size is not None:
        warnings.warn("download_ebnerd: size= is now variant=", DeprecationWarning, stacklevel=2)
        variant = size
    _variant(EBNERD_URLS, variant, "EB-NeRD")
    address, name = archive_address(EBNERD_URLS[variant], base_url, url)
    target = Path(root) / name.removesuffix(".zip")
    if (target / "articles.parquet").exists() and not force:
        return target
    archive = Path(root) / "downloads" / name
    fetch_archive(address, archive, f"EB-NeRD {variant}", sha256=sha256, force=force, show_progress=show_progress)
    safe_extract_zip(archive, target)
    flatten_single_folder(target, "articles.parquet")
    return target


def download_adressa(
    root: str | os.PathLike,
    variant: str = "one_week",
    *,
    base_url: str | None = None,
    url: str | None = None,
    sha256: str | None = None,
    force: bool = False,
    show_progress: bool = True,
) -> Path:
    """Download Adressa (``"one_week"`` or ``"three_month"``) into ``root/downloads/``; returns
    the archive, which :func:`~newsrec.data.convert_adressa` reads as it is (no extraction). No
    checksum is published, so none is built in."""
    _variant(ADRESSA_URLS, variant, "Adressa")
    address, name = archive_address(ADRESSA_URLS[variant], base_url, url)
    archive = Path(root) / "downloads" / name
    fetch_archive(address, archive, f"Adressa {variant}", sha256=sha256, force=force, show_progress=show_progress)
    return archive
