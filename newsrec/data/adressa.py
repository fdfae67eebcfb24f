"""Adressa (Gulla et al., WI 2017; GLORY's second benchmark) → a MIND-format root.

Adressa is distributed as ``one_week.tar.gz`` (7 days, ``one_week/20170101`` … ``20170107``) and
``three_month.tar.gz`` (``three_month/20170101`` … ``20170331``). Each day file holds JSON
lines, one reading event per line, with the published fields ``eventId``, ``userId``, ``time``
(unix seconds), ``id`` (the article; absent for front-page and other non-article events),
``title``, ``category1`` (``"section|subsection"``), ``publishtime``, ``activeTime``, ``url`` and
more (``city``, ``region``, ``deviceType``, ``keywords``, ``profile``, …, which newsrec does not
need). :func:`convert_adressa` reads the archive as distributed or its extracted folder.

**Protocol.** Adressa has no impressions. The official GLORY repository ships an Adressa
training config (``configs/adressa.yaml``: lr 1e-5, 5 epochs, batch 32, no entities,
8 neighbours, 2 hops, 20 × 20 heads) but no Adressa preprocessing. newsrec therefore follows the
protocol common in graph news recommendation on Adressa (GERL, and the works GLORY compares
with):

- The days split in time: the first ``history_days`` days give every user's history, the next
  ``train_days`` days give training impressions, and the last ``dev_days`` days give dev
  impressions. one_week defaults to 5 / 1 / 1. three_month defaults to all but the last 14 days
  for histories, then 7 and 7.
- Every click in the training or dev window is one impression. Its history is the user's
  clicks, oldest first, before the window (training: the history days; dev: the history and
  training days). Its candidates are the clicked article (label 1) plus ``num_negatives``
  (20) other articles (distinct, never the clicked one), drawn uniformly from the articles
  published within ``negative_window_hours`` (24) of the clicked one. Where that window holds
  too few articles, the rest come from the articles clicked that day. An impression may end up
  with fewer than ``num_negatives`` negatives only when the data hold too few articles.
- Sampling uses a NumPy generator seeded by ``seed``, so a seed gives the same root.

**Policies** (the counts are printed by ``newsrec convert adressa``):

- events without an article ``id`` (front pages, searches) are skipped;
- events of articles that no event gives a title are dropped, with their articles;
- events without a ``userId`` or a ``time`` are dropped (and counted by reason);
- duplicate events (the same user, article and second) are kept once;
- a malformed line (not a JSON object, a field of the wrong type, invalid UTF-8) is one error
  naming the file as distributed (``one_week.tar.gz:one_week/20170103`` or the folder's path)
  and its line.

The root is written under a temporary name and moved into place whole: a failed conversion
leaves no root, and never mixes an older root with new files.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from newsrec.core.files import atomic_path, staged_folder
from newsrec.data.mind import format_times, tsv_field, write_tsv_lines
from newsrec.errors import DataFormatError
from newsrec.utils import progress

__all__ = ["convert_adressa", "AdressaReport", "ADRESSA_VARIANTS"]

#: default (history, train, dev) days per variant; ``None`` history = every day before the rest
ADRESSA_VARIANTS = {"one_week": (5, 1, 1), "three_month": (None, 7, 7)}

_FIELDS = pa.schema(
    [
        ("userId", pa.string()),
        ("time", pa.int64()),
        ("id", pa.string()),
        ("title", pa.string()),
        ("category1", pa.string()),
        ("publishtime", pa.string()),
        ("url", pa.string()),
    ]
)


@dataclass
class AdressaReport:
    """What a conversion read, dropped and wrote."""

    events: int = 0
    without_article: int = 0
    without_user: int = 0
    without_time: int = 0
    without_title: int = 0
    duplicates: int = 0
    news: int = 0
    impressions: dict | None = None
    days: tuple = ()

    def lines(self) -> list[str]:
        return [
            f"events: {self.events} read, {self.without_article} without an article id skipped, "
            f"{self.without_user} without a userId and {self.without_time} without a time dropped, "
            f"{self.without_title} of articles without a title dropped, {self.duplicates} duplicates dropped",
            f"days: {', '.join(self.days)}",
            f"news: {self.news} articles",
            *(f"{split}: {n} impressions" for split, n in (self.impressions or {}).items()),
        ]


def _day_files(src: Path) -> Iterator[tuple[str, io.BufferedIOBase | Path]]:
    """``(name, file)`` of every day file, in date order, from a ``.tar.gz`` or a folder."""
    if src.is_file() and src.name.endswith((".tar.gz", ".tgz", ".tar")):
        with tarfile.open(src) as tar:
            members = sorted(
                (m for m in tar.getmembers() if m.isfile() and Path(m.name).name[:1].isdigit()),
                key=lambda m: Path(m.name).name,
            )
            if not members:
                raise DataFormatError(src, None, "holds no Adressa day files (one_week/20170101, …)")
            for m in members:  # named as in the archive: one_week.tar.gz:one_week/20170101
                yield f"{src}:{m.name}", io.BytesIO(tar.extractfile(m).read())
        return
    if not src.is_dir():
        raise FileNotFoundError(f"{src} is neither an Adressa archive (one_week.tar.gz) nor its extracted folder")
    files = sorted(p for p in src.rglob("*") if p.is_file() and p.name[:1].isdigit())
    if not files:
        raise DataFormatError(src, None, "holds no Adressa day files (one_week/20170101, …)")
    for p in files:
        yield str(p), p


def _read_day(name: str, f) -> pa.Table:
    """The events of one day file (``name``: where it is, for errors); a bad line is one error
    naming the file, the line and, for a value of the wrong type, the field."""
    options = pajson.ParseOptions(explicit_schema=_FIELDS, unexpected_field_behavior="ignore")
    try:
        table = pajson.read_json(f, parse_options=options, read_options=pajson.ReadOptions(block_size=1 << 24))
        table.validate(full=True)  # the reader lets invalid UTF-8 into strings
        return table
    except pa.ArrowException as e:  # find the line: parse line by line only on failure
        data = f.getvalue() if isinstance(f, io.BytesIO) else Path(f).read_bytes()
        _raise_at_bad_line(name, data)
        raise DataFormatError(name, None, f"unreadable events ({e})") from None


_KINDS = {"int64": (int, "a whole number"), "string": (str, "a string")}


def _raise_at_bad_line(name: str, data: bytes) -> None:
    """Find the first line that is not a JSON event of the expected field types and raise."""
    for k, raw in enumerate(data.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            event = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as err:
            raise DataFormatError(name, k, f"not valid UTF-8 ({err.reason} at byte {err.start})") from None
        except ValueError as err:
            raise DataFormatError(name, k, f"not a JSON event ({err})") from None
        if not isinstance(event, dict):
            raise DataFormatError(name, k, f"not a JSON object but a JSON {type(event).__name__}")
        for fld in _FIELDS:
            value, (kind, said) = event.get(fld.name), _KINDS[str(fld.type)]
            if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
                raise DataFormatError(name, k, f"field {fld.name!r} is {value!r}, expected {said}")


def _publish_seconds(text: pa.Array) -> np.ndarray:
    """Adressa's ``publishtime`` (``2017-01-01T08:45:00.000Z``) as unix seconds (NaN if absent)."""
    stamp = pc.strptime(
        pc.utf8_slice_codeunits(pc.fill_null(text, ""), 0, 19), format="%Y-%m-%dT%H:%M:%S", unit="s", error_is_null=True
    )
    return pc.cast(stamp, pa.int64()).to_numpy(zero_copy_only=False).astype(np.float64)


