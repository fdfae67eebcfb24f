"""The click stores, for real: SQLite files and a PostgreSQL server (``store_url`` runs each
test on both). Durable, ordered, refused whole on bad input (at the Recommender's level)."""

import threading
from datetime import datetime, timezone

import numpy as np
import pytest

from newsrec.serving.store import PostgresClickStore, SQLiteClickStore, open_store, parse_duration, parse_time


def test_clicks_and_articles_round_trip_in_order(store_url):
    with open_store(store_url) as store:
        assert store.kind in ("sqlite", "postgresql") and store.num_clicks() == 0
        assert isinstance(store, PostgresClickStore if store_url.startswith("postgres") else SQLiteClickStore)
        last = store.add_clicks(["U1", "U2", "U1"], ["N1", "N2", "N3"], [10.0, 5.0, 7.0])
        log = store.clicks_after(0)
        assert log.seq.tolist() == [last - 2, last - 1, last]
        assert (log.users, log.news, log.times.tolist()) == (["U1", "U2", "U1"], ["N1", "N2", "N3"], [10.0, 5.0, 7.0])
        assert len(store.clicks_after(last - 1)) == 1 and len(store.clicks_after(0, limit=2)) == 2
        assert store.user_clicks("U1", 10) == [("N3", 7.0), ("N1", 10.0)]  # by time, not arrival
        assert store.user_clicks("U1", 1) == [("N1", 10.0)]  # the latest
        assert [n for _, n, _ in store.user_clicks_log("U1")] == ["N3", "N1"]
        article = {"news_id": "Nfresh", "title": "Ünïcode \u2013 title", "category": "news"}
        seq = store.add_articles([article])
        assert store.articles_after(0) == [(seq, article)] and store.articles_after(seq) == []
    with open_store(store_url) as again:  # what was committed is there for a new connection
        assert again.num_clicks() == 3 and again.user_clicks("U2", 5) == [("N2", 5.0)]


def test_concurrent_writers_get_every_click_stored_once_in_sequence_order(store_url):
    open_store(store_url).close()  # the tables exist before the writers start

    def write(worker: int) -> None:
        with open_store(store_url) as store:
            for batch in range(10):
                store.add_clicks([f"W{worker}"] * 20, [f"N{batch}"] * 20, np.arange(20.0))

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with open_store(store_url) as store:
        log = store.clicks_after(0)
        assert len(log) == 800 and len(set(log.seq.tolist())) == 800 and (np.diff(log.seq) > 0).all()
        for w in range(4):  # each writer's batches are contiguous runs, in its own order
            mine = [n for u, n in zip(log.users, log.news) if u == f"W{w}"]
            assert mine == [f"N{b}" for b in range(10) for _ in range(20)]


@pytest.mark.parametrize(
    "text,seconds",
    [("2019-11-15T08:00:00Z", 1573804800.0), ("2019-11-15T08:00:00", 1573804800.0),
     ("2019-11-15T09:00:00+01:00", 1573804800.0), (1573804800, 1573804800.0),
     (datetime(2019, 11, 15, 8, tzinfo=timezone.utc), 1573804800.0)],
)  # fmt: skip
def test_times_are_iso_8601_in_utc(text, seconds):
    assert parse_time(text) == seconds


@pytest.mark.parametrize("bad", ["yesterday", "", "2019-13-01T00:00:00Z", True, None, float("nan")])
def test_a_bad_time_is_one_error_naming_it(bad):
    with pytest.raises(ValueError, match="click 3: time"):
        parse_time(bad, "click 3: time")


def test_durations():
    assert [parse_duration(x) for x in ("6h", "30m", "90s", "2d", "3600", 60)] == [21600, 1800, 90, 172800, 3600, 60]
    for bad in ("0", "-1h", "soon", "h"):
        with pytest.raises(ValueError):
            parse_duration(bad)
