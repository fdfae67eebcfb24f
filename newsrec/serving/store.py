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

Every failure of the database (a file that is not a newsrec click store, a damaged or read-only
file, a server that cannot be reached) is one :class:`StoreError` naming the store and what to
do; nothing is written to a file that is not a newsrec click store.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from newsrec.serving.clicks import (
    FUTURE_TOLERANCE,
    MIN_INTERVAL,
    checked_clicks,
    checked_interval,
    parse_duration,
    parse_time,
    store_options,
)

__all__ = [
    "ClickLog",
    "ClickStore",
    "FUTURE_TOLERANCE",
    "StoreError",
    "checked_clicks",
    "checked_interval",
    "PostgresClickStore",
    "SQLiteClickStore",
    "open_store",
    "parse_duration",
    "parse_time",
    "store_options",
    "MIN_INTERVAL",
]


class StoreError(OSError):
    """A click store that cannot be opened, read or written: the message is one line naming the
    store, what failed and what to do (``newsrec serve`` prints it; the HTTP service answers 503)."""


def _hint(reason: str, kind: str = "sqlite") -> str:
    """What an operator can do about an error of a ``kind`` database whose message is ``reason``."""
    text = reason.lower()
    if kind == "postgresql" and ("read-only" in text or "permission denied" in text):
        return "the database refuses writes: check the user's privileges and that the server is not a read-only standby"
    if "readonly" in text or "read-only" in text or "permission denied" in text:
        return "make the file and its folder writable, or pass another --store"
    if "malformed" in text or "not a database" in text or "corrupt" in text:
        return (
            "the file is damaged or is not a newsrec click store: restore it from a backup, "
            "or pass another --store (a new path starts an empty store)"
        )
    if "connect" in text or "server" in text or "timeout" in text:
        return "check that the PostgreSQL server runs and the URL (host, port, database, user) is right"
    if "disk" in text or "full" in text:
        return "free disk space on the store's file system"
    return "check the store, or pass another --store"


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
    #: the backend's exceptions, reported as :class:`StoreError`
    _errors: tuple[type[BaseException], ...] = ()

    @property
    def name(self) -> str:
        """Where the store is, for messages (a URL's password left out)."""
        return "store"

    def _failed(self, error: BaseException, doing: str) -> StoreError:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0].strip()
        return StoreError(f"click store {self.name}: {doing} failed ({reason}); {_hint(reason, self.kind)}")

    @contextmanager
    def _guard(self, doing: str) -> Iterator[None]:
        """Report the backend's errors within as one :class:`StoreError`."""
        try:
            yield
        except StoreError:
            raise
        except self._errors as e:
            raise self._failed(e, doing) from None

    def _con(self):
        raise NotImplementedError

    def _append(self, table: str, columns: tuple[str, ...], rows: list[tuple]) -> int:
        """Insert ``rows`` in one transaction, durably committed on return; the last sequence number."""
        raise NotImplementedError

    def _rows(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._guard("reading"):
            return self._con().execute(sql.replace("?", self._param), args).fetchall()

    def add_clicks(self, users: Sequence[str], news: Sequence[str], times: Sequence[float]) -> int:
        """Append clicks in one transaction; returns once it is durably committed: the last
        sequence number given."""
        rows = list(zip(users, news, (float(t) for t in times)))
        if not rows:
            return int(self._rows("SELECT COALESCE(MAX(seq), 0) FROM clicks")[0][0])
        with self._guard("storing clicks"):
            return self._append("clicks", ("user_id", "news_id", "time"), rows)

    def add_articles(self, rows: Sequence[dict]) -> int:
        """Append articles (MIND news rows) in one durable transaction; the last sequence number."""
        values = [(r["news_id"], json.dumps(r, ensure_ascii=False)) for r in rows]
        if not values:
            return 0
        with self._guard("storing articles"):
            return self._append("articles", ("news_id", "row"), values)

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
#: the columns of a newsrec click store's tables
_COLUMNS = {"clicks": ["seq", "user_id", "news_id", "time"], "articles": ["seq", "news_id", "row"]}


class SQLiteClickStore(ClickStore):
    """The click log in one SQLite file (WAL, ``synchronous=FULL``: every commit is fsynced).

    Args:
        path: the database file (created with its folder when missing).

    One connection per thread; writers are serialised by SQLite's own lock, readers never wait
    for them (WAL).
    """

    kind = "sqlite"
    _errors = (sqlite3.Error,)

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._local = threading.local()
        if self.path.is_dir():
            raise StoreError(
                f"click store {self.path} is a folder, not a SQLite file: pass --store a file path such as "
                f"{self.path / 'clicks.sqlite'}"
            )
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(
                f"click store {self.path}: cannot create its folder ({e.strerror}); {_hint(str(e))}"
            ) from None
        with self._guard("opening"):
            self._check_schema(sqlite3.connect(self.path, timeout=60, isolation_level=None))
            con = self._con()
            with con:
                for statement in _SCHEMA:
                    con.execute(statement.format(serial="INTEGER"))
            con.execute("BEGIN IMMEDIATE")  # a write that is never committed: is the file writable?
            try:
                con.execute("INSERT INTO articles (news_id, row) VALUES ('', '')")
            finally:
                con.execute("ROLLBACK")

    @property
    def name(self) -> str:
        return str(self.path)

    def _check_schema(self, con: sqlite3.Connection) -> None:
        """Refuse (before anything is written) a file that is not a newsrec click store: one that
        is not SQLite, is damaged, or holds other tables than the store's own."""
        try:
            tables = [
                r[0]
                for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%'")
            ]
            columns = {t: [r[1] for r in con.execute(f'PRAGMA table_info("{t}")')] for t in tables}
        finally:
            con.close()
        foreign = {t: c for t, c in columns.items() if t not in _COLUMNS or c != _COLUMNS[t]}
        if foreign:
            shown = "; ".join(f"{t}({', '.join(c)})" for t, c in sorted(foreign.items())[:3])
            raise StoreError(
                f"click store {self.path} is a SQLite file of another program (tables {shown}; a newsrec "
                "click store has clicks(seq, user_id, news_id, time) and articles(seq, news_id, row)): "
                "it was left untouched; pass another --store"
            )

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
        self._errors = (psycopg.Error,)
        self.dsn = dsn
        self._local = threading.local()
        with self._guard("connecting"):
            con = self._con()
            with con.transaction():
                con.execute("SELECT pg_advisory_xact_lock(727071)")  # two processes creating the tables at once
                for statement in _SCHEMA:
                    con.execute(statement.format(serial="BIGSERIAL"))

    @property
    def name(self) -> str:
        return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", self.dsn)  # never print a password

    def _con(self):
        con = getattr(self._local, "con", None)
        if con is None or con.closed:
            timeout = {} if "connect_timeout" in self.dsn else {"connect_timeout": 10}  # an unreachable host
            con = self._psycopg.connect(self.dsn, autocommit=True, **timeout)
            self._local.con = con
        return con

    def _cut(self) -> bool:
        """Whether the server cut this thread's connection (a restart, an administrator)."""
        con = getattr(self._local, "con", None)
        return con is not None and con.closed

    def _rows(self, sql: str, args: tuple = ()) -> list[tuple]:
        try:
            return super()._rows(sql, args)
        except StoreError:
            if not self._cut():
                raise
            return super()._rows(sql, args)  # a read on a cut connection: once more, on a new one

    def _append(self, table: str, columns: tuple[str, ...], rows: list[tuple]) -> int:
        began: list[bool] = []
        try:
            return self._append_once(table, columns, rows, began)
        except self._psycopg.OperationalError:
            if began or not self._cut():
                raise
            return self._append_once(table, columns, rows, began)  # cut before it wrote anything: once more

    def _append_once(self, table: str, columns: tuple[str, ...], rows: list[tuple], began: list[bool]) -> int:
        con = self._con()
        with con.transaction():
            # one writer at a time: sequence numbers then become visible in order (see the class)
            con.execute(f"LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE")
            began.append(True)
            with con.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            last = con.execute(f"SELECT COALESCE(MAX(seq), 0) FROM {table}").fetchone()[0]
        return int(last)


def open_store(location: str | os.PathLike) -> ClickStore:
    """A :class:`PostgresClickStore` for a ``postgresql://`` / ``postgres://`` URL, else a
    :class:`SQLiteClickStore` at the path (``sqlite:///path`` accepted too)."""
    text = str(location)
    if text.startswith(("postgresql://", "postgres://")):
        return PostgresClickStore(text)
    if text.startswith("sqlite:///"):
        text = text[len("sqlite:///") :]
    return SQLiteClickStore(text)
