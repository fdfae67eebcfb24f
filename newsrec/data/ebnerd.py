"""EB-NeRD (Ekstra Bladet, RecSys Challenge 2024) → a MIND-format root.

``SRC`` is laid out as distributed (the demo / small / large downloads, and the test set)::

    SRC/articles.parquet
    SRC/train/{behaviors,history}.parquet
    SRC/validation/{behaviors,history}.parquet
    SRC/test/{behaviors,history}.parquet        (optional; also read from SRC/../ebnerd_testset/test)

:func:`convert_ebnerd` writes ``OUT/train`` from ``train``, ``OUT/dev`` from ``validation`` and
``OUT/test`` from ``test``, each with MIND's ``news.tsv`` and ``behaviors.tsv``, which every
newsrec command reads. The rules:

- **Impressions** keep their real in-view lists (``article_ids_inview``, in file order); a
  candidate's label is 1 when it is in ``article_ids_clicked``, else 0. A behaviors file without
  ``article_ids_clicked`` (the test set) is written without labels, which newsrec reads as ``-1``
  (unknown), so that ``newsrec predict`` writes ranks for the submission.
- **Histories** come from the split's ``history.parquet`` (``article_id_fixed``: the user's clicks
  in the weeks before the split's behaviors, oldest first): the history as of the split. A user
  without a history row gets an empty history.
- **Times**: ``impression_time`` in MIND's own form (``5/20/2023 7:00:00 AM``,
  :func:`~newsrec.data.mind.format_times`).
- **News**: ``news_id`` = ``article_id``; ``category`` = ``category_str``; ``subcategory`` = the
  first ``subcategory`` id (EB-NeRD gives ids, not names); ``title``; ``abstract`` = ``subtitle``;
  ``url``. ``body`` is not written (MIND has no body field). Tabs and line breaks inside texts
  become spaces (MIND's format cannot hold them), and their count is printed.
- **Entities**: each ``ner_clusters`` entry becomes a MIND title entity with ``WikidataId`` =
  ``"EB:" + the cluster text``, ``Type`` = the matching ``entity_groups`` entry, confidence 1.
  What is lost: EB-NeRD links no entity to Wikidata and ships no TransE vectors, so entity
  embeddings start random, and the clusters carry no character offsets, so entity order falls
  back to the file's order. ``topics``, ``sentiment_*``, ``premium``, the read-time and scroll
  columns and the user attributes have no MIND column and are not written.
- **Bad input** is one :class:`~newsrec.errors.DataFormatError` naming the file, the row group
  and the offset in it: a missing column, a column of the wrong type, a clicked id that is not
  in the in-view list, and (``missing="error"``, the default) an article id that
  ``articles.parquet`` lacks. ``missing="drop"`` drops such ids and prints how many.

The behaviors are streamed one row group at a time (vectorised with pyarrow), so memory is
bounded by the articles, the history table and one row group, never by the behaviors file.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from newsrec.core.files import atomic_path, staged_folder
from newsrec.data.ebnerd_behaviors import check_no_nulls, check_schema, convert_behaviors, known_ids, open_parquet
from newsrec.data.mind import tsv_field, write_tsv_lines
from newsrec.errors import DataFormatError

__all__ = ["convert_ebnerd", "EBNERD_SPLITS", "EBNeRDReport"]

#: EB-NeRD split folder → MIND split folder
EBNERD_SPLITS = {"train": "train", "validation": "dev", "test": "test"}

_ARTICLE_COLUMNS = {
    "article_id": "integer",
    "title": "string",
    "subtitle": "string",
    "category_str": "string",
    "subcategory": "list",
    "url": "string",
    "ner_clusters": "list",
    "entity_groups": "list",
}
_HISTORY_COLUMNS = {"user_id": "integer", "article_id_fixed": "list"}


@dataclass
class EBNeRDReport:
    """What a conversion wrote and what its policies changed (printed by ``newsrec convert``)."""

    news: int = 0
    impressions: dict[str, int] = field(default_factory=dict)
    users_without_history: dict[str, int] = field(default_factory=dict)
    dropped_ids: dict[str, int] = field(default_factory=dict)
    texts_cleaned: int = 0

    def lines(self) -> list[str]:
        out = [f"news: {self.news} articles ({self.texts_cleaned} texts had tabs or line breaks, made spaces)"]
        for split, n in self.impressions.items():
            out.append(
                f"{split}: {n} impressions, {self.users_without_history.get(split, 0)} users without a history row, "
                f"{self.dropped_ids.get(split, 0)} unknown article ids dropped"
            )
        return out


def _entities_json(clusters: pa.Array, groups: pa.Array) -> pa.Array:
    """MIND entity JSON lists from EB-NeRD's ``ner_clusters`` / ``entity_groups`` (vectorised)."""
    clusters = pa.array(clusters) if not isinstance(clusters, pa.Array) else clusters
    offsets = clusters.offsets
    flat = pc.fill_null(pc.cast(clusters.flatten(), pa.string()), "")
    flat_groups = pc.fill_null(pc.cast(groups.flatten(), pa.string()), "")
    if len(flat_groups) != len(flat):  # lists of other lengths: the group is unknown
        flat_groups = pa.array([""] * len(flat), pa.string())

    def escape(a):
        a = pc.replace_substring(a, "\\", "\\\\")
        a = pc.replace_substring(a, '"', '\\"')
        return pc.replace_substring_regex(a, r"[\t\r\n]+", " ")

    label, kind = escape(flat), escape(flat_groups)
    item = pc.binary_join_element_wise(
        '{"Label": "',
        label,
        '", "Type": "',
        kind,
        '", "WikidataId": "EB:',
        label,
        '", "Confidence": 1.0, "OccurrenceOffsets": [], "SurfaceForms": ["',
        label,
        '"]}',
        "",
    )
    joined = pc.binary_join(pa.ListArray.from_arrays(offsets, item), ", ")
    return pc.binary_join_element_wise("[", pc.fill_null(joined, ""), "]", "")