def convert_adressa(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    variant: str = "one_week",
    history_days: int | None = None,
    train_days: int | None = None,
    dev_days: int | None = None,
    num_negatives: int = 20,
    negative_window_hours: float = 24.0,
    seed: int = 0,
    show_progress: bool = True,
) -> AdressaReport:
    """Convert Adressa (the archive or its folder) into a MIND-format root at ``out`` with
    ``train/`` and ``dev/`` (module docstring: protocol and policies). ``history_days``,
    ``train_days`` and ``dev_days`` override the variant's defaults."""
    if variant not in ADRESSA_VARIANTS:
        raise ValueError(f"variant must be one of {sorted(ADRESSA_VARIANTS)}, got {variant!r}")
    src, out = Path(src), Path(out)
    report = AdressaReport()
    events, report.days = _read_events(src, show_progress)
    report.events = events.num_rows
    d_hist, d_train, d_dev = _day_counts(variant, len(report.days), history_days, train_days, dev_days)
    clicks = _Clicks.of(events, report)
    news_cols, publish = _news(clicks)
    report.news = len(clicks.item_ids)
    rng = np.random.default_rng(seed)
    windows = {"train": (d_hist, d_hist + d_train), "dev": (d_hist + d_train, d_hist + d_train + d_dev)}
    report.impressions = {}
    impression_id = 0
    with staged_folder(out) as work:  # the root appears whole, or not at all
        for split, (lo, hi) in windows.items():
            impression_id = _write_split(work / split, clicks, news_cols, publish, lo, hi, rng, impression_id,
                                         num_negatives, negative_window_hours, report)  # fmt: skip
    return report


