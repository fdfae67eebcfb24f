"""Readers for the MIND file formats, and a download helper.

MIND (Wu et al., ACL 2020) ships each split as a folder::

    root/
      train/  news.tsv  behaviors.tsv  entity_embedding.vec  relation_embedding.vec
      dev/    news.tsv  behaviors.tsv  entity_embedding.vec  relation_embedding.vec
      test/   news.tsv  behaviors.tsv  ...                   (MIND-large only; no labels)
      word_vectors.txt   (optional: GloVe-format word vectors; the synthetic generator writes it)

``news.tsv`` has 8 tab-separated columns and no header: news id, category, subcategory, title,
abstract, URL, title entities and abstract entities (JSON lists). ``behaviors.tsv`` has 5:
impression id, user id, time (``11/15/2019 8:55:22 AM``), history (space-separated news ids,
oldest first, possibly empty) and impressions (``N1-1 N2-0``; no ``-label`` in the test split).

Files are read with pyarrow with quoting switched off (MIND titles contain quote characters).
Every malformed input raises :class:`newsrec.errors.DataFormatError` naming the file and line.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import torch
from torch import Tensor

from newsrec.core.files import atomic_path, atomic_write
from newsrec.errors import DataFormatError
from newsrec.utils import progress

__all__ = [
    "NEWS_COLUMNS",
    "BEHAVIORS_COLUMNS",
    "read_news",
    "read_behaviors",
    "iter_behaviors",
    "read_vectors",
    "download_mind",
    "safe_extract_zip",
    "MIND_URLS",
    "candidate_ranks",
    "write_prediction_file",
]

NEWS_COLUMNS = (
    "news_id",
    "category",
    "subcategory",
    "title",
    "abstract",
    "url",
    "title_entities",
    "abstract_entities",
)
BEHAVIORS_COLUMNS = ("impression_id", "user_id", "time", "history", "impressions")
TIME_FORMAT = "%m/%d/%Y %I:%M:%S %p"


def _csv_options(columns: Sequence[str], block_size: int | None = None):
    read = pacsv.ReadOptions(column_names=list(columns), block_size=block_size or 1 << 24)
    parse = pacsv.ParseOptions(delimiter="\t", quote_char=False, escape_char=False, ignore_empty_lines=False)
    convert = pacsv.ConvertOptions(
        column_types={c: pa.string() for c in columns},
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )
    return read, parse, convert


def _locate_bad_line(path: Path, num_columns: int, error: Exception) -> DataFormatError:
    """Scan ``path`` for the first line that pyarrow could not read and describe it."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            line = raw.rstrip(b"\n").rstrip(b"\r")
            if lineno == 1 and line.startswith(b"\xef\xbb\xbf"):
                line = line[3:]
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as e:
                return DataFormatError(path, lineno, f"not valid UTF-8 ({e.reason} at byte {e.start})")
            got = line.count(b"\t") + 1
            if got != num_columns:
                return DataFormatError(path, lineno, f"expected {num_columns} tab-separated columns, found {got}")
    return DataFormatError(path, None, f"could not be parsed: {error}")


def _check_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    return path


def read_news(path: str | os.PathLike) -> pa.Table:
    """Read a MIND ``news.tsv`` file.

    Returns:
        a ``pyarrow.Table`` with the string columns of :data:`NEWS_COLUMNS`, one row per news,
        in file order.

    Raises:
        DataFormatError: wrong column count, invalid UTF-8, an empty news id or a news id that
            occurs twice (the message names the line).
    """
    path = _check_file(path)
    read, parse, convert = _csv_options(NEWS_COLUMNS)
    if path.stat().st_size == 0:
        return pa.table({c: pa.array([], pa.string()) for c in NEWS_COLUMNS})
    try:
        table = pacsv.read_csv(path, read_options=read, parse_options=parse, convert_options=convert)
    except (pa.ArrowInvalid, UnicodeDecodeError) as e:
        raise _locate_bad_line(path, len(NEWS_COLUMNS), e) from None
    ids = table.column("news_id")
    empty = pc.equal(pc.utf8_length(ids), 0).to_numpy(zero_copy_only=False)
    if empty.any():
        raise DataFormatError(path, int(np.argmax(empty)) + 1, "empty news id")
    ids_np = np.asarray(ids.to_numpy(zero_copy_only=False), dtype=object)
    _, first, counts = np.unique(ids_np, return_index=True, return_counts=True)
    if (counts > 1).any():
        dup_rows = np.setdiff1d(np.arange(len(ids_np)), first)
        row = int(dup_rows.min())
        raise DataFormatError(path, row + 1, f"news id {ids_np[row]!r} occurs more than once")
    return table