def _read_articles(src: Path) -> tuple[pa.Table, np.ndarray]:
    path = src / "articles.parquet"
    pf = open_parquet(path)
    check_schema(path, pf.schema_arrow, _ARTICLE_COLUMNS)
    table = pf.read(columns=list(_ARTICLE_COLUMNS))
    check_no_nulls(table, ["article_id"], functools.partial(_row_error, path, 0))
    ids = table.column("article_id").to_numpy()
    if len(np.unique(ids)) != len(ids):
        u, counts = np.unique(ids, return_counts=True)
        raise DataFormatError(path, None, f"article_id {int(u[counts > 1][0])} occurs more than once")
    return table, np.sort(ids).astype(np.int64)


def _news_columns(articles: pa.Table) -> tuple[list[pa.Array], int]:
    title, bad_t = tsv_field(articles.column("title"))
    subtitle, bad_s = tsv_field(articles.column("subtitle"))
    category, _ = tsv_field(articles.column("category_str"))
    sub = articles.column("subcategory").combine_chunks()
    first = pc.list_element(pc.fill_null(sub, pa.scalar([], sub.type)), 0) if len(sub) else sub
    subcategory = pc.fill_null(pc.cast(first, pa.string()), "") if len(sub) else pa.array([], pa.string())
    url, _ = tsv_field(articles.column("url"))
    entities = _entities_json(
        articles.column("ner_clusters").combine_chunks(), articles.column("entity_groups").combine_chunks()
    )
    ids = pc.cast(articles.column("article_id"), pa.string())
    empty = pa.array(["[]"] * len(ids), pa.string())
    return [ids.combine_chunks(), category, subcategory, title, subtitle, url, entities, empty], bad_t + bad_s


_HISTORY_CHUNK_ROWS = 100_000


def _row_error(path: Path, first_row: int, row: int, what: str) -> DataFormatError:
    return DataFormatError(path, None, f"row {first_row + row}: {what}")


