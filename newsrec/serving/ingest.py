"""What the service takes in: fresh articles and clicks, a durable click log, users by id, and
the live click graph (:mod:`newsrec.serving.live`) that every request reads.

:class:`Ingest` is the part of :class:`~newsrec.serving.Recommender` that takes articles and
clicks; the recommender calls :meth:`Ingest._start_clicks` once it has an index. The order of a write is
always: validate everything (a bad click refuses the whole request, nothing stored), commit to
the store (durable), then apply *everything the store holds past what this process applied*
(its own clicks and any other process's, in the store's sequence order) to a new graph
snapshot, then swap the snapshot in. A request that starts after :meth:`add_clicks` returned
sees those clicks; requests never wait for a writer's graph work, only for the swap.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from newsrec.data.batching import ENTITY_NEIGHBOR_FIELDS
from newsrec.serving.clicks import FUTURE_TOLERANCE, checked_clicks, checked_interval
from newsrec.serving.index import check_k, check_text, checked_news_rows
from newsrec.serving.live import LiveGraph, LiveSnapshot
from newsrec.serving.store import ClickStore, open_store

__all__ = ["Ingest", "UserTransitions"]

SPLITS = ("train", "dev", "test")


class Ingest:
    """The article- and click-taking part of :class:`~newsrec.serving.Recommender` (see the module docstring).

    It reads the recommender's ``dm``, ``index`` and ``history_length``, and installs indexes
    through ``_swap_index`` (one assignment; each index carries its own user-state cache)."""

    store: ClickStore | None = None
    live: LiveGraph | None = None
    #: the server's clock (seconds since the epoch): clicks after it by more than
    #: :data:`~newsrec.serving.clicks.FUTURE_TOLERANCE` are refused, stored ones count as at that time
    clock: Callable[[], float] = staticmethod(time.time)

    def _open_store(
        self, store: str | os.PathLike | ClickStore | None, follow_seconds: float | None, entity_refresh_seconds: float
    ) -> ClickStore | None:
        """The click store opened (:class:`~newsrec.serving.store.StoreError` when it cannot be
        used) once the periods are checked: the recommender calls this before any other work."""
        checked_interval(follow_seconds, "follow_seconds")
        checked_interval(entity_refresh_seconds, "entity_refresh_seconds", none_ok=False)
        return store if store is None or isinstance(store, ClickStore) else open_store(store)

    def _start_clicks(
        self,
        store: str | os.PathLike | ClickStore | None,
        half_life: float | None,
        follow_seconds: float | None,
        entity_refresh_seconds: float = 60.0,
    ) -> None:
        follow_seconds = checked_interval(follow_seconds, "follow_seconds")
        self.entity_refresh_seconds = checked_interval(entity_refresh_seconds, "entity_refresh_seconds", none_ok=False)
        self._stale_entities = np.zeros(0, np.int64)
        self._click_seq = self._article_seq = 0
        self._data_users: dict[str, tuple[str, int]] | None = None
        self._follower = None
        if store is None:
            return
        self.store = store if isinstance(store, ClickStore) else open_store(store)
        req = self.dm.builder.requirements
        train = self.dm.behaviors("train")
        entities = self.index.arrays.get("entities") if req.entity_neighbors is not None else None
        self.live = LiveGraph(
            req,
            train.user_sequences(),
            len(self.index),
            news_entities=entities,
            num_entities=len(self.dm.corpus.entity_vocab),
            half_life=half_life,
            start_time=float(train.times.max()) if len(train.times) else 0.0,
        )
        self._reads_graph = req.news_graph is not None or req.transitions is not None
        self._transitions = UserTransitions(self._data_last_click, self._stored_sequence)
        self._snapshot = self.live.snapshot()
        self._swap_index(self.index.vectors, self.index.search)
        self.sync()  # what the store holds from earlier runs (and other processes)
        self.refresh_entities()
        periods = [p for p in (follow_seconds, self.entity_refresh_seconds) if p]
        if periods and (follow_seconds or self.live.entities):
            self._stop = threading.Event()
            self._follower = threading.Thread(target=self._follow, args=(follow_seconds, min(periods)), daemon=True)
            self._follower.start()

    # -- writes --------------------------------------------------------------------------------------
    def add_clicks(self, clicks: Sequence[Mapping]) -> dict[str, int]:
        """Store clicks ``[{"user_id": "U1", "news_id": "N5", "time": "2019-11-15T08:00:00Z"}, …]``
        and move the live graph; returns ``{"accepted": n}`` once they are durably stored and in the
        graph. A click with an unknown news id, a bad time or a malformed field refuses the whole
        list (one error naming the click) and stores nothing."""
        if self.store is None:
            raise RuntimeError("this recommender has no click store: pass store=… (a SQLite path or postgresql:// URL)")
        latest = self.clock() + FUTURE_TOLERANCE
        users, news, times = checked_clicks(clicks, lambda n: self.index.row(n) is not None, latest)
        if users:
            self.store.add_clicks(users, news, times)
            self.sync()
        return {"accepted": len(users)}

    def sync(self) -> int:
        """Apply what the store holds past what this process applied (its own clicks and other
        processes' articles and clicks, in sequence order); returns the clicks applied."""
        if self.store is None:
            return 0
        with self._write_lock:
            log = self.store.clicks_after(self._click_seq)  # clicks first, then the articles they may name
            articles = self.store.articles_after(self._article_seq)
            if articles:
                self._add_news_rows([row for _, row in articles])
                self._article_seq = articles[-1][0]
            if not len(log):
                return 0
            rows = np.asarray([self.index.row(n) or 0 for n in log.news], np.int64)
            if (rows == 0).any():
                bad = [n for n, r in zip(log.news, rows) if r == 0][:5]
                warnings.warn(f"stored clicks on news this index lacks are left out of the graph: {bad}", stacklevel=2)
            keep = rows > 0
            users = [u for u, k in zip(log.users, keep) if k]
            src, dst, when, sign = self._transitions.transitions(users, rows[keep], log.times[keep], log.seq[keep])
            horizon = self.clock() + FUTURE_TOLERANCE
            if (log.times > horizon).any():  # stored before clicks from the future were refused
                n = int((log.times > horizon).sum())
                warnings.warn(
                    f"{n} stored click(s) dated in the future count as clicks at the server's clock", stacklevel=2
                )
            self._install_snapshot(self.live.add(src, dst, when, sign, horizon=horizon))
            self._click_seq = int(log.seq[-1])
            return len(log)

    def _install_snapshot(self, snapshot: LiveSnapshot) -> None:
        """Make ``snapshot`` the served graph (one assignment). The entities whose live neighbours
        changed are noted: the candidate vectors of their news are encoded again by
        :meth:`refresh_entities` (now, with ``entity_refresh_seconds=0``)."""
        self._snapshot = snapshot
        if len(snapshot.changed_entities) and self.index.vectors is not None:  # else read live at every request
            self._stale_entities = np.union1d(self._stale_entities, snapshot.changed_entities)
        index = self.index
        self._swap_index(index.vectors, index.search, keep_users=not self._reads_graph)
        if not self.entity_refresh_seconds:
            self.refresh_entities()

    def refresh_entities(self) -> int:
        """Encode again the candidate vectors of the news whose entities' live graph neighbours
        changed since the last refresh (GLORY's global entity view); returns how many. Runs every
        ``entity_refresh_seconds`` in the background, at start, and after every write when that
        is 0. The encoding runs outside the writers' lock; if articles changed meanwhile, the
        entities wait for the next refresh."""
        with self._write_lock:
            stale, index = self._stale_entities, self.index
            self._stale_entities = np.zeros(0, np.int64)
        read = self.dm.builder.requirements.news_fields
        fields = [f for f in ENTITY_NEIGHBOR_FIELDS if f in read]  # the entity fields the model reads
        if not len(stale) or index.vectors is None or not fields:
            return 0
        rows = np.flatnonzero(np.logical_or.reduce([np.isin(index.arrays[f], stale).any(axis=1) for f in fields]))
        rows = rows[rows > 0]
        builder, step = self._serving_builder(index.arrays), self.batch_size
        with torch.inference_mode():
            chunks = [{"news": builder.news(rows[i : i + step])} for i in range(0, len(rows), step)]
            fresh = self.model.encode_all_news(chunks) if len(rows) else None
        with self._write_lock:
            current = self.index
            if current.arrays is not index.arrays:  # add_news replaced the index: try again next time
                self._stale_entities = np.union1d(self._stale_entities, stale)
                return 0
            if fresh is None:
                return 0
            vectors = current.with_vectors(fresh, torch.as_tensor(rows, device=self.device), 0)
            search = current.search
            if search is not None:
                search = search.updated(vectors.candidate.float().cpu(), torch.as_tensor(rows))
            self._swap_index(vectors, search, keep_users=False)
            return len(rows)

    def _follow(self, follow_seconds: float | None, tick: float) -> None:
        last_refresh = time.monotonic()
        while not self._stop.wait(tick):
            try:
                if follow_seconds:
                    self.sync()
                if self.entity_refresh_seconds and time.monotonic() - last_refresh >= self.entity_refresh_seconds:
                    self.refresh_entities()
                    last_refresh = time.monotonic()
            except Exception as e:  # a database that went away for a moment: say so, keep following
                warnings.warn(f"following the click store failed: {type(e).__name__}: {e}", stacklevel=1)

    def close(self) -> None:
        """Stop following the store and close it."""
        if self._follower is not None:
            self._stop.set()
            self._follower.join(timeout=10)
            self._follower = None
        if self.store is not None:
            self.store.close()

    # -- articles ---------------------------------------------------------------------------------------
    def add_news(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, int]:
        """Add or update articles (MIND's news.tsv fields: ``news_id`` and ``title`` required,
        ``category``, ``subcategory``, ``abstract``, ``title_entities``, ``abstract_entities``
        optional), rankable at once. Text is tokenised with the training vocabulary; a fresh news
        has no click-graph edges until readers click it (with a click store: :meth:`add_clicks`).
        With a click store the articles are durably stored first (and replayed at restart and
        by the other processes on the store); the index is saved again (when it persists).
        Returns ``{"added": n, "updated": m}``."""
        rows = checked_news_rows(rows, reserved=(self.index.ids[0],))
        if not rows:
            return {"added": 0, "updated": 0}
        encoded = self.dm.encode_news_rows(rows, name="add_news")  # every problem raised before storing
        with self._write_lock:
            if self.store is not None:
                seq = self.store.add_articles(rows)
                if seq == self._article_seq + len(rows):  # no other writer in between: nothing to replay
                    self._article_seq = seq
            return self._add_encoded(rows, encoded)

    def _add_news_rows(self, rows: list[dict]) -> dict[str, int]:
        """Articles read back from the store (another process's, or this one's before a restart)."""
        return self._add_encoded(rows, self.dm.encode_news_rows(rows, name="stored articles"))

    def _add_encoded(self, rows: list[dict], encoded: dict) -> dict[str, int]:
        ids = [r["news_id"] for r in rows]
        index = self.index
        new_ids, target, arrays = index.with_rows(ids, encoded)
        if self.live is not None:
            self._snapshot = self.live.grow(len(index.ids) + len(new_ids), arrays.get("entities"))
        vectors = search = None
        if index.vectors is not None:
            builder = self._serving_builder(arrays)
            with torch.inference_mode():
                fresh = self.model.encode_all_news([{"news": builder.news(target)}])
            vectors = index.with_vectors(fresh, torch.as_tensor(target, device=self.device), len(new_ids))
            self._rows_changed_since_build += len(target)
            if self._rows_changed_since_build <= 0.1 * len(index):  # else: rebuilt and recalibrated
                search = index.search.updated(vectors.candidate.float().cpu(), torch.as_tensor(target))
        changed = tuple(sorted(set(index.changed) | set(target.tolist())))
        self._install(index.ids + new_ids, arrays, vectors, changed, search)
        if self._index_store is not None and vectors is not None:
            self._index_store.save(self.index, self.num_corpus_news)
        return {"added": len(new_ids), "updated": len(ids) - len(new_ids)}

    # -- reads ----------------------------------------------------------------------------------------
    def user_history(self, user_id: str) -> list[str]:
        """A user's history as news ids, oldest first: the history of the user's latest impression
        in the data root, then every stored click in time order, the ``history_length`` latest.
        An unknown user has an empty history (the model's cold-start answer)."""
        user_id = check_text(user_id, "user id")
        ids = self.dm.corpus.news_ids
        found = self._data_user(user_id)
        history: list[str] = []
        if found is not None:
            split, row = found
            hist, n = self.dm.behaviors(split).histories(np.asarray([row]), self.history_length)
            history = [ids[r] for r in hist[0, : n[0]]]
        if self.store is not None:
            history += [n for n, _ in self.store.user_clicks(user_id, self.history_length)]
        return history[-self.history_length :]

    def user_row(self, user_id: str | None) -> int:
        """``user_id``'s row in the training users for a model that reads user ids (else 0; 0: unknown)."""
        if not self.reads_users or user_id is None:
            return 0
        if self._user_rows is None:
            self._user_rows = {u: i + 1 for i, u in enumerate(self.dm.behaviors("train").user_ids)}
        return self._user_rows.get(check_text(user_id, "user id"), 0)

    def graph_neighbors(self, news_id: str, k: int = 10, direction: str = "out") -> list[tuple[str, float]]:
        """A news' ``k`` heaviest live click transitions, ``(news id, weight)`` (``"out"``: read
        next; ``"in"``: read before), weights aged to the latest click when a half-life is set."""
        if self.live is None:
            raise RuntimeError("this recommender has no click store, hence no live graph")
        k = check_k(k)
        row = self.index.row(check_text(news_id, "news id"))
        if row is None:
            raise KeyError(f"unknown news id {news_id!r}")
        with self._write_lock:
            nbr, w = self.live.neighbors(row, k, direction)
        return [(self.index.ids[int(r)], float(x)) for r, x in zip(nbr, w)]

    @property
    def click_info(self) -> dict:
        """``{"clicks": stored clicks, "graph_edges": live transitions, "stale_entities": entities
        whose news' candidate vectors wait for :meth:`refresh_entities`}`` (``None`` without a store)."""
        if self.store is None:
            return {"clicks": None, "graph_edges": None, "stale_entities": None}
        stored, edges = self.store.num_clicks(), self._snapshot.num_transitions
        return {"clicks": stored, "graph_edges": edges, "stale_entities": len(self._stale_entities)}

    # -- the data root's users --------------------------------------------------------------------------
    def _data_user(self, user_id: str) -> tuple[str, int] | None:
        """``(split, impression row)`` of the user's latest impression in the data root."""
        if self._data_users is None:
            names, keys = [], []  # per impression: user id; (split rank, row, time)
            for rank, split in enumerate(SPLITS):
                if split != "train" and not (Path(self.dm.root) / split / "behaviors.tsv").exists():
                    continue
                b = self.dm.behaviors(split)
                names.append(np.asarray(b.user_ids, dtype=object)[b.users])
                keys.append(np.stack([np.full(len(b.users), rank), np.arange(len(b.users)), b.times]))
            users, code = np.unique(np.concatenate(names), return_inverse=True)
            rank, row, when = np.concatenate(keys, axis=1)
            order = np.lexsort((row, rank, when, code.reshape(-1)))  # each user's latest impression last
            last = order[np.r_[code.reshape(-1)[order][1:] != code.reshape(-1)[order][:-1], True]]
            self._data_users = {u: (SPLITS[int(rank[i])], int(row[i])) for u, i in zip(users, last)}
        return self._data_users.get(user_id)

    def _data_last_click(self, user_id: str) -> int | None:
        found = self._data_user(user_id)
        if found is None:
            return None
        hist, n = self.dm.behaviors(found[0]).histories(np.asarray([found[1]]), 1)
        return int(hist[0, 0]) if n[0] else None

    def _stored_sequence(self, user_id: str, upto: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        log = [c for c in self.store.user_clicks_log(user_id) if c[0] <= upto]
        rows = np.asarray([self.index.row(n) or 0 for _, n, _ in log], np.int64)
        keep = rows > 0
        seqs = np.asarray([s for s, _, _ in log], np.int64)
        times = np.asarray([t for _, _, t in log], np.float64)
        return rows[keep], times[keep], seqs[keep]


class UserTransitions:
    """Turns clicks into transitions: each user's clicks in time order (ties by arrival), after
    the last click of the user's history in the data (when there is one).

    Args:
        data_last_click: the row of the last click of a user's history in the data root, or
            ``None``.
        stored_sequence: a user's stored clicks up to a sequence number, as ``(rows, times,
            seqs)`` arrays in time order (asked for only when a click arrives out of time order).
    """

    def __init__(
        self,
        data_last_click: Callable[[str], int | None],
        stored_sequence: Callable[[str, int], tuple[np.ndarray, np.ndarray, np.ndarray]],
    ) -> None:
        self.data_last_click, self.stored_sequence = data_last_click, stored_sequence
        self.last: dict[str, tuple[float, int, int]] = {}  # user -> (time, seq, row) of the latest click

    def transitions(
        self, users: list[str], rows: np.ndarray, times: np.ndarray, seqs: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The transitions that stored clicks ``(users, rows, times, seqs)`` add (and take back,
        for a click older than the user's latest): ``(src, dst, times, sign)``, each transition
        dated by its later click."""
        rows, times, seqs = np.asarray(rows, np.int64), np.asarray(times, np.float64), np.asarray(seqs, np.int64)
        if not len(rows):
            empty = np.zeros(0, np.int64)
            return empty, empty, np.zeros(0), np.zeros(0)
        names, code = np.unique(np.asarray(users, dtype=object), return_inverse=True)
        code = code.reshape(-1)
        order = np.lexsort((seqs, times, code))
        code, rows, times, seqs = code[order], rows[order], times[order], seqs[order]
        first = np.flatnonzero(np.r_[True, code[1:] != code[:-1]])
        last = np.r_[first[1:], len(code)] - 1
        prev = [self.last.get(u) for u in names]
        late = np.asarray(
            [p is not None and (times[f], seqs[f]) < (p[0], p[1]) for p, f in zip(prev, first)], dtype=bool
        )
        prev_row = np.asarray(
            [p[2] if p is not None else (self.data_last_click(u) or 0) for u, p in zip(names, prev)], np.int64
        )
        # in time order: the link from the previous click, then within the batch
        same = np.r_[code[1:] == code[:-1], False]
        inner = np.flatnonzero(same & ~late[code])
        link = ~late & (prev_row > 0)
        src = [rows[inner], prev_row[link]]
        dst = [rows[inner + 1], rows[first[link]]]
        when = [times[inner + 1], times[first[link]]]
        sign = [np.ones(len(inner)), np.ones(int(link.sum()))]
        for g in np.flatnonzero(late):  # out of time order: the user's sequence again, old and new
            batch = set(seqs[first[g] : last[g] + 1].tolist())
            s_rows, s_times, s_seqs = self.stored_sequence(names[g], int(seqs.max()))
            base = self.data_last_click(names[g]) or 0
            old = ~np.isin(s_seqs, list(batch))
            for keep, sgn in ((old, -1.0), (np.ones(len(s_rows), bool), 1.0)):
                r, t = s_rows[keep], s_times[keep]
                if base:
                    r, t = np.r_[base, r], np.r_[-np.inf, t]
                src.append(r[:-1]), dst.append(r[1:]), when.append(t[1:]), sign.append(np.full(len(r) - 1, sgn))
        for g, u in enumerate(names):
            f = last[g]
            p = self.last.get(u)
            if p is None or (times[f], seqs[f]) > (p[0], p[1]):
                self.last[u] = (float(times[f]), int(seqs[f]), int(rows[f]))
        return tuple(np.concatenate(x) for x in (src, dst, when, sign))  # type: ignore[return-value]
