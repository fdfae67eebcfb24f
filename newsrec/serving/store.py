"""Where served clicks and articles are kept: one small interface, two databases.

A :class:`ClickStore` is an append-only log of two tables, ``clicks`` (user id, news id, time)
and ``articles`` (one MIND news row as JSON), each row numbered by a sequence the database
assigns. A write returns only after its transaction is durably committed, so an acknowledged
click or article survives a crash of the process (SIGKILL, power loss within the database's
own guarantees). Readers ask for everything after the last sequence number they saw
(:meth:`ClickStore.clicks_after`), which is how several serving processes sharing one
PostgreSQL database follow each other's clicks.

* :class:`SQLiteClickStore`: one file, WAL journal with ``synchronous=FULL`` (each commit is
  fsynced); the default for one serving process.
* :class:`PostgresClickStore`: ``postgresql://…`` (psycopg 3, extra ``[postgres]``), for several
  serving processes on several machines.

:func:`open_store` picks the backend from a path or URL. No ORM: a handful of SQL statements.

Click times are stored as float seconds since the Unix epoch (UTC); :func:`parse_time` reads
the ISO 8601 strings the HTTP API takes.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from newsrec.serving.index import check_text

__all__ = [
    "ClickLog",
    "ClickStore",
    "checked_clicks",
    "PostgresClickStore",
    "SQLiteClickStore",
    "open_store",
    "parse_duration",
    "parse_time",
    "store_options",
]


def parse_time(value: str | float | int | datetime, what: str = "time") -> float:
    """Seconds since the Unix epoch (UTC) of an ISO 8601 time (``"2019-11-15T08:00:00Z"``; a
    time without a zone is UTC), a ``datetime`` or a number of seconds. Anything else, or a
    time that is not finite, is one ``ValueError`` naming ``what``."""
    if isinstance(value, bool):
        raise ValueError(f"{what}: expected an ISO 8601 time such as '2019-11-15T08:00:00Z', got {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, datetime):
        seconds = (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp()
    elif isinstance(value, str):
        text = value.strip()
        try:
            parsed = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
        except ValueError:
            raise ValueError(f"{what}: {value!r} is not an ISO 8601 time such as '2019-11-15T08:00:00Z'") from None
        seconds = (parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)).timestamp()
    else:
        raise ValueError(f"{what}: expected an ISO 8601 time string, got {type(value).__name__}")
    if not math.isfinite(seconds):
        raise ValueError(f"{what}: {value!r} is not a finite time")
    return seconds


def parse_duration(value: str | float) -> float:
    """Seconds in ``"6h"``, ``"30m"``, ``"90s"``, ``"2d"`` or a plain number of seconds (> 0)."""
    text = str(value).strip().lower()
    units = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
    try:
        seconds = float(text[:-1]) * units[text[-1]] if text and text[-1] in units else float(text)
    except ValueError:
        raise ValueError(f"{value!r} is not a duration such as 6h, 30m, 90s or 3600") from None
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ValueError(f"a duration must be positive, got {value!r}")
    return seconds


@dataclass
class ClickLog:
    """Clicks read back from a store, in sequence order.

    Attributes:
        seq: int64 ``[n]`` the database's sequence numbers (increasing).
        users: ``n`` user ids.
        news: ``n`` news ids.
        times: float64 ``[n]`` seconds since the epoch.
    """

    seq: np.ndarray
    users: list[str]
    news: list[str]
    times: np.ndarray

    def __len__(self) -> int:
        return len(self.seq)

    @classmethod
    def of(cls, rows: Sequence[tuple]) -> ClickLog:
        return cls(
            np.asarray([r[0] for r in rows], np.int64),
            [r[1] for r in rows],
            [r[2] for r in rows],
            np.asarray([r[3] for r in rows], np.float64),
        )


class ClickStore:
    """The interface both databases implement (see the module docstring): the reads are shared
    SQL (``?`` placeholders, rewritten to ``%s`` for PostgreSQL); a backend gives its connection
    (:meth:`_con`) and its durable append (:meth:`_append`)."""

    #: a short name of the backend, for ``/health``
    kind = "store"
    _param = "?"

    def _con(self):
        raise NotImplementedError

    def _append(self, table: str, columns: tuple[str, ...], rows: list[tuple]) -> int:
        """Insert ``rows`` in one transaction, durably committed on return; the last sequence number."""
        raise NotImplementedError

    def _rows(self, sql: str, args: tuple = ()) -> list[tuple]:
        return self._con().execute(sql.replace("?", self._param), args).fetchall()

    def add_clicks(self, users: Sequence[str], news: Sequence[str], times: Sequence[float]) -> int:
        """Append clicks in one transaction; returns once it is durably committed: the last
        sequence number given."""
        rows = list(zip(users, news, (float(t) for t in times)))
        if not rows:
            return int(self._rows("SELECT COALESCE(MAX(seq), 0) FROM clicks")[0][0])
        return self._append("clicks", ("user_id", "news_id", "time"), rows)

    def add_articles(self, rows: Sequence[dict]) -> int:
        """Append articles (MIND news rows) in one durable transaction; the last sequence number."""
        values = [(r["news_id"], json.dumps(r, ensure_ascii=False)) for r in rows]
        return self._append("articles", ("news_id", "row"), values) if values else 0

    def clicks_after(self, seq: int, limit: int | None = None) -> ClickLog:
        """Clicks with a sequence number above ``seq``, in sequence order (at most ``limit``)."""
        sql = "SELECT seq, user_id, news_id, time FROM clicks WHERE seq > ? ORDER BY seq"
        if limit is not None:
            return ClickLog.of(self._rows(sql + " LIMIT ?", (int(seq), int(limit))))
        return ClickLog.of(self._rows(sql, (int(seq),)))

    def articles_after(self, seq: int) -> list[tuple[int, dict]]:
        """``(seq, row)`` of the articles with a sequence number above ``seq``, in order."""
        rows = self._rows("SELECT seq, row FROM articles WHERE seq > ? ORDER BY seq", (int(seq),))
        return [(int(s), json.loads(r)) for s, r in rows]

    def user_clicks(self, user: str, limit: int) -> list[tuple[str, float]]:
        """The ``limit`` latest ``(news id, time)`` of ``user``, oldest first (by time, then sequence)."""
        sql = "SELECT news_id, time FROM clicks WHERE user_id = ? ORDER BY time DESC, seq DESC LIMIT ?"
        return [(n, float(t)) for n, t in reversed(self._rows(sql, (user, int(limit))))]

    def user_clicks_log(self, user: str) -> list[tuple[int, str, float]]:
        """Every ``(seq, news id, time)`` of ``user``, by time then sequence."""
        sql = "SELECT seq, news_id, time FROM clicks WHERE user_id = ? ORDER BY time, seq"
        return [(int(s), n, float(t)) for s, n, t in self._rows(sql, (user,))]

    def num_clicks(self) -> int:
        return int(self._rows("SELECT COUNT(*) FROM clicks")[0][0])

    def close(self) -> None:
        """Release this thread's connection."""
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None

    def __enter__(self) -> ClickStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS clicks (seq {serial} PRIMARY KEY, user_id TEXT NOT NULL, "
    "news_id TEXT NOT NULL, time DOUBLE PRECISION NOT NULL)",
    "CREATE INDEX IF NOT EXISTS clicks_by_user ON clicks (user_id, time, seq)",
    "CREATE TABLE IF NOT EXISTS articles (seq {serial} PRIMARY KEY, news_id TEXT NOT NULL, row TEXT NOT NULL)",
)