def _split_tokens(column: pa.Array) -> pa.ListArray:
    """Split a string column on white space, dropping empty tokens."""
    lists = pc.utf8_split_whitespace(column)
    flat = pc.list_flatten(lists)
    keep = pc.greater(pc.utf8_length(flat), 0)
    parents = pc.list_parent_indices(lists).to_numpy()
    keep_np = keep.to_numpy(zero_copy_only=False)
    counts = np.bincount(parents[keep_np], minlength=len(column))
    offsets = np.zeros(len(column) + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), flat.filter(keep))


def _parse_behaviors_block(block: pa.RecordBatch, path: Path, first_line: int) -> pa.Table:
    n = block.num_rows
    # impression id: integer
    ids = block.column("impression_id")
    valid = pc.match_substring_regex(ids, r"^\s*-?[0-9]+\s*$").to_numpy(zero_copy_only=False)
    if not valid.all():
        row = int(np.argmin(valid))
        raise DataFormatError(path, first_line + row, f"impression id {ids[row].as_py()!r} is not an integer")
    trimmed = pc.utf8_trim_whitespace(ids)
    try:
        ints = pc.cast(trimmed, pa.int64())
    except pa.ArrowInvalid:  # out of int64's range: find the row (only long ids can overflow)
        long_rows = np.flatnonzero(pc.greater_equal(pc.utf8_length(trimmed), 19).to_numpy(zero_copy_only=False))
        row = next(int(r) for r in long_rows if not -(2**63) <= int(trimmed[int(r)].as_py()) < 2**63)
        raise DataFormatError(
            path, first_line + row, f"impression id {ids[row].as_py()!r} does not fit a 64-bit integer"
        ) from None
    # time
    times = pc.strptime(block.column("time"), format=TIME_FORMAT, unit="s", error_is_null=True)
    bad = pc.is_null(times).to_numpy(zero_copy_only=False)
    if not bad.any():  # strptime rolls impossible dates over (11/31 -> 12/01): check month and day
        parts = pc.extract_regex(block.column("time"), r"^\s*(?P<m>[0-9]{1,2})/(?P<d>[0-9]{1,2})/")
        month = pc.cast(pc.struct_field(parts, "m"), pa.int64()).to_numpy(zero_copy_only=False)
        day = pc.cast(pc.struct_field(parts, "d"), pa.int64()).to_numpy(zero_copy_only=False)
        rolled = (month != pc.month(times).to_numpy(zero_copy_only=False)) | (
            day != pc.day(times).to_numpy(zero_copy_only=False)
        )
        if rolled.any():
            row = int(np.argmax(rolled))
            raise DataFormatError(
                path, first_line + row, f"time {block.column('time')[row].as_py()!r} is not a real date"
            )
    if bad.any():
        row = int(np.argmax(bad))
        raise DataFormatError(
            path,
            first_line + row,
            f"time {block.column('time')[row].as_py()!r} does not match {TIME_FORMAT!r}",
        )
    user = block.column("user_id")
    empty_user = pc.equal(pc.utf8_length(user), 0).to_numpy(zero_copy_only=False)
    if empty_user.any():
        raise DataFormatError(path, first_line + int(np.argmax(empty_user)), "empty user id")
    history = _split_tokens(block.column("history"))
    impressions = _split_tokens(block.column("impressions"))
    lengths = pc.list_value_length(impressions).to_numpy(zero_copy_only=False)
    if (lengths == 0).any():
        raise DataFormatError(path, first_line + int(np.argmax(lengths == 0)), "impression has no candidates")
    tokens = impressions.flatten()
    parents = pc.list_parent_indices(impressions).to_numpy()
    parts = pc.extract_regex(tokens, r"^(?P<news>[^-]+?)(?:-(?P<label>[^-]*))?$")
    news_ids = pc.struct_field(parts, "news")
    labels = pc.struct_field(parts, "label")
    ok = pc.is_valid(parts).to_numpy(zero_copy_only=False)
    if not ok.all():
        k = int(np.argmin(ok))
        raise DataFormatError(path, first_line + int(parents[k]), f"malformed impression token {tokens[k].as_py()!r}")
    # extract_regex gives "" (not null) for an absent optional group: a token without "-label".
    label_str = pc.fill_null(labels, "")
    has_label = pc.greater(pc.utf8_length(label_str), 0).to_numpy(zero_copy_only=False)
    has_dash = pc.match_substring(tokens, "-").to_numpy(zero_copy_only=False)
    if (has_dash & ~has_label).any():
        k = int(np.argmax(has_dash & ~has_label))
        raise DataFormatError(path, first_line + int(parents[k]), f"malformed impression token {tokens[k].as_py()!r}")
    if has_label.any() and not has_label.all():
        k = int(np.argmin(has_label))
        raise DataFormatError(
            path,
            first_line + int(parents[k]),
            f"impression token {tokens[k].as_py()!r} has no label while others in the file do",
        )
    offsets = impressions.offsets
    candidates = pa.ListArray.from_arrays(offsets, news_ids)
    if has_label.all() and len(tokens):
        label_ok = pc.is_in(label_str, value_set=pa.array(["0", "1"])).to_numpy(zero_copy_only=False)
        if not label_ok.all():
            k = int(np.argmin(label_ok))
            raise DataFormatError(
                path,
                first_line + int(parents[k]),
                f"impression token {tokens[k].as_py()!r}: label must be 0 or 1",
            )
        label_values = pc.cast(label_str, pa.int8())
        label_list = pa.ListArray.from_arrays(offsets, label_values)
    else:
        label_list = pa.nulls(n, pa.list_(pa.int8()))
    return pa.table(
        {
            "impression_id": ints,
            "user_id": user,
            "time": times,
            "history": history,
            "candidates": candidates,
            "labels": label_list,
        }
    )


