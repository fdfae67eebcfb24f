"""The MIND file formats: their constants, readers and writers (every converter and the
synthetic generator write through :func:`tsv_field`, :func:`write_tsv_lines` and
:func:`format_times`); downloads are in :mod:`newsrec.data.download`.

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

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from newsrec.errors import DataFormatError
from newsrec.utils import progress

__all__ = [
    "BEHAVIORS_COLUMNS",
    "NEWS_COLUMNS",
    "TIME_FORMAT",
    "format_times",
    "iter_behaviors",
    "read_behaviors",
    "read_news",
    "tsv_field",
    "write_tsv_lines",
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


def check_file(path: str | os.PathLike) -> Path:
    """``Path(path)``, or ``FileNotFoundError`` naming it when it is not a file."""
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
    path = check_file(path)
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
    path = check_file(path)
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


# -- writing MIND files (the converters of other data sets) ----------------------------------------
def tsv_field(text: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, int]:
    """Text made fit for one MIND TSV field: nulls become ``""`` and every run of tabs, carriage
    returns and newlines one space. Returns the cleaned strings and how many values held such
    characters (for the converters' reports)."""
    text = pc.fill_null(pc.cast(text, pa.string()), "")
    changed = int(pc.sum(pc.match_substring_regex(text, r"[\t\r\n]")).as_py() or 0)
    return pc.replace_substring_regex(text, r"[\t\r\n]+", " "), changed


def format_times(seconds: np.ndarray | Sequence[int]) -> pa.Array:
    """MIND's time text of UTC epoch ``seconds``, as MIND writes it (``11/15/2019 8:55:22 AM``:
    month, day and hour without leading zeros; :data:`TIME_FORMAT` reads it back). Vectorised."""
    t = np.asarray(seconds, dtype=np.int64).astype("datetime64[s]")
    if not len(t):
        return pa.array([], pa.string())
    day_start = t.astype("datetime64[D]")
    month_start = t.astype("datetime64[M]")
    clock = (t - day_start).astype(np.int64)
    hour, minute, second = clock // 3600, clock // 60 % 60, clock % 60

    def text(values: np.ndarray, width: int = 0) -> pa.Array:
        return pa.array(np.char.zfill(values.astype(str), width) if width else values.astype(str), pa.string())

    date = pc.binary_join_element_wise(
        text(month_start.astype(np.int64) % 12 + 1),
        text((day_start - month_start).astype(np.int64) + 1),
        text(t.astype("datetime64[Y]").astype(np.int64) + 1970),
        "/",
    )
    clock_text = pc.binary_join_element_wise(text((hour + 11) % 12 + 1), text(minute, 2), text(second, 2), ":")
    noon = pa.array(np.where(hour < 12, "AM", "PM"), pa.string())
    return pc.binary_join_element_wise(date, clock_text, noon, " ")


def write_tsv_lines(f, columns: Sequence[pa.Array]) -> None:
    """Write one TSV line per row of ``columns`` (string arrays of one length, already cleaned
    with :func:`tsv_field`) to the text file ``f``; nothing for zero rows."""
    if len(columns[0]):
        f.write("\n".join(pc.binary_join_element_wise(*columns, "\t").to_pylist()))
        f.write("\n")
