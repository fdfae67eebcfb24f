"""EB-NeRD's behaviors files streamed into MIND's ``behaviors.tsv``, one row group at a time
(:func:`newsrec.data.ebnerd.convert_ebnerd`; the rules are in that module's docstring). Also the
parquet checks the converter shares."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from newsrec.core.files import atomic_path
from newsrec.data.mind import format_times, write_tsv_lines
from newsrec.errors import DataFormatError
from newsrec.utils import progress

__all__ = [
    "ID_LISTS",
    "check_no_nulls",
    "check_schema",
    "convert_behaviors",
    "known_ids",
    "open_parquet",
    "parquet_kind",
]

_BEHAVIOR_COLUMNS = {
    "impression_id": "integer",
    "impression_time": "timestamp",
    "article_ids_inview": "list",
    "user_id": "integer",
}


def parquet_kind(t: pa.DataType) -> str:
    if pa.types.is_integer(t):
        return "integer"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return "list"
    if pa.types.is_timestamp(t):
        return "timestamp"
    return str(t)


#: list columns whose elements are article ids (integers)
ID_LISTS = ("article_ids_inview", "article_ids_clicked", "article_id_fixed")


def check_schema(path: Path, schema: pa.Schema, wanted: dict[str, str]) -> None:
    """Every ``wanted`` column is there with its kind; article-id lists hold integers."""
    for name, kind in wanted.items():
        if name not in schema.names:
            raise DataFormatError(path, None, f"has no column {name!r} (an EB-NeRD file has {', '.join(wanted)}, …)")
        t = schema.field(name).type
        got = parquet_kind(t)
        if got != kind:
            raise DataFormatError(path, None, f"column {name!r} is {t}, expected a {kind} column")
        if name in ID_LISTS and parquet_kind(t.value_type) != "integer":
            raise DataFormatError(path, None, f"column {name!r} is {t}, expected a list of integer article ids")


def check_no_nulls(table: pa.Table | pa.RecordBatch, columns, error) -> None:
    """A null in one of ``columns`` (or inside an article-id list) is ``error(row, message)``."""
    for name in columns:
        column = table.column(name)
        if column.null_count:
            raise error(int(np.argmax(pc.is_null(column).to_numpy(zero_copy_only=False))), f"{name} is null")
        if name in ID_LISTS:
            lists = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
            values = lists.flatten()
            if values.null_count:
                k = int(np.argmax(pc.is_null(values).to_numpy(zero_copy_only=False)))
                offsets = lists.offsets.to_numpy().astype(np.int64) - int(lists.offsets[0].as_py())
                raise error(int(np.searchsorted(offsets, k, side="right") - 1), f"a null article id in {name}")


def open_parquet(path: Path) -> pq.ParquetFile:
    if not path.exists():
        raise FileNotFoundError(
            f"{path} does not exist: EB-NeRD's layout is SRC/articles.parquet and "
            "SRC/<split>/{behaviors,history}.parquet"
        )
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise DataFormatError(path, None, f"is not a readable parquet file ({e})") from None


def known_ids(ids: np.ndarray, sorted_known: np.ndarray) -> np.ndarray:
    pos = np.searchsorted(sorted_known, ids)
    pos = np.minimum(pos, len(sorted_known) - 1) if len(sorted_known) else pos
    return (sorted_known[pos] == ids) if len(sorted_known) else np.zeros(len(ids), bool)


#: history rows handled at a time: the strings of every user stay, the int64 work arrays of one
#: chunk come and go (peak memory ~ the joined strings + one chunk, not ~40 bytes per click)
def convert_behaviors(
    path: Path,
    out: Path,
    known: np.ndarray,
    users: np.ndarray,
    history_rows: np.ndarray,
    history: pa.Array,
    missing: str,
    show_progress: bool,
) -> tuple[int, int, int]:
    pf = open_parquet(path)
    schema = pf.schema_arrow
    check_schema(path, schema, _BEHAVIOR_COLUMNS)
    labelled = "article_ids_clicked" in schema.names
    if labelled:
        check_schema(path, schema, {"article_ids_clicked": "list"})
    columns = list(_BEHAVIOR_COLUMNS) + (["article_ids_clicked"] if labelled else [])
    impression_ids = []
    n_imp = dropped = 0
    seen_users: set[int] = set()
    with atomic_path(out) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as f:
        groups = progress(range(pf.num_row_groups), desc=f"{path.parent.name} behaviors", disable=not show_progress)
        for g in groups:
            batch = pf.read_row_group(g, columns=columns)
            where = _Where(path, g, batch.column("impression_id"))
            check_no_nulls(batch, columns, where.error)
            impression_ids.append(batch.column("impression_id").to_numpy().astype(np.int64))
            flat, rows, ok = _inview(batch, known, missing, where)
            labels = _labels(batch, rows, flat, where) if labelled else None
            if (~ok).any():  # missing == "drop"
                dropped += int((~ok).sum())
                flat, rows = flat[ok], rows[ok]
                labels = labels[ok] if labels is not None else None
            imps, keep = _impression_text(flat, rows, labels, len(batch))
            hist, new_users = _history_text(batch, users, history_rows, history)
            seen_users |= new_users
            seconds = pc.cast(batch.column("impression_time"), pa.timestamp("s"), safe=False)  # MIND has whole seconds
            cols = [
                pc.cast(batch.column("impression_id"), pa.string()),
                pc.cast(batch.column("user_id"), pa.string()),
                format_times(pc.cast(seconds, pa.int64()).to_numpy(zero_copy_only=False)),
                hist,
                imps,
            ]
            mask = pa.array(keep)
            write_tsv_lines(
                f, [pc.filter(c.combine_chunks() if isinstance(c, pa.ChunkedArray) else c, mask) for c in cols]
            )
            n_imp += int(keep.sum())
        ids = np.concatenate(impression_ids) if impression_ids else np.zeros(0, np.int64)
        unique, counts = np.unique(ids, return_counts=True)
        if (counts > 1).any():
            twice = int(unique[counts > 1][0])
            groups = [g for g, part in enumerate(impression_ids) if (part == twice).any()]
            raise DataFormatError(path, None, f"impression_id {twice} occurs more than once (row groups {groups})")
    return n_imp, len(seen_users), dropped


class _Where:
    """Where a behaviors row group is, for error messages: ``row group G, offset R (impression_id I)``."""

    def __init__(self, path: Path, group: int, impression_ids) -> None:
        self.path, self.group, self.ids = path, group, impression_ids

    def error(self, row: int, what: str) -> DataFormatError:
        iid = self.ids[row].as_py() if hasattr(self.ids[row], "as_py") else self.ids[row]
        return DataFormatError(self.path, None, f"row group {self.group}, offset {row} (impression_id {iid}): {what}")


def _ragged(column: pa.ChunkedArray | pa.Array, n: int) -> tuple[np.ndarray, np.ndarray]:
    """A list column's flat values (int64, null → -1) and each value's row."""
    lists = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    offsets = lists.offsets.to_numpy().astype(np.int64)
    flat = pc.fill_null(lists.flatten(), -1).to_numpy().astype(np.int64)
    return flat, np.repeat(np.arange(n), np.diff(offsets))


def _inview(batch: pa.Table, known: np.ndarray, missing: str, where: _Where) -> tuple[np.ndarray, ...]:
    """The in-view ids (flat), their rows, and which are in articles.parquet (an unknown id is an
    error unless ``missing='drop'``)."""
    flat, rows = _ragged(batch.column("article_ids_inview"), len(batch))
    ok = known_ids(flat, known)
    if (~ok).any() and missing == "error":
        k = int(np.argmax(~ok))
        raise where.error(
            rows[k], f"in-view article id {flat[k]} is not in articles.parquet (missing='drop' drops such ids)"
        )
    return flat, rows, ok


def _labels(batch: pa.Table, rows: np.ndarray, flat: np.ndarray, where: _Where) -> np.ndarray:
    """Per in-view id, whether it was clicked; a clicked id that was not in view is an error."""
    c_flat, c_rows = _ragged(batch.column("article_ids_clicked"), len(batch))
    width = np.int64(2**32)
    view_keys, click_keys = rows * width + flat, c_rows * width + c_flat
    inside = np.isin(click_keys, view_keys)
    if not inside.all():
        k = int(np.argmin(inside))
        raise where.error(c_rows[k], f"clicked article id {c_flat[k]} is not in its article_ids_inview")
    return np.isin(view_keys, click_keys)


def _impression_text(
    flat: np.ndarray, rows: np.ndarray, labels: np.ndarray | None, n: int
) -> tuple[pa.Array, np.ndarray]:
    """MIND's impressions field (``id-label`` or, unlabelled, ``id``, space-separated) per row, and
    which rows keep a candidate (a row left without one is dropped)."""
    counts = np.bincount(rows, minlength=n)
    tokens = pc.cast(pa.array(flat), pa.string())
    if labels is not None:
        tokens = pc.binary_join_element_wise(tokens, pa.array(np.where(labels, "1", "0")), "-")
    offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]), pa.int32())
    return pc.binary_join(pa.ListArray.from_arrays(offsets, tokens), " "), counts > 0


def _history_text(batch: pa.Table, users: np.ndarray, history_rows: np.ndarray, history: pa.Array):
    """Each row's history field (its user's history as of the split; empty for a user that
    history.parquet lacks) and the set of such users."""
    user = batch.column("user_id").to_numpy().astype(np.int64)
    pos = np.minimum(np.searchsorted(users, user), max(len(users) - 1, 0))
    has = (users[pos] == user) if len(users) else np.zeros(len(user), bool)
    if not len(users):
        return pa.array([""] * len(user), pa.string()), set(user.tolist())
    hist = history.take(pa.array(history_rows[pos])).cast(pa.string())
    return pc.if_else(pa.array(has), hist, ""), set(user[~has].tolist())