def _write_split(target: Path, clicks, news_cols, publish, lo, hi, rng, impression_id, num_negatives, window, report):
    """One split's news.tsv and behaviors.tsv (the clicks of days ``lo..hi-1``, counted in
    ``report``); returns the last impression id written."""
    target.mkdir(parents=True, exist_ok=True)
    with atomic_path(target / "news.tsv") as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as f:
        write_tsv_lines(f, news_cols)
    histories = _histories_before(clicks, lo)
    inside = (clicks.day >= lo) & (clicks.day < hi)
    c_user, c_item, c_time = clicks.user[inside], clicks.item[inside], clicks.time[inside]
    m = len(c_user)
    neg, valid = _negatives(rng, clicks, publish, c_item, clicks.day[inside], num_negatives, window)
    cols = [
        pa.array(np.arange(impression_id + 1, impression_id + m + 1).astype(str).tolist(), pa.string()),
        pa.array(clicks.user_ids[c_user].tolist(), pa.string()),
        format_times(c_time),
        histories.take(pa.array(c_user)),
        _impression_text(rng, clicks.item_ids, c_item, neg, valid),
    ]
    with atomic_path(target / "behaviors.tsv") as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as f:
        write_tsv_lines(f, cols)
    report.impressions[target.name] = m
    return impression_id + m


def _read_events(src: Path, show_progress: bool) -> tuple[pa.Table, tuple[str, ...]]:
    """Every event of every day file, with its day's index (``day``), and the day files' names."""
    tables, days = [], []
    files = list(_day_files(src))
    for day, (name, f) in enumerate(progress(files, desc="Adressa days", disable=not show_progress)):
        t = _read_day(name, f)
        tables.append(t.append_column("day", pa.array(np.full(t.num_rows, day, np.int32))))
        days.append(Path(name.rsplit(":", 1)[-1]).name)
    return pa.concat_tables(tables), tuple(days)


def _day_counts(variant: str, n_days: int, history: int | None, train: int | None, dev: int | None):
    """``(history, train, dev)`` days: the variant's defaults unless given."""
    d_hist, d_train, d_dev = ADRESSA_VARIANTS[variant]
    d_train = train if train is not None else d_train
    d_dev = dev if dev is not None else d_dev
    d_hist = history if history is not None else (d_hist if d_hist is not None else n_days - d_train - d_dev)
    if d_hist < 1 or d_hist + d_train + d_dev > n_days:
        raise ValueError(f"{n_days} day files cannot hold {d_hist} history + {d_train} train + {d_dev} dev days")
    return d_hist, d_train, d_dev


