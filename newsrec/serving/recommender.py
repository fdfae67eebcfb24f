"""Recommender: a trained newsrec model in front of readers, without a Trainer.

The model meets its data through the same handshake as in training
(:meth:`NewsRecModel.connect_data`); every news is encoded once into a vector index, user states
are computed from histories (and cached), and a request's scores come from the model's own
scoring method for that history and those candidates (the offline evaluation path, tested
equal).
"""

from __future__ import annotations

import copy
import os
import threading
import zlib
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from newsrec.checkpoint_io import check_data_signature, model_from_checkpoint, read_checkpoint
from newsrec.data.datamodule import MINDDataModule
from newsrec.models.base import NewsCache, NewsRecModel, gather_rows
from newsrec.serving.index import (
    NEWS_FIELDS,
    IndexStore,
    NewsIndex,
    Recommendations,
    UserKey,
    check_k,
    check_text,
    index_fields,
)
from newsrec.serving.ingest import Ingest
from newsrec.serving.search import ExactSearch, FaissSearch
from newsrec.serving.store import ClickStore, store_options

__all__ = ["Recommender", "Recommendations", "NEWS_FIELDS"]


class Recommender(Ingest):
    """Top-k news for reading histories (or users by id), from a trained model and its data.

    Serving holds no scoring code of its own: a request's scores are the model's
    :meth:`~newsrec.models.NewsRecModel.score_candidates` over a batch the data side builds
    (:meth:`BatchBuilder.request <newsrec.data.batching.BatchBuilder.request>`), with the news
    vectors of the index (the model's :meth:`~newsrec.models.NewsRecModel.encode_all_news`),
    exactly the cached evaluation path. A whole-index request first takes a shortlist from the
    vector search (``k × shortlist_factor`` rows, plus the rows the model says it must re-score:
    :meth:`~newsrec.models.NewsRecModel.rescore_rows`), then re-scores it with the model. A model
    that is not :attr:`~newsrec.models.NewsRecModel.cacheable` is scored through its ``forward``
    over every candidate, one whose user state is several vectors (HieRec, MINER) by
    ``score_candidates`` over every news: exact, slower.

    Args:
        model: a trained :class:`~newsrec.models.NewsRecModel`.
        datamodule: the data the model was trained on (its vocabularies and graphs).
        device: where the model runs.
        search: ``"exact"`` (a matrix product over every news, default) or ``"faiss"`` (an
            approximate inverted-file index, extra ``[serve]``; for ~10^6 news) built in the space
            of the model's user vectors of up to 256 training histories and calibrated on as many
            others to recall@10 ``target_recall`` (0.95); below ``min_approximate_news`` news an
            exact search serves, and after ``add_news`` changed over 10 % of the rows the index is
            rebuilt (:attr:`search_info` says which and the recall measured).
        search_options: keyword arguments of :class:`~newsrec.serving.search.FaissSearch`.
        min_approximate_news: below this many news ``search="faiss"`` serves exactly (20,000).
        index_dir: where the news vector index persists (``.npy`` + a checksummed manifest,
            never pickle); ``None`` keeps it in memory only.
        index_key: what the index is keyed by (the checkpoint's checksum): an index saved under
            another key is never used.
        user_cache_size: user states kept in an LRU cache keyed by the history and user.
        batch_size: news per chunk when encoding the whole corpus, and candidates per chunk.
        shortlist_factor: a whole-index request re-scores ``k × shortlist_factor`` search hits.
        store: where clicks and articles are kept (a SQLite path, ``postgresql://…``, a
            :class:`~newsrec.serving.store.ClickStore`): :meth:`add_clicks`, users by id and the
            live click graph (:mod:`newsrec.serving.ingest`); ``None``: the training graph.
        edge_half_life: seconds for a live graph edge's weight to halve (``None``: no decay).
        follow_seconds: how often to read other processes' clicks and articles from the store
            (``None``: only when this process writes; for several processes on one PostgreSQL).
        entity_refresh_seconds: how often the candidate vectors of news whose entities' live
            neighbours changed are encoded again (60; 0: at every write; see :meth:`refresh_entities`).

    Thread-safe: requests are served one at a time under a lock (the samplers reuse buffers);
    writers (:meth:`add_news`, :meth:`add_clicks`) compute a new index or graph snapshot under
    their own lock and swap it in once everything is computed."""

    def __init__(
        self,
        model: NewsRecModel,
        datamodule: MINDDataModule,
        *,
        device: str | torch.device = "cpu",
        search: str = "exact",
        search_options: Mapping[str, Any] | None = None,
        index_dir: str | os.PathLike | None = None,
        index_key: str = "",
        user_cache_size: int = 4096,
        batch_size: int = 1024,
        shortlist_factor: int = 4,
        min_approximate_news: int = 20_000,
        store: str | os.PathLike | ClickStore | None = None,
        edge_half_life: float | None = None,
        follow_seconds: float | None = None,
        entity_refresh_seconds: float = 60.0,
    ) -> None:
        store = self._open_store(store, follow_seconds, entity_refresh_seconds)  # its failures before any work
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.dm = datamodule
        model.connect_data(datamodule, stage="predict")
        self.history_length = datamodule.history_length
        self.num_corpus_news = len(corpus := datamodule.corpus)
        self.fields = index_fields(datamodule.builder.requirements)  # the model's, and what the live graph reads
        self._lock, self._write_lock, self._snapshot = threading.RLock(), threading.RLock(), None
        self.reads_users = bool(datamodule.builder.requirements.user_ids)  # user-ID embeddings (NPA, LSTUR, …)
        self._user_rows: dict[str, int] | None = None
        self.user_cache_size, self.batch_size, self.shortlist_factor = user_cache_size, batch_size, shortlist_factor
        if search not in ("exact", "faiss"):
            raise ValueError(f"search must be 'exact' or 'faiss', got {search!r}")
        self.search_kind, self.search_options = search, dict(search_options or {})
        self.min_approximate_news = min_approximate_news
        signature = datamodule.signature()
        self._index_store = None if index_dir is None else IndexStore(index_dir, index_key, signature, self.fields)
        news_arrays = datamodule.news_arrays()  # the corpus's, plus PLM token ids
        loaded = self._index_store and self._index_store.load(corpus.news_ids, news_arrays, self.device)
        if loaded is None:
            arrays = {f: np.asarray(news_arrays[f]).copy() for f in self.fields}
            vectors = self.model.encode_all_news(datamodule.news_dataloader(batch_size)) if model.cacheable else None
            self._install(list(corpus.news_ids), arrays, vectors, ())
            if self._index_store is not None and vectors is not None:
                self._index_store.save(self.index, self.num_corpus_news)
        else:
            self._install(*loaded)
        self._start_clicks(store, edge_half_life, follow_seconds, entity_refresh_seconds)

    # -- construction from a checkpoint -------------------------------------------------------------
    @classmethod
    def from_checkpoint(
        cls,
        ckpt_path: str | os.PathLike,
        root: str | os.PathLike | None = None,
        device: str | torch.device = "cpu",
        *,
        model_class: type[NewsRecModel] | None = None,
        index_dir: str | os.PathLike | None = "auto",
        **options: Any,
    ) -> Recommender:
        """Load any newsrec model checkpoint (``torch.load(weights_only=True)``: plain data only)
        with its data, without a Trainer.

        Args:
            ckpt_path: a checkpoint written by ``newsrec fit`` or any Lightning fit of a newsrec
                model connected to its data.
            root: the MIND root; default: the root recorded at training. It must hold the same
                vocabulary and corpus (checked against the checkpoint's checksums).
            device: where the model runs.
            model_class: the model class, when the checkpoint does not name a ``newsrec.models``
                class.
            index_dir: where the vector index persists; ``"auto"`` (default):
                ``ROOT/processed/serving``; ``None``: memory only.
            **options: :class:`Recommender` arguments (``search``, ``store``: ``"auto"`` a SQLite file there, …).
        """
        path = Path(ckpt_path)
        ckpt = read_checkpoint(path)
        model = model_from_checkpoint(ckpt, path, model_class)
        data = ckpt.get("newsrec_data") or {}
        if root is None:
            root = data.get("root")
            if root is None:
                raise ValueError(f"{path} records no data root: pass root=… (the MIND root the model was trained on)")
        dm = MINDDataModule(
            str(root),
            history_length=data.get("history_length", 50),
            missing=data.get("missing", "error"),
            word_vectors=data.get("word_vectors", "word_vectors.txt"),
            **(data.get("corpus_config") or {}),
        )
        check_data_signature(dm.signature(), data, path)
        if index_dir == "auto":
            index_dir = Path(root) / "processed" / "serving"
        key = f"{zlib.crc32(path.read_bytes()):08x}-{path.stat().st_size}"
        options = store_options(options, Path(root) / "processed" / "serving" if index_dir is None else index_dir)
        return cls(model, dm, device=device, index_dir=index_dir, index_key=key, **options)

    # -- the index ------------------------------------------------------------------------------------
    def _install(
        self, ids: list[str], arrays: dict, vectors: NewsCache | None, changed: tuple[int, ...], search=None
    ) -> None:
        """Make a new :class:`NewsIndex` the served one (its builder made here, and its search
        unless given: see :meth:`_new_search`)."""
        index = NewsIndex(ids, arrays, vectors, changed, self._serving_builder(arrays), search)
        if search is None and vectors is not None:
            index.search, self._rows_changed_since_build = self._new_search(index), 0
        self.index = index  # one assignment: a request keeps the index (and user cache) it started with

    def _serving_builder(self, arrays: dict):
        """The batch builder over ``arrays`` that reads the live graph when there is one."""
        return self.dm.serving_builder(arrays, live=self._snapshot)

    def _swap_index(self, vectors, search, keep_users: bool = False) -> None:
        """Serve the same news with new ``vectors``/``search`` and a builder over the live graph."""
        index = copy.copy(self.index)
        index.vectors, index.search, index.builder = vectors, search, self._serving_builder(index.arrays)
        index.users = index.users if keep_users else OrderedDict()
        self.index = index  # no lock: the swap never waits for a request in flight

    def _new_search(self, index: NewsIndex):
        """The search asked for: exact, or an approximate one built in the space of the model's
        user vectors of (up to 256) training histories and calibrated on (up to 256) others;
        exact, with the reason, when there are too few news for clustering to pay."""
        vectors = index.vectors.candidate.float().cpu()
        if not self.model.user_is_vector:
            return ExactSearch(vectors, "the model's user state is not one vector: every news is scored exactly")
        if self.search_kind == "exact":
            return ExactSearch(vectors)
        if len(index) - 1 < self.min_approximate_news:
            return ExactSearch(vectors, f"{len(index) - 1} news < min_approximate_news={self.min_approximate_news}")
        train = self.dm.behaviors("train")
        rows = np.random.default_rng(0).permutation(len(train))[:512]
        hist, lengths = train.histories(rows, self.history_length)
        histories = list(dict.fromkeys(tuple(h[:n].tolist()) for h, n in zip(hist, lengths) if n))
        with torch.inference_mode():
            users = self._user_states(index, [(h, 0) for h in histories]) if histories else []
        queries = torch.stack([u[0] for u in users]).float().cpu() if users else torch.zeros(0, vectors.shape[1])
        # one half shapes the index's space, the other measures its recall (never the same users)
        shaping, measuring = (queries[0::2], queries[1::2]) if len(queries) > 1 else (queries, queries)
        search = FaissSearch(vectors, fetch_factor=self.shortlist_factor, **{"queries": shaping, **self.search_options})
        search.calibrate(measuring)
        return search

    @property
    def search_info(self) -> dict:
        """``{"search": "exact" | "faiss", "recall": recall@10 last measured (exact: 1.0;
        ``None``: not measured), "reason": why an exact search serves where faiss was asked}``."""
        search = self.index.search
        if search is None:
            return {"search": "forward", "recall": 1.0, "reason": "the model is not cacheable"}
        return {"search": "exact" if search.exact else "faiss", "recall": search.recall, "reason": search.reason}

    @property
    def _users(self) -> OrderedDict:
        return self.index.users  # the served index's user-state cache

    @property
    def num_news(self) -> int:
        """News in the index (the padding row not counted)."""
        return len(self.index) - 1

    # -- requests -------------------------------------------------------------------------------------
    def recommend(
        self,
        history: Sequence[str] | None = None,
        k: int = 10,
        candidates: Sequence[str] | None = None,
        exclude_history: bool = True,
        user_id: str | None = None,
    ) -> Recommendations:
        """The top-``k`` news for one reading ``history`` (news ids, oldest first), or for the
        user ``user_id`` (``history=None``: :meth:`user_history`, the data root's history and the
        stored clicks).

        Args:
            history: news ids, oldest first; ids not in the index are ignored and reported back
                (``.unknown_history``); only the model's ``history_length`` most recent count.
                ``None``: the history of ``user_id`` (an unknown user: empty, the cold start).
            k: list length (≥ 1).
            candidates: rank only these ids (``None``: the whole index); an id given more than
                once is ranked once (its first place counts). An unknown candidate id is a
                ``KeyError`` naming it; an id that is not valid UTF-8 text is a ``ValueError``.
            exclude_history: never recommend a news of the history.
            user_id: the reader: with ``history=None`` whose history; for a model with user-ID
                embeddings (NPA, LSTUR) a user of the training split gets their learned vector,
                any other id (or ``None``) the model's unknown-user answer.

        Returns:
            :class:`Recommendations`: ``(news_id, score)`` pairs, best first. The scores are the
            model's own for this history and these candidates.
        """
        return self.recommend_many(
            [history], k=k, candidates=None if candidates is None else [candidates], exclude_history=exclude_history,
            user_ids=[user_id],
        )[0]  # fmt: skip

    def recommend_many(
        self,
        histories: Sequence[Sequence[str] | None],
        k: int = 10,
        candidates: Sequence[Sequence[str] | None] | None = None,
        exclude_history: bool = True,
        user_ids: Sequence[str | None] | None = None,
    ) -> list[Recommendations]:
        """The batched :meth:`recommend`: one history (or ``None``: the user's) per request,
        ``candidates`` and ``user_ids`` ``None`` or one entry per request. User states are
        computed in one batch."""
        k = check_k(k)  # a Python or numpy integer
        if (candidates is not None and len(candidates) != len(histories)) or (
            user_ids is not None and len(user_ids) != len(histories)
        ):
            raise ValueError(f"one candidate list and one user id (or None) per history, for {len(histories)}")
        users_at = [self.user_row(None if user_ids is None else user_ids[i]) for i in range(len(histories))]
        if any(h is None for h in histories):
            if user_ids is None or any(h is None and user_ids[i] is None for i, h in enumerate(histories)):
                raise ValueError("give a history or a user id for every request")
            histories = [self.user_history(user_ids[i]) if h is None else h for i, h in enumerate(histories)]
        with self._lock, torch.inference_mode():
            index = self.index
            rows, unknown = zip(*(self._rows(index, h) for h in histories)) if histories else ((), ())
            cand_rows = [
                None if candidates is None or candidates[i] is None else self._candidate_rows(index, candidates[i])
                for i in range(len(histories))
            ]
            keys = list(zip(rows, users_at))
            users = self._user_states(index, keys) if self.model.cacheable else [None] * len(rows)
            out = []
            for i, history in enumerate(rows):
                excluded = history if exclude_history else ()
                chosen = cand_rows[i] if cand_rows[i] is not None else self._shortlist(index, users[i], k, excluded)
                if exclude_history and history:
                    chosen = chosen[~np.isin(chosen, history)]
                scores = self._score(index, keys[i], users[i], chosen)
                out.append(self._top(index, chosen, scores, k, unknown[i]))
            return out

    def _rows(self, index: NewsIndex, history: Sequence[str]) -> tuple[tuple[int, ...], list[str]]:
        if isinstance(history, str):
            raise TypeError("history must be a list of news ids, not one string")
        rows = [index.row(check_text(h, "history id")) for h in history]
        known = [r for r in rows if r is not None]
        return tuple(known[-self.history_length :]), [h for h, r in zip(history, rows) if r is None]

    def _candidate_rows(self, index: NewsIndex, candidates: Sequence[str]) -> np.ndarray:
        if isinstance(candidates, str):
            raise TypeError("candidates must be a list of news ids, not one string")
        candidates = list(dict.fromkeys(check_text(c, "candidate id") for c in candidates))  # each at most once
        rows = [index.row(c) for c in candidates]
        missing = [c for c, r in zip(candidates, rows) if r is None]
        if missing:
            shown = ", ".join(map(repr, missing[:5])) + (" …" if len(missing) > 5 else "")
            raise KeyError(f"unknown candidate news id(s): {shown} (add them with add_news first)")
        return np.asarray(rows, np.int64)

    def _user_states(self, index: NewsIndex, keys: list[UserKey]) -> list[tuple[Tensor, Tensor | None]]:
        """Per ``(history, user row)``: the user state and the rows it must re-score (LRU-cached)."""
        cache = index.users  # the index's own: a swapped-in graph starts an empty one
        todo = list(dict.fromkeys(h for h in keys if h not in cache))
        if todo:
            batch = index.builder.request([h for h, _ in todo], self.history_length, users=[u for _, u in todo])
            batch = batch.to(self.device)
            users = self.model.encode_users(batch, index.vectors.history.index_select(0, batch.news_rows))
            rescore = self.model.rescore_rows(batch)
            for i, h in enumerate(todo):
                cache[h] = (users[i], None if rescore is None else rescore[i])
                if len(cache) > self.user_cache_size:
                    cache.popitem(last=False)
        for h in keys:
            cache.move_to_end(h)
        return [cache[h] for h in keys]

    def _shortlist(self, index: NewsIndex, user, k: int, excluded: tuple[int, ...]) -> np.ndarray:
        """The rows a whole-index request scores: every rankable row for a model that is not
        cacheable; else the search's top ``k × shortlist_factor`` (``excluded`` rows left out)
        and the rows the model must re-score."""
        allowed = index.allowed()
        if user is None or not self.model.user_is_vector:  # not cacheable, or no vector search
            return torch.nonzero(allowed).flatten().numpy()
        if excluded:
            allowed[torch.as_tensor(excluded)] = False
        vector, rescore = user
        _, hits = index.search.search(vector[None].float().cpu(), k * self.shortlist_factor, allowed)
        hits = hits[0][hits[0] >= 0]
        hits = hits[allowed[hits]].numpy()  # a search asked for more than it may return pads with others
        extra = np.zeros(0, np.int64) if rescore is None else rescore.numpy()
        return np.unique(np.concatenate([hits, extra]))

    def _score(self, index: NewsIndex, key: UserKey, user, rows: np.ndarray) -> Tensor:
        """The model's scores ``[len(rows)]`` for this ``(history, user row)``, in chunks, through its
        one scoring path: ``score_candidates`` on the index's vectors, or ``forward``."""
        (history, user_row), parts = key, []
        for start in range(0, len(rows), self.batch_size):
            chunk = [rows[start : start + self.batch_size]]
            batch = index.builder.request([history], self.history_length, chunk, users=[user_row]).to(self.device)
            if user is None:  # not cacheable: the plain forward over the candidates' features
                parts.append(self.model(batch)[0].float().cpu())
                continue
            candidates = gather_rows(index.vectors.candidate.index_select(0, batch.news_rows), batch.candidates)
            scores = self.model.score_candidates(user[0][None], candidates, batch)
            parts.append(scores[0, : len(chunk[0])].float().cpu())
        return torch.cat(parts) if parts else torch.zeros(0)

    @staticmethod
    def _top(index: NewsIndex, rows: np.ndarray, scores: Tensor, k: int, unknown: list[str]) -> Recommendations:
        k = min(k, int(torch.isfinite(scores).sum()))
        top = torch.topk(scores, k) if k else None
        items = [] if top is None else [(index.ids[int(rows[i])], float(v)) for v, i in zip(top.values, top.indices)]
        return Recommendations(items, unknown)