def iter_behaviors(
    path: str | os.PathLike, *, block_size: int = 1 << 26, show_progress: bool = False
) -> Iterator[pa.Table]:
    """Stream a MIND ``behaviors.tsv`` file as parsed blocks (bounded memory for MIND-large).

    Yields tables with the columns of :func:`read_behaviors`. ``block_size`` is in bytes of
    input text per block.
    """
    path = _check_file(path)
    if path.stat().st_size == 0:
        return
    read, parse, convert = _csv_options(BEHAVIORS_COLUMNS, block_size)
    line = 1
    labelled: bool | None = None
    try:
        reader = pacsv.open_csv(path, read_options=read, parse_options=parse, convert_options=convert)
    except (pa.ArrowInvalid, UnicodeDecodeError) as e:
        raise _locate_bad_line(path, len(BEHAVIORS_COLUMNS), e) from None
    bar = progress(
        total=path.stat().st_size, desc=f"reading {path.name}", unit="B", unit_scale=True, disable=not show_progress
    )
    with bar:
        while True:
            try:
                block = reader.read_next_batch()
            except StopIteration:
                break
            except (pa.ArrowInvalid, UnicodeDecodeError) as e:
                raise _locate_bad_line(path, len(BEHAVIORS_COLUMNS), e) from None
            table = _parse_behaviors_block(block, path, line)
            if table.num_rows:  # labelled or not holds for the whole file, across blocks too
                block_labelled = table.column("labels").null_count == 0
                if labelled is None:
                    labelled = block_labelled
                elif block_labelled != labelled:
                    state = "have labels" if block_labelled else "have no labels"
                    raise DataFormatError(
                        path,
                        line,
                        f"impression tokens {state} while earlier lines {'do not' if block_labelled else 'do'}: "
                        "a file is either labelled (train/dev) or unlabelled (test) throughout",
                    )
            line += block.num_rows
            bar.update(min(block_size, bar.total - bar.n))
            yield table


def read_behaviors(path: str | os.PathLike) -> pa.Table:
    """Read a MIND ``behaviors.tsv`` file.

    Returns:
        a ``pyarrow.Table`` with columns ``impression_id`` (int64), ``user_id`` (string), ``time``
        (timestamp[s]), ``history`` (list<string>, oldest first, possibly empty), ``candidates``
        (list<string>) and ``labels`` (list<int8>; null on every row of an unlabelled test file).

    For MIND-large use :func:`iter_behaviors` (or :class:`newsrec.data.Behaviors`, which
    streams) to keep memory bounded.
    """
    tables = list(iter_behaviors(path))
    if not tables:
        return pa.table(
            {
                "impression_id": pa.array([], pa.int64()),
                "user_id": pa.array([], pa.string()),
                "time": pa.array([], pa.timestamp("s")),
                "history": pa.array([], pa.list_(pa.string())),
                "candidates": pa.array([], pa.list_(pa.string())),
                "labels": pa.array([], pa.list_(pa.int8())),
            }
        )
    return pa.concat_tables(tables)