@dataclass
class _Clicks:
    """The clicks that pass the policies, sorted by (user, time, article), as integer ids into
    ``user_ids`` / ``item_ids``, with the events they come from (``events``)."""

    events: pa.Table
    user_ids: np.ndarray
    item_ids: np.ndarray
    user: np.ndarray
    item: np.ndarray
    time: np.ndarray
    day: np.ndarray

    @classmethod
    def of(cls, events: pa.Table, report: AdressaReport) -> _Clicks:
        """Drop (and count in ``report``) events without an article, without a user, of articles
        that never have a title, and exact duplicates (user, article, second)."""
        has_article = pc.and_(pc.is_valid(events["id"]), pc.greater(pc.utf8_length(pc.fill_null(events["id"], "")), 0))
        report.without_article = events.num_rows - int(pc.sum(has_article).as_py() or 0)
        events = events.filter(has_article)
        has_user = pc.is_valid(events["userId"])
        report.without_user = events.num_rows - int(pc.sum(has_user).as_py() or 0)
        events = events.filter(has_user)
        has_time = pc.is_valid(events["time"])
        report.without_time = events.num_rows - int(pc.sum(has_time).as_py() or 0)
        events = events.filter(has_time)
        titled = pc.greater(pc.utf8_length(pc.fill_null(events["title"], "")), 0)
        keep = pc.is_in(events["id"], value_set=pc.unique(events.filter(titled)["id"]))
        report.without_title = events.num_rows - int(pc.sum(keep).as_py() or 0)
        events = events.filter(keep)
        users_s, items_s = events["userId"].combine_chunks(), events["id"].combine_chunks()
        user_ids, user = np.unique(
            np.asarray(users_s.to_numpy(zero_copy_only=False), dtype=object), return_inverse=True
        )
        item_ids, item = np.unique(
            np.asarray(items_s.to_numpy(zero_copy_only=False), dtype=object), return_inverse=True
        )
        time, day = events["time"].to_numpy().astype(np.int64), events["day"].to_numpy()
        order = np.lexsort((item, time, user))
        user, item, time, day = user[order], item[order], time[order], day[order]
        dup = np.zeros(len(user), bool)
        dup[1:] = (user[1:] == user[:-1]) & (item[1:] == item[:-1]) & (time[1:] == time[:-1])
        report.duplicates = int(dup.sum())
        return cls(events, user_ids, item_ids, user[~dup], item[~dup], time[~dup], day[~dup])


def _news(clicks: _Clicks) -> tuple[list[pa.Array], np.ndarray]:
    """news.tsv's columns (the first titled event of each article gives its text; ``category1``
    ``a|b`` gives category ``a`` and subcategory ``b``) and each article's publish time (NaN:
    unknown), in ``item_ids`` order."""
    events = clicks.events
    first_titled = events.filter(pc.greater(pc.utf8_length(pc.fill_null(events["title"], "")), 0))
    ft_items = np.asarray(first_titled["id"].combine_chunks().to_numpy(zero_copy_only=False), dtype=object)
    _, first = np.unique(ft_items, return_index=True)  # sorted like item_ids
    meta = first_titled.take(pa.array(first))
    parts = pc.split_pattern(pc.fill_null(meta["category1"], "").combine_chunks(), "|", max_splits=1)
    cat = pc.fill_null(pc.list_element(parts, 0), "")
    two = pc.if_else(pc.greater(pc.list_value_length(parts), 1), parts, pa.scalar(["", ""], parts.type))
    sub = pc.fill_null(pc.list_element(two, 1), "")
    n = len(clicks.item_ids)
    empty = pa.array(["[]"] * n, pa.string())
    news_cols = [
        pa.array(clicks.item_ids.tolist(), pa.string()),
        tsv_field(cat)[0],
        tsv_field(sub)[0],
        tsv_field(meta["title"].combine_chunks())[0],
        pa.array([""] * n, pa.string()),
        tsv_field(meta["url"].combine_chunks())[0],
        empty,
        empty,
    ]
    return news_cols, _publish_seconds(meta["publishtime"].combine_chunks())


