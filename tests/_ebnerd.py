"""EB-NeRD parquet fixtures written with pyarrow in the published schema (column names and Arrow
types of the demo/small/large downloads)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

TS = pa.timestamp("us")

ARTICLES_SCHEMA = pa.schema(
    [
        ("article_id", pa.int32()),
        ("title", pa.string()),
        ("subtitle", pa.string()),
        ("last_modified_time", TS),
        ("premium", pa.bool_()),
        ("body", pa.string()),
        ("published_time", TS),
        ("image_ids", pa.list_(pa.int64())),
        ("article_type", pa.string()),
        ("url", pa.string()),
        ("ner_clusters", pa.list_(pa.string())),
        ("entity_groups", pa.list_(pa.string())),
        ("topics", pa.list_(pa.string())),
        ("category", pa.int16()),
        ("subcategory", pa.list_(pa.int16())),
        ("category_str", pa.string()),
        ("total_inviews", pa.int32()),
        ("total_pageviews", pa.int32()),
        ("total_read_time", pa.float32()),
        ("sentiment_score", pa.float32()),
        ("sentiment_label", pa.string()),
    ]
)


def behaviors_schema(list_type=pa.list_, labelled: bool = True) -> pa.Schema:
    fields = [
        ("impression_id", pa.uint32()),
        ("article_id", pa.int32()),  # nullable: null = the front page
        ("impression_time", TS),
        ("read_time", pa.float32()),
        ("scroll_percentage", pa.float32()),
        ("device_type", pa.int8()),
        ("article_ids_inview", list_type(pa.int32())),
        ("article_ids_clicked", list_type(pa.int32())),
        ("user_id", pa.uint32()),
        ("is_sso_user", pa.bool_()),
        ("gender", pa.int8()),
        ("postcode", pa.int8()),
        ("age", pa.int8()),
        ("is_subscriber", pa.bool_()),
        ("session_id", pa.uint32()),
        ("next_read_time", pa.float32()),
        ("next_scroll_percentage", pa.float32()),
    ]
    if not labelled:  # the test set: no clicks, no next_* columns
        fields = [f for f in fields if f[0] not in ("article_ids_clicked", "next_read_time", "next_scroll_percentage")]
    return pa.schema(fields)


HISTORY_SCHEMA = pa.schema(
    [
        ("user_id", pa.uint32()),
        ("impression_time_fixed", pa.list_(TS)),
        ("scroll_percentage_fixed", pa.list_(pa.float32())),
        ("article_id_fixed", pa.list_(pa.int32())),
        ("read_time_fixed", pa.list_(pa.float32())),
    ]
)


def articles_table(ids, titles, categories=None) -> pa.Table:
    n = len(ids)
    t0 = datetime(2023, 5, 1)
    categories = categories or ["nyheder"] * n
    cols = {
        "article_id": ids,
        "title": titles,
        "subtitle": [f"underrubrik {i}" for i in ids],
        "last_modified_time": [t0] * n,
        "premium": [False] * n,
        "body": ["brødtekst"] * n,
        "published_time": [t0 + timedelta(hours=i) for i in range(n)],
        "image_ids": [[1]] * n,
        "article_type": ["article_default"] * n,
        "url": [f"https://ekstrabladet.dk/{i}" for i in ids],
        "ner_clusters": [["Kasper Hjulmand", "DBU"] if i % 2 else [] for i in range(n)],
        "entity_groups": [["PER", "ORG"] if i % 2 else [] for i in range(n)],
        "topics": [["sport"]] * n,
        "category": [1] * n,
        "subcategory": [[10 + i % 3] for i in range(n)],
        "category_str": categories,
        "total_inviews": [None] * n,
        "total_pageviews": [None] * n,
        "total_read_time": [None] * n,
        "sentiment_score": [0.9] * n,
        "sentiment_label": ["Neutral"] * n,
    }
    return pa.table(cols, schema=ARTICLES_SCHEMA)


def behaviors_table(rows, list_type=pa.list_, labelled=True) -> pa.Table:
    """``rows``: (impression_id, user_id, minutes after the start, inview, clicked)."""
    t0 = datetime(2023, 5, 20, 7, 0, 0)
    n = len(rows)
    cols = {
        "impression_id": [r[0] for r in rows],
        "article_id": [None] * n,
        "impression_time": [t0 + timedelta(minutes=r[2]) for r in rows],
        "read_time": [10.0] * n,
        "scroll_percentage": [None] * n,
        "device_type": [1] * n,
        "article_ids_inview": [r[3] for r in rows],
        "article_ids_clicked": [r[4] for r in rows],
        "user_id": [r[1] for r in rows],
        "is_sso_user": [False] * n,
        "gender": [None] * n,
        "postcode": [None] * n,
        "age": [None] * n,
        "is_subscriber": [False] * n,
        "session_id": list(range(n)),
        "next_read_time": [1.0] * n,
        "next_scroll_percentage": [None] * n,
    }
    schema = behaviors_schema(list_type, labelled)
    return pa.table({k: v for k, v in cols.items() if k in schema.names}, schema=schema)


def history_table(histories: dict[int, list[int]]) -> pa.Table:
    t0 = datetime(2023, 5, 1)
    users = sorted(histories)
    return pa.table(
        {
            "user_id": users,
            "impression_time_fixed": [[t0 + timedelta(hours=k) for k in range(len(histories[u]))] for u in users],
            "scroll_percentage_fixed": [[50.0] * len(histories[u]) for u in users],
            "article_id_fixed": [histories[u] for u in users],
            "read_time_fixed": [[5.0] * len(histories[u]) for u in users],
        },
        schema=HISTORY_SCHEMA,
    )


def write_split(src: Path, split: str, behaviors: pa.Table, history: pa.Table, row_group_size: int = 3) -> None:
    (src / split).mkdir(parents=True, exist_ok=True)
    pq.write_table(behaviors, src / split / "behaviors.parquet", row_group_size=row_group_size)
    pq.write_table(history, src / split / "history.parquet")


def small_ebnerd(src: Path, *, list_type=pa.list_) -> Path:
    """A hand-checkable EB-NeRD download: 8 Danish articles, 3 users, train/validation/test."""
    src.mkdir(parents=True, exist_ok=True)
    titles = [
        "Hjulmand: Vi skal være klar",  # æ
        "Brøndby vinder i Ålborg",  # ø, Å
        "Sådan får du mere ud af ferien",
        "Politiet efterlyser vidner",
        "Ny måling: S går frem",
        "Kvinde død efter ulykke\tpå motorvej",  # a tab inside a text
        "Vejret: sol og 25 grader",
        "FCK køber ny angriber",
    ]
    ids = [101, 102, 103, 104, 105, 106, 107, 108]
    cats = ["sport", "sport", "forbrug", "krimi", "nyheder", "krimi", "nyheder", "sport"]
    pq.write_table(articles_table(ids, titles, cats), src / "articles.parquet")
    train = behaviors_table(
        [
            (1, 7, 0, [101, 102, 103], [102]),
            (2, 7, 5, [104, 105], [105]),
            (3, 8, 9, [106, 107, 108, 101], [101, 108]),
            (4, 9, 12, [102, 103], [103]),
        ],
        list_type,
    )
    write_split(src, "train", train, history_table({7: [103, 104], 8: [101], 9: []}))
    validation = behaviors_table([(11, 7, 60 * 24, [106, 107], [107]), (12, 10, 60 * 25, [101, 108], [108])], list_type)
    write_split(src, "validation", validation, history_table({7: [103, 104, 102, 105], 8: [101, 101]}))
    test = behaviors_table([(21, 8, 60 * 48, [102, 104, 106], None)], list_type, labelled=False)
    write_split(src, "test", test, history_table({8: [101, 108]}))
    return src


def synthetic_ebnerd(
    src: Path,
    impressions: int,
    *,
    articles: int = 2000,
    users: int = 5000,
    history_length: int = 20,
    seed: int = 0,
    row_group_size: int = 100_000,
) -> Path:
    """A large EB-NeRD-shaped download (random in-view lists and clicks) for the data benchmark."""
    rng = np.random.default_rng(seed)
    src.mkdir(parents=True, exist_ok=True)
    ids = np.arange(1, articles + 1, dtype=np.int32)
    pq.write_table(articles_table(ids.tolist(), [f"overskrift {i}" for i in ids]), src / "articles.parquet")
    for split in ("train", "validation"):
        (src / split).mkdir(parents=True, exist_ok=True)
        writer = None
        done = 0
        while done < impressions:
            n = min(row_group_size, impressions - done)
            lengths = rng.integers(5, 15, n)
            flat = rng.integers(1, articles + 1, lengths.sum()).astype(np.int32)
            offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
            clicked_at = offsets[:-1] + rng.integers(0, lengths)
            t0 = np.datetime64("2023-05-20T07:00:00", "us")
            table = pa.table(
                {
                    "impression_id": pa.array(np.arange(done, done + n, dtype=np.uint32)),
                    "article_id": pa.nulls(n, pa.int32()),
                    "impression_time": pa.array(t0 + rng.integers(0, 7 * 86400, n).astype("timedelta64[s]"), TS),
                    "read_time": pa.array(np.ones(n, np.float32)),
                    "scroll_percentage": pa.nulls(n, pa.float32()),
                    "device_type": pa.array(np.ones(n, np.int8)),
                    "article_ids_inview": pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat)),
                    "article_ids_clicked": pa.ListArray.from_arrays(
                        pa.array(np.arange(n + 1, dtype=np.int32)), pa.array(flat[clicked_at])
                    ),
                    "user_id": pa.array(rng.integers(1, users + 1, n).astype(np.uint32)),
                    "is_sso_user": pa.array(np.zeros(n, bool)),
                    "gender": pa.nulls(n, pa.int8()),
                    "postcode": pa.nulls(n, pa.int8()),
                    "age": pa.nulls(n, pa.int8()),
                    "is_subscriber": pa.array(np.zeros(n, bool)),
                    "session_id": pa.array(np.arange(n, dtype=np.uint32)),
                    "next_read_time": pa.array(np.ones(n, np.float32)),
                    "next_scroll_percentage": pa.nulls(n, pa.float32()),
                },
                schema=behaviors_schema(),
            )
            writer = writer or pq.ParquetWriter(src / split / "behaviors.parquet", table.schema)
            writer.write_table(table, row_group_size=row_group_size)
            done += n
        writer.close()
        pq.write_table(synthetic_history(rng, users, articles, history_length), src / split / "history.parquet")
    return src


def synthetic_history(rng: np.random.Generator, users: int, articles: int, length: int) -> pa.Table:
    """``users`` history rows of ``length`` random clicks each, built from arrays (no Python lists)."""
    n = users * length
    offsets = pa.array(np.arange(0, n + 1, length, dtype=np.int32))
    t0 = np.datetime64("2023-04-27T00:00:00", "us")
    hours = np.tile(np.arange(length), users).astype("timedelta64[h]")

    def lists(values: pa.Array) -> pa.Array:
        return pa.ListArray.from_arrays(offsets, values)

    return pa.table(
        {
            "user_id": pa.array(np.arange(1, users + 1, dtype=np.uint32)),
            "impression_time_fixed": lists(pa.array(t0 + hours, TS)),
            "scroll_percentage_fixed": lists(pa.array(np.full(n, 50.0, np.float32))),
            "article_id_fixed": lists(pa.array(rng.integers(1, articles + 1, n).astype(np.int32))),
            "read_time_fixed": lists(pa.array(np.full(n, 5.0, np.float32))),
        },
        schema=HISTORY_SCHEMA,
    )