def read_vectors(
    path: str | os.PathLike,
    *,
    keys: set[str] | None = None,
    show_progress: bool = False,
) -> tuple[list[str], np.ndarray]:
    """Read pretrained vectors in GloVe text format (``word v1 v2 …``, space-separated) or
    MIND's ``.vec`` format (``Q42<TAB>v1<TAB>v2…<TAB>``).

    Args:
        path: the vector file.
        keys: if given, only rows whose key is in this set are parsed and returned (much faster
            for a large GloVe file and a small vocabulary).
        show_progress: show a progress bar.

    Returns:
        ``(keys, vectors)`` with ``vectors`` a float32 array of shape ``[len(keys), dim]``, in
        file order. A GloVe word that contains spaces keeps them (the last ``dim`` fields are the
        values). A key that occurs twice keeps its first row.

    Raises:
        DataFormatError: a non-numeric or non-finite value, or a row whose width differs from
            the first row's (the message names the line).
    """
    path = _check_file(path)
    out_keys: list[str] = []
    rows: list[list[str]] = []
    first_rows: list[int] = []
    seen: set[str] = set()
    dim: int | None = None
    tab: bool | None = None
    size = path.stat().st_size
    with (
        open(path, "rb") as f,  # binary, decoded line by line: a UTF-8 error names its own line
        progress(
            total=size,
            desc=f"reading {path.name}",
            unit="B",
            unit_scale=True,
            disable=not show_progress,
        ) as bar,
    ):
        lineno = 0
        while True:
            raw = f.readline()
            if not raw:
                break
            lineno += 1
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataFormatError(path, lineno, f"not valid UTF-8 ({e.reason})") from None
            if show_progress and lineno % 10000 == 0:
                bar.update(f.tell() - bar.n)
            if lineno == 1 and line.startswith("\ufeff"):
                line = line[1:]
            stripped = line.rstrip("\r\n")
            if not stripped.strip():
                continue
            if tab is None:
                tab = "\t" in stripped
            if tab:
                parts = [p for p in stripped.rstrip("\t ").split("\t")]
                key, values = parts[0], parts[1:]
            else:
                parts = stripped.split()
                if lineno == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                    continue  # word2vec-style header "count dim"
                if dim is None:
                    key, values = parts[0], parts[1:]
                else:
                    n_key = len(parts) - dim
                    # a multi-word key (GloVe 840B has a few) may not contain numbers
                    if n_key < 1 or any(_is_float(p) for p in parts[1:n_key]):
                        raise DataFormatError(path, lineno, f"expected {dim} values, found {len(parts) - 1}")
                    key, values = " ".join(parts[:n_key]), parts[n_key:]
            if dim is None:
                dim = len(values)
                if dim == 0:
                    raise DataFormatError(path, lineno, "row has a key but no values")
            elif len(values) != dim:
                raise DataFormatError(path, lineno, f"expected {dim} values, found {len(values)}")
            if (keys is not None and key not in keys) or key in seen:
                continue
            seen.add(key)
            out_keys.append(key)
            rows.append(values)
            first_rows.append(lineno)
    if dim is None:
        return [], np.zeros((0, 0), dtype=np.float32)
    try:
        vectors = np.array(rows, dtype=np.float32).reshape(len(rows), dim)
    except ValueError:
        for key_line, values in zip(first_rows, rows):
            try:
                np.array(values, dtype=np.float32)
            except ValueError:
                bad = next(v for v in values if not _is_float(v))
                raise DataFormatError(path, key_line, f"non-numeric value {bad!r}") from None
        raise
    finite = np.isfinite(vectors).all(axis=1)
    if not finite.all():
        k = int(np.argmin(finite))
        raise DataFormatError(path, first_rows[k], "non-finite value (NaN or inf)")
    return out_keys, vectors