class SQLiteClickStore(ClickStore):
    """The click log in one SQLite file (WAL, ``synchronous=FULL``: every commit is fsynced).

    Args:
        path: the database file (created with its folder when missing).

    One connection per thread; writers are serialised by SQLite's own lock, readers never wait
    for them (WAL).
    """

    kind = "sqlite"

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        con = self._con()
        with con:
            for statement in _SCHEMA:
                con.execute(statement.format(serial="INTEGER"))

    def _con(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=FULL")
            self._local.con = con
        return con

    def _append(self, table: str, columns: tuple[str, ...], rows: list[tuple]) -> int:
        con = self._con()
        con.execute("BEGIN IMMEDIATE")  # one writer at a time: sequence numbers commit in order
        try:
            con.executemany(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})", rows
            )
            last = con.execute("SELECT last_insert_rowid()").fetchone()[0]
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return int(last)


class PostgresClickStore(ClickStore):
    """The click log in a PostgreSQL database (psycopg 3: ``pip install 'newsrec-pyg[postgres]'``).

    Args:
        dsn: a ``postgresql://user@host:port/database`` URL (or a libpq connection string).

    A commit returns after the server has flushed it (PostgreSQL's default
    ``synchronous_commit=on``). Writers take a self-exclusive lock on the table for their
    transaction, so sequence numbers commit in increasing order and a process that follows the
    log with :meth:`clicks_after` never skips a click that commits later under a smaller number.
    """

    kind = "postgresql"
    _param = "%s"

    def __init__(self, dsn: str) -> None:
        try:
            import psycopg
        except ImportError:
            raise ImportError("a PostgreSQL store needs psycopg 3: pip install 'newsrec-pyg[postgres]'") from None
        self._psycopg = psycopg
        self.dsn = dsn
        self._local = threading.local()
        con = self._con()
        with con.transaction():
            con.execute("SELECT pg_advisory_xact_lock(727071)")  # two processes creating the tables at once
            for statement in _SCHEMA:
                con.execute(statement.format(serial="BIGSERIAL"))

    def _con(self):
        con = getattr(self._local, "con", None)
        if con is None or con.closed:
            con = self._psycopg.connect(self.dsn, autocommit=True)
            self._local.con = con
        return con

    def _append(self, table: str, columns: tuple[str, ...], rows: list[tuple]) -> int:
        con = self._con()
        with con.transaction():
            # one writer at a time: sequence numbers then become visible in order (see the class)
            con.execute(f"LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE")
            with con.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            last = con.execute(f"SELECT COALESCE(MAX(seq), 0) FROM {table}").fetchone()[0]
        return int(last)