def _histories_before(clicks: _Clicks, first_day: int) -> pa.Array:
    """Per user (``user_ids`` order), the clicks before ``first_day``, oldest first, as MIND's
    history field."""
    before = clicks.day < first_day
    h_users, h_items = clicks.user[before], clicks.item[before]
    h_order = np.lexsort((clicks.time[before], h_users))
    h_users, h_items = h_users[h_order], h_items[h_order]
    users = np.arange(len(clicks.user_ids))
    lengths = np.searchsorted(h_users, users, side="right") - np.searchsorted(h_users, users)
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))
    names = pa.array(clicks.item_ids[h_items].tolist(), pa.string())
    return pc.fill_null(pc.binary_join(pa.ListArray.from_arrays(offsets, names), " "), "")


def _negatives(rng, clicks: _Clicks, publish: np.ndarray, c_item, c_day, num_negatives: int, window_hours: float):
    """``num_negatives`` non-clicked articles per click, drawn uniformly among the articles
    published within ``window_hours`` of the clicked one (or, where fewer are, among that day's
    clicked articles); never the clicked article, no repeats. Returns ``(neg [m, K], valid)``."""
    pub = np.where(np.isnan(publish), np.inf, publish)
    by_pub = np.argsort(pub, kind="stable")
    pub_sorted = pub[by_pub]
    half = window_hours * 3600
    a = np.searchsorted(pub_sorted, pub[c_item] - half)
    b = np.searchsorted(pub_sorted, pub[c_item] + half, side="right")
    u = rng.random((len(c_item), 2 * num_negatives))
    size = b - a
    wide = size > num_negatives
    cand = np.where(
        wide[:, None], by_pub[np.minimum(a[:, None] + (u * size[:, None]).astype(np.int64), len(by_pub) - 1)], -1
    )
    for d in np.unique(c_day):  # the day's clicked articles for narrow windows
        pool = np.unique(clicks.item[clicks.day == d])
        rows = np.nonzero(~wide & (c_day == d))[0]
        if len(rows):
            cand[rows] = pool[(u[rows] * len(pool)).astype(np.int64)]
    cand = np.where(cand == c_item[:, None], -1, cand)
    s = np.sort(cand, axis=1)
    s[:, 1:] = np.where(s[:, 1:] == s[:, :-1], -1, s[:, 1:])
    s = np.where(s < 0, np.iinfo(np.int64).max, s)
    pick = np.argsort(rng.random(s.shape) + (s == np.iinfo(np.int64).max), axis=1)[:, :num_negatives]
    neg = np.take_along_axis(s, pick, axis=1)
    return neg, neg != np.iinfo(np.int64).max


def _impression_text(rng, item_ids: np.ndarray, c_item: np.ndarray, neg: np.ndarray, valid: np.ndarray) -> pa.Array:
    """MIND's impressions field: the clicked article (label 1) and its negatives (label 0) in a
    seeded random order."""
    m = len(c_item)
    flat_items = np.concatenate([c_item[:, None], np.where(valid, neg, 0)], axis=1)
    flat_labels = np.concatenate([np.ones((m, 1), bool), np.zeros_like(valid)], axis=1)
    keep = np.concatenate([np.ones((m, 1), bool), valid], axis=1)
    perm = np.argsort(rng.random(keep.shape) + ~keep * 2, axis=1)  # shuffle the real ones
    kept = np.take_along_axis(keep, perm, 1)
    flat_items = np.take_along_axis(flat_items, perm, 1)[kept]
    flat_labels = np.take_along_axis(flat_labels, perm, 1)[kept]
    offsets = np.concatenate([[0], np.cumsum(valid.sum(1) + 1)]).astype(np.int64)
    tokens = pc.binary_join_element_wise(
        pa.array(item_ids[flat_items].tolist(), pa.string()), pa.array(np.where(flat_labels, "1", "0")), "-"
    )
    return pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), tokens), " ")