def _histories(path: Path, known: np.ndarray, missing: str) -> tuple[np.ndarray, np.ndarray, pa.Array, int]:
    """The sorted user ids, the file row of each (``[U]``), the history strings in file order
    (article ids joined by spaces; user ``users[i]``'s is ``strings[rows[i]]``), and the drops.

    The file is read ``_HISTORY_CHUNK_ROWS`` rows at a time, so what stays resident is the
    joined strings, not the clicks as int64 and their string forms; they are not reordered (a
    second copy), the file rows map to them instead."""
    pf = open_parquet(path)
    check_schema(path, pf.schema_arrow, _HISTORY_COLUMNS)
    user_parts: list[np.ndarray] = []
    string_parts: list[pa.Array] = []
    dropped = first_row = 0
    for batch in pf.iter_batches(batch_size=_HISTORY_CHUNK_ROWS, columns=list(_HISTORY_COLUMNS)):
        check_no_nulls(batch, list(_HISTORY_COLUMNS), functools.partial(_row_error, path, first_row))
        users = batch.column("user_id").to_numpy(zero_copy_only=False).astype(np.int64)
        lists = batch.column("article_id_fixed")
        flat = pc.fill_null(lists.flatten(), -1).to_numpy(zero_copy_only=False).astype(np.int64)
        offsets = lists.offsets.to_numpy().astype(np.int64)
        offsets -= offsets[0]
        ok = known_ids(flat, known)
        bad = int((~ok).sum())
        if bad and missing == "error":
            k = int(np.argmax(~ok))
            row = int(np.searchsorted(offsets, k, side="right") - 1)
            raise DataFormatError(
                path,
                None,
                f"row {first_row + row} (user_id {users[row]}): article id {flat[k]} is not in articles.parquet "
                "(missing='drop' drops such ids)",
            )
        if bad:
            rows = np.repeat(np.arange(len(users)), np.diff(offsets))
            offsets = np.concatenate([[0], np.cumsum(np.bincount(rows[ok], minlength=len(users)))])
            flat = flat[ok]
        dropped += bad
        strings = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pc.cast(pa.array(flat), pa.string()))
        # large_string: a large history's strings together can pass string's 2 GiB offset limit
        string_parts.append(pc.fill_null(pc.binary_join(strings, " "), "").cast(pa.large_string()))
        user_parts.append(users)
        first_row += len(users)
    users = np.concatenate(user_parts) if user_parts else np.zeros(0, np.int64)
    joined = pa.concat_arrays(string_parts) if string_parts else pa.array([], pa.large_string())
    order = np.argsort(users, kind="stable")
    if len(np.unique(users)) != len(users):
        u, counts = np.unique(users, return_counts=True)
        raise DataFormatError(path, None, f"user_id {int(u[counts > 1][0])} has more than one history row")
    return users[order], order, joined, dropped


def _split_dir(src: Path, name: str) -> Path | None:
    for candidate in (src / name, src.parent / "ebnerd_testset" / name if name == "test" else None):
        if candidate is not None and (candidate / "behaviors.parquet").exists():
            return candidate
    return None


def convert_ebnerd(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    missing: str = "error",
    show_progress: bool = True,
) -> EBNeRDReport:
    """Convert an EB-NeRD download at ``src`` into a MIND-format root at ``out`` (module
    docstring: layout, rules, errors). Returns what was written."""
    if missing not in ("error", "drop"):
        raise ValueError(f"missing must be 'error' or 'drop', got {missing!r}")
    src, out = Path(src), Path(out)
    articles, known = _read_articles(src)
    news_cols, cleaned = _news_columns(articles)
    report = EBNeRDReport(news=articles.num_rows, texts_cleaned=cleaned)
    found = {name: _split_dir(src, name) for name in EBNERD_SPLITS}
    if found["train"] is None:
        raise FileNotFoundError(
            f"{src / 'train' / 'behaviors.parquet'} does not exist: EB-NeRD's layout is "
            "SRC/articles.parquet and SRC/<split>/{behaviors,history}.parquet"
        )
    with staged_folder(out) as work:  # the root appears whole, or not at all
        for name, folder in found.items():
            if folder is not None:
                _convert_split(folder, work / EBNERD_SPLITS[name], news_cols, known, missing, show_progress, report)
    return report


def _convert_split(folder: Path, target: Path, news_cols, known, missing: str, show_progress: bool, report) -> None:
    """One split: news.tsv, then behaviors.tsv with the split's histories (counted in ``report``)."""
    split = target.name
    target.mkdir(parents=True, exist_ok=True)
    with atomic_path(target / "news.tsv") as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as f:
        write_tsv_lines(f, news_cols)
    users, history_rows, history, dropped = _histories(folder / "history.parquet", known, missing)
    n, no_hist, dropped_b = convert_behaviors(
        folder / "behaviors.parquet", target / "behaviors.tsv", known, users, history_rows, history, missing,
        show_progress,
    )  # fmt: skip
    report.impressions[split] = n
    report.users_without_history[split] = no_hist
    report.dropped_ids[split] = dropped + dropped_b