def store_options(options: dict[str, Any], folder: str | os.PathLike) -> dict[str, Any]:
    """``options`` with ``store="auto"`` made ``folder/clicks.sqlite``, and ``follow_seconds``
    defaulted to 1 for a PostgreSQL store (several processes share it)."""
    options = dict(options)
    if options.get("store") == "auto":
        options["store"] = Path(folder) / "clicks.sqlite"
    if str(options.get("store") or "").startswith("postgres") and options.get("follow_seconds") is None:
        options["follow_seconds"] = 1.0
    return options


def checked_clicks(clicks, known) -> tuple[list[str], list[str], list[float]]:
    """``(users, news ids, times)`` of ``clicks`` (a list of ``{"user_id", "news_id", "time"}``),
    checked whole: every problem is one ``ValueError``/``TypeError`` naming the click, and
    ``known(news_id)`` must be true for every news id."""
    if isinstance(clicks, (Mapping, str, bytes)) or not isinstance(clicks, Sequence):
        raise TypeError(f"expected a list of clicks, got {type(clicks).__name__}: pass [click, ...] even for one")
    users, news, times = [], [], []
    for i, c in enumerate(clicks):
        if not isinstance(c, Mapping):
            raise TypeError(f"click {i}: expected an object with user_id, news_id and time, got {type(c).__name__}")
        extra = sorted(set(c) - {"user_id", "news_id", "time"})
        missing = [f for f in ("user_id", "news_id", "time") if c.get(f) is None]
        if extra or missing:
            raise ValueError(f"click {i}: " + (f"unknown field(s) {extra}" if extra else f"missing {missing}"))
        user = check_text(c["user_id"], f"click {i}: user_id")
        if not user.strip():
            raise ValueError(f"click {i}: user_id is empty")
        news_id = check_text(c["news_id"], f"click {i}: news_id")
        if not known(news_id):
            raise KeyError(f"click {i}: unknown news id {news_id!r} (add the article with POST /news first)")
        users.append(user), news.append(news_id), times.append(parse_time(c["time"], f"click {i}: time"))
    return users, news, times


def open_store(location: str | os.PathLike) -> ClickStore:
    """A :class:`PostgresClickStore` for a ``postgresql://`` / ``postgres://`` URL, else a
    :class:`SQLiteClickStore` at the path (``sqlite:///path`` accepted too)."""
    text = str(location)
    if text.startswith(("postgresql://", "postgres://")):
        return PostgresClickStore(text)
    if text.startswith("sqlite:///"):
        text = text[len("sqlite:///") :]
    return SQLiteClickStore(text)