def _is_float(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


# ---------------------------------------------------------------------------------------------
# download helper
# ---------------------------------------------------------------------------------------------

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


def download_mind(
    root: str | os.PathLike,
    size: str = "small",
    *,
    splits: Sequence[str] | None = None,
    base_url: str | None = None,
    urls: dict[str, str] | None = None,
    sha256: dict[str, str] | None = None,
    force: bool = False,
    show_progress: bool = True,
) -> Path:
    """Download and extract MIND into ``root/{train,dev,test}/``.

    Args:
        root: the data root (created if missing).
        size: ``"demo"``, ``"small"`` or ``"large"``.
        splits: which splits to fetch (default: all of that size: train and dev, plus test for
            ``"large"``).
        base_url: a mirror that serves the official archive names (e.g. a ``file://`` folder
            with archives downloaded by hand).
        urls: per-split URLs, overriding both the official and ``base_url`` locations.
        sha256: optional per-split checksums; a mismatch raises before extraction.
        force: re-download and re-extract even when ``root/<split>/news.tsv`` exists.
        show_progress: show progress bars.

    Returns:
        ``Path(root)``.

    Archives are downloaded to ``root/downloads/`` (temporary file, then renamed, so an
    interrupted download never leaves a truncated archive under the final name), checked
    and extracted safely with :func:`safe_extract_zip`.
    """
    if size not in MIND_URLS:
        raise ValueError(f"size must be one of {sorted(MIND_URLS)}, got {size!r}")
    root = Path(root)
    official = MIND_URLS[size]
    splits = list(splits) if splits is not None else list(official)
    for split in splits:
        if split not in official:
            raise ValueError(f"MIND {size} has no split {split!r} (it has {list(official)})")
        split_dir = root / split
        if (split_dir / "news.tsv").exists() and (split_dir / "behaviors.tsv").exists() and not force:
            continue
        url, name = archive_address(official[split], base_url, (urls or {}).get(split))
        fetch_archive(
            url,
            root / "downloads" / name,
            f"MIND {size} {split}",
            sha256=(sha256 or {}).get(split),
            force=force,
            show_progress=show_progress,
            hint="The archives have moved before; download them by hand and pass "
            "base_url='file:///path/to/dir' or urls={...}.",
        )
        safe_extract_zip(root / "downloads" / name, split_dir)
        flatten_single_folder(split_dir)
    return root


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


# -- writing MIND files (the converters of other data sets) ----------------------------------------
def tsv_field(text: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, int]:
    """Text made fit for one MIND TSV field: nulls become ``""`` and every run of tabs, carriage
    returns and newlines one space. Returns the cleaned strings and how many values held such
    characters (for the converters' reports)."""
    text = pc.fill_null(pc.cast(text, pa.string()), "")
    changed = int(pc.sum(pc.match_substring_regex(text, r"[\t\r\n]")).as_py() or 0)
    return pc.replace_substring_regex(text, r"[\t\r\n]+", " "), changed


def write_tsv_lines(f, columns: Sequence[pa.Array]) -> None:
    """Write one TSV line per row of ``columns`` (string arrays of one length, already cleaned
    with :func:`tsv_field`) to the text file ``f``; nothing for zero rows."""
    if len(columns[0]):
        f.write("\n".join(pc.binary_join_element_wise(*columns, "\t").to_pylist()))
        f.write("\n")


# -- the leaderboard file ---------------------------------------------------------------------------
def candidate_ranks(scores: Tensor | np.ndarray) -> list[int]:
    """Rank of every candidate in file order (1 = highest score; ties keep file order)."""
    s = torch.as_tensor(scores, dtype=torch.float64)
    order = torch.sort(s, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    ranks[order] = torch.arange(1, len(s) + 1)
    return ranks.tolist()


def write_prediction_file(
    path: str | os.PathLike,
    impression_ids: Sequence[int] | Iterable[int],
    scores: Iterable[Tensor | np.ndarray | Sequence[float]],
    *,
    zip_archive: bool | None = None,
    member: str = "prediction.txt",
) -> None:
    """Write the MIND leaderboard file: one line per impression, ``ImpressionID [r1,r2,...]``.

    ``scores`` holds each impression's candidate scores in file order; ranks start at 1. The
    file is written atomically. If ``path`` ends in ``.zip`` (or ``zip_archive`` is True) the
    archive holds a single ``member`` file: ``prediction.txt``, as the MIND leaderboard expects,
    or ``predictions.txt`` for the EB-NeRD (RecSys Challenge 2024) submission, whose lines have
    the same form (the impression id, then the rank of every in-view article in file order).
    """
    lines = []
    for iid, sc in zip(impression_ids, scores, strict=True):
        lines.append(f"{int(iid)} [{','.join(map(str, candidate_ranks(torch.as_tensor(sc))))}]")
    text = "\n".join(lines) + ("\n" if lines else "")
    path = os.fspath(path)
    if zip_archive or (zip_archive is None and path.endswith(".zip")):
        with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(member, text)
    else:
        with atomic_write(path, encoding="utf-8") as f:
            f.write(text)
