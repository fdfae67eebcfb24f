"""Recommender: a trained newsrec model in front of readers, without a Trainer.

The model meets its data through the same handshake as in training
(:meth:`NewsRecModel.connect_data`); every news is encoded once into a vector index, user vectors
are computed from histories (and cached), and a request's scores are the model's own scores
for that history and those candidates (the offline evaluation path, tested equal).
"""

from __future__ import annotations

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

from newsrec.core import ArrayCache, NewsBatch
from newsrec.data.batching import news_features
from newsrec.data.datamodule import MINDDataModule
from newsrec.graphs.transitions import recent_clicks
from newsrec.models.base import NewsRecModel
from newsrec.serving.search import make_search

__all__ = ["Recommender", "Recommendations", "NEWS_FIELDS"]

#: the fields of MIND's news.tsv that :meth:`Recommender.add_news` reads (``news_id`` required)
NEWS_FIELDS = ("news_id", "category", "subcategory", "title", "abstract", "title_entities", "abstract_entities")


class Recommendations(list):
    """A list of ``(news_id, score)``, best first, with ``unknown_history``: the history ids
    that are not in the news index (ignored)."""

    def __init__(self, items: Sequence[tuple[str, float]], unknown_history: Sequence[str] = ()) -> None:
        super().__init__(items)
        self.unknown_history = list(unknown_history)


class Recommender:
    """Top-k news for reading histories, from a trained model and its data.

    Args:
        model: a trained :class:`~newsrec.models.NewsRecModel`.
        datamodule: the data the model was trained on (its vocabularies and graphs).
        device: where the model runs.
        search: ``"exact"`` (a matrix product over every news, default) or ``"faiss"`` (an
            approximate inverted-file index, extra ``[serve]``; for ~10^6 news). Either way the
            shortlist is re-scored exactly by the model.
        search_options: keyword arguments of :class:`~newsrec.serving.search.FaissSearch`.
        index_dir: where the news vector index persists (``.npy`` + a checksummed manifest,
            never pickle); ``None`` keeps it in memory only.
        index_key: what the index is keyed by (the checkpoint's checksum): an index saved under
            another key is never used.
        user_cache_size: user vectors kept in an LRU cache keyed by the history (every model's
            user vector depends on the history alone).
        batch_size: news per chunk when encoding the whole corpus.

    Thread-safe: requests are served one at a time under a lock (the samplers reuse buffers),
    and :meth:`add_news` swaps its results in only once everything is computed, so a failing
    request never leaves a half-updated index.
    """

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
    ) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.dm = datamodule
        model.connect_data(datamodule, stage="predict")
        self.requirements = datamodule.builder.requirements
        corpus = datamodule.corpus
        self.history_length = datamodule.history_length
        self.num_corpus_news = len(corpus)
        self._fields = tuple(dict.fromkeys((*self.requirements.news_fields, "entities")))
        self._entity_table = datamodule._entity_table
        self._lock = threading.RLock()
        self._users: OrderedDict[tuple[int, ...], Tensor] = OrderedDict()
        self.user_cache_size = user_cache_size
        self.search_kind, self.search_options = search, dict(search_options or {})
        self.index_key = index_key
        self._store = ArrayCache(index_dir) if index_dir is not None else None
        self._name = f"index-{index_key or 'memory'}"
        loaded = self._load()
        if loaded is None:
            news_arrays = datamodule.news_arrays()  # the corpus's, plus PLM token ids
            arrays = {f: np.asarray(news_arrays[f]).copy() for f in self._fields}
            with torch.inference_mode():
                cand, hist = self.model.encode_all_news(datamodule.news_dataloader(batch_size))
            state = {"ids": list(corpus.news_ids), "arrays": arrays, "candidate": cand, "history": hist, "changed": []}
        else:
            state = loaded
        self._install(state)
        if loaded is None:
            self._save()

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
            **options: :class:`Recommender` arguments (``search``, ``user_cache_size``, …).
        """
        import pickle

        path = Path(ckpt_path)
        if not path.is_file():
            raise FileNotFoundError(f"no checkpoint at {path}")
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            raise ValueError(
                f"{path} holds more than plain tensors and values, so it is refused (weights_only=True): "
                f"only load checkpoints you trust ({str(e).splitlines()[0]})"
            ) from None
        if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
            raise ValueError(f"{path} is not a Lightning checkpoint (no state_dict)")
        hparams = dict(ckpt.get("hyper_parameters") or {})
        model_cls = model_class or _model_class(ckpt.get("newsrec_model") or hparams.get("_class_path"), path)
        model = model_cls(**{k: v for k, v in hparams.items() if not k.startswith("_")})
        model.load_state_dict(ckpt["state_dict"])
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
        _check_signature(dm, data, path)
        if index_dir == "auto":
            index_dir = Path(root) / "processed" / "serving"
        key = f"{zlib.crc32(path.read_bytes()):08x}-{path.stat().st_size}"
        return cls(model, dm, device=device, index_dir=index_dir, index_key=key, **options)

    # -- state ----------------------------------------------------------------------------------------
    def _install(self, state: dict, search=None) -> None:
        """Make ``state`` (ids, arrays, vectors) the served one: builder, search, id map."""
        ids = state["ids"]
        builder = self.dm.serving_builder(state["arrays"])
        allowed = torch.ones(len(ids), dtype=torch.bool)
        allowed[0] = False  # the padding news
        if search is None:
            search = make_search(self.search_kind, state["candidate"].float().cpu(), **self.search_options)
        self._state = {
            **state,
            "index": {n: i for i, n in enumerate(ids)},
            "builder": builder,
            "search": search,
            "allowed": allowed,
        }
        self._users.clear()

    @property
    def num_news(self) -> int:
        """News in the index (the padding row not counted)."""
        return len(self._state["ids"]) - 1

    def _save(self) -> None:
        if self._store is None:
            return
        s = self._state
        changed = np.asarray(sorted(set(s["changed"])), np.int64)
        arrays = {"candidate": s["candidate"].float().cpu().numpy(), "history": s["history"].float().cpu().numpy()}
        arrays["changed_rows"] = changed
        for f in self._fields:
            arrays[f"changed_{f}"] = s["arrays"][f][changed]
        meta = {"key": self.index_key, "ids": s["ids"][self.num_corpus_news :], "num_corpus_news": self.num_corpus_news}
        meta["signature"] = {k: v for k, v in self.dm.signature().items() if k != "root"}
        self._store.save(self._name, arrays, meta)

    def _load(self) -> dict | None:
        if self._store is None:
            return None
        got = self._store.load(self._name)
        if got is None:
            return None
        arrays, meta = got
        signature = {k: v for k, v in self.dm.signature().items() if k != "root"}
        if meta.get("key") != self.index_key or meta.get("signature") != signature:
            return None  # another checkpoint's or another corpus's index: never used
        corpus = self.dm.corpus
        ids = list(corpus.news_ids) + list(meta["ids"])
        changed = np.asarray(arrays["changed_rows"], np.int64)
        fields = {}
        news_arrays = self.dm.news_arrays()
        for f in self._fields:
            base = np.asarray(news_arrays[f])
            full = np.zeros((len(ids), *base.shape[1:]), base.dtype)
            full[: len(base)] = base
            full[changed] = np.asarray(arrays[f"changed_{f}"])
            fields[f] = full
        vectors = {k: torch.from_numpy(np.array(arrays[k])).to(self.device) for k in ("candidate", "history")}
        return {"ids": ids, "arrays": fields, **vectors, "changed": changed.tolist()}

    # -- requests -------------------------------------------------------------------------------------
    def recommend(
        self,
        history: Sequence[str],
        k: int = 10,
        candidates: Sequence[str] | None = None,
        exclude_history: bool = True,
    ) -> Recommendations:
        """The top-``k`` news for one reading ``history`` (news ids, oldest first).

        Args:
            history: news ids, oldest first; ids not in the index are ignored and reported back
                (``.unknown_history``); only the model's ``history_length`` most recent count.
            k: list length (≥ 1).
            candidates: rank only these ids (``None``: the whole index). An unknown candidate id
                is a ``KeyError`` naming it.
            exclude_history: never recommend a news of the history.

        Returns:
            :class:`Recommendations`: ``(news_id, score)`` pairs, best first. The scores are the
            model's own for this history and these candidates.
        """
        return self.recommend_many(
            [history], k=k, candidates=None if candidates is None else [candidates], exclude_history=exclude_history
        )[0]

    def recommend_many(
        self,
        histories: Sequence[Sequence[str]],
        k: int = 10,
        candidates: Sequence[Sequence[str] | None] | None = None,
        exclude_history: bool = True,
    ) -> list[Recommendations]:
        """The batched :meth:`recommend`: one history per request, ``candidates`` ``None`` or one
        list (or ``None``) per request. User vectors are computed in one batch."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a whole number >= 1, got {k!r}")
        if candidates is not None and len(candidates) != len(histories):
            raise ValueError(f"{len(histories)} histories but {len(candidates)} candidate lists")
        with self._lock, torch.inference_mode():
            s = self._state
            rows, unknown = zip(*(self._rows(h) for h in histories)) if histories else ((), ())
            cand_rows = [
                None if candidates is None or candidates[i] is None else self._candidate_rows(candidates[i])
                for i in range(len(histories))
            ]
            users = self._user_vectors(list(rows))
            return [
                self._rank(users[i], rows[i], cand_rows[i], k, exclude_history, unknown[i], s)
                for i in range(len(histories))
            ]

    def _rows(self, history: Sequence[str]) -> tuple[tuple[int, ...], list[str]]:
        index = self._state["index"]
        if isinstance(history, str):
            raise TypeError("history must be a list of news ids, not one string")
        known = [index[h] for h in history if h in index and index[h] != 0]
        unknown = [h for h in history if h not in index or index[h] == 0]
        return tuple(known[-self.history_length :]), unknown

    def _candidate_rows(self, candidates: Sequence[str]) -> np.ndarray:
        index = self._state["index"]
        if isinstance(candidates, str):
            raise TypeError("candidates must be a list of news ids, not one string")
        missing = [c for c in candidates if c not in index or index[c] == 0]
        if missing:
            shown = ", ".join(map(repr, missing[:5])) + (" …" if len(missing) > 5 else "")
            raise KeyError(f"unknown candidate news id(s): {shown} (add them with add_news first)")
        return np.asarray([index[c] for c in candidates], np.int64)

    def _user_vectors(self, histories: list[tuple[int, ...]]) -> list[Tensor]:
        """One user vector per history (``[d]``), from the LRU cache or computed in one batch."""
        todo = list(dict.fromkeys(h for h in histories if h not in self._users))
        if todo:
            L = self.history_length
            hist = np.zeros((len(todo), L), np.int64)
            mask = np.zeros((len(todo), L), bool)
            for i, h in enumerate(todo):
                hist[i, : len(h)], mask[i, : len(h)] = h, True
            batch = self._batch(hist, mask, np.zeros((len(todo), 1), np.int64))
            hist_news = self._state["history"].index_select(0, batch.news_rows)
            users = self.model.encode_users(batch, hist_news)
            for h, u in zip(todo, users, strict=True):
                self._users[h] = u
                if len(self._users) > self.user_cache_size:
                    self._users.popitem(last=False)
        out = []
        for h in histories:
            self._users.move_to_end(h)
            out.append(self._users[h])
        return out

    def _batch(self, hist: np.ndarray, mask: np.ndarray, cands: np.ndarray) -> NewsBatch:
        B = len(hist)
        batch = self._state["builder"](
            hist,
            mask,
            cands,
            np.zeros(cands.shape, bool),
            np.zeros(cands.shape, np.int64),
            np.arange(B),
            np.zeros(B, np.int64),
            np.zeros(B, np.int64),
        )
        return batch.to(self.device)

    def _rank(
        self,
        user: Tensor,
        history: tuple[int, ...],
        cand: np.ndarray | None,
        k: int,
        exclude: bool,
        unknown: list[str],
        s: dict,
    ) -> Recommendations:
        cand_vectors, ids = s["candidate"], s["ids"]
        if cand is None:  # the whole index: a shortlist from the search, re-scored exactly
            allowed = s["allowed"].clone()
            if exclude and history:
                allowed[torch.as_tensor(history)] = False
            extra = self._graph_neighbours(history)
            if s["search"].exact:
                scores = self.model.score(user[None], cand_vectors[None])[0].float()
                rows = torch.arange(len(scores), device=scores.device)
            else:
                _, short = s["search"].search(user[None].float().cpu(), k * 4, allowed)
                short = short[0][short[0] >= 0]
                rows = torch.unique(torch.cat([short, torch.as_tensor(extra, dtype=torch.long)]))
                rows = rows.to(cand_vectors.device)
                scores = self.model.score(user[None], cand_vectors.index_select(0, rows)[None])[0].float()
            scores = self._add_graph_term(scores, rows, history, extra)
            scores = scores.masked_fill(~allowed.to(scores.device)[rows], float("-inf"))
        else:
            rows = torch.as_tensor(cand, device=cand_vectors.device)
            scores = self.model.score(user[None], cand_vectors.index_select(0, rows)[None])[0].float()
            scores = self._add_graph_term(scores, rows, history, None)
            if exclude and history:
                scores = scores.masked_fill(
                    torch.isin(rows, torch.as_tensor(history, device=rows.device)), float("-inf")
                )
        k = min(k, int(torch.isfinite(scores).sum()))
        top = torch.topk(scores, k) if k else None
        items = [] if top is None else [(ids[int(rows[i])], float(v)) for v, i in zip(top.values, top.indices)]
        return Recommendations(items, unknown)

    # -- the click graph's score term (GLORY graph_score) ------------------------------------------------
    def _graph_neighbours(self, history: tuple[int, ...]) -> np.ndarray:
        """News with a transition to or from the history's recent clicks: the only ones whose
        click-graph term is not exactly 0."""
        table = self._state["builder"].transition_table
        if self.model.transition_scorer is None or table is None or not history:
            return np.zeros(0, np.int64)
        m = int(self.requirements.transitions)
        return table.neighbours(np.asarray(history[-m:], np.int64))

    def _add_graph_term(
        self, scores: Tensor, rows: Tensor, history: tuple[int, ...], extra: np.ndarray | None
    ) -> Tensor:
        scorer, table = self.model.transition_scorer, self._state["builder"].transition_table
        if scorer is None or table is None or not history:
            return scores
        m = int(self.requirements.transitions)
        hist = np.zeros((1, self.history_length), np.int64)
        mask = np.zeros((1, self.history_length), bool)
        hist[0, : len(history)], mask[0, : len(history)] = history, True
        recent, rmask = recent_clicks(hist, mask, m)
        rows_np = rows.cpu().numpy()
        if extra is not None:  # only candidates with an edge can get a non-zero term
            where = np.nonzero(np.isin(rows_np, extra))[0]
        else:
            where = np.arange(len(rows_np))
        if not len(where):
            return scores
        feats = table.features(recent, rmask, rows_np[where][None])
        term = scorer(torch.from_numpy(feats).to(scores.device), torch.from_numpy(rmask).to(scores.device))[0]
        return scores.index_add(0, torch.as_tensor(where, device=scores.device), term.to(scores.dtype))

    # -- fresh news -----------------------------------------------------------------------------------
    def add_news(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, int]:
        """Add or update articles (MIND's news.tsv fields: ``news_id`` and ``title`` required,
        ``category``, ``subcategory``, ``abstract``, ``title_entities``, ``abstract_entities``
        optional), rankable at once. Text is tokenised with the training vocabulary; a fresh news
        has no click-graph edges (GLORY: an isolated node, no transitions). The index is saved
        again (when it persists). Returns ``{"added": n, "updated": m}``."""
        rows = [self._checked_row(i, r) for i, r in enumerate(rows)]
        ids = [r["news_id"] for r in rows]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"news id(s) given more than once: {dup[:5]}")
        if not rows:
            return {"added": 0, "updated": 0}
        encoded = self.dm.encode_news_rows(rows, name="add_news")
        with torch.inference_mode():
            news = {
                k: v.to(self.device)
                for k, v in news_features(
                    encoded, self.requirements.news_fields, np.arange(len(rows)), self._entity_table
                ).items()
            }
            h = self.model.encode_history_news(news)
            c = h if self.model.history_is_candidate else self.model.encode_news(news, h)
        with self._lock:
            s = self._state
            index = s["index"]
            old = [index[i] for i in ids if i in index]
            new_ids = [i for i in ids if i not in index]
            all_ids = s["ids"] + new_ids
            target = np.asarray([index[i] if i in index else len(s["ids"]) + new_ids.index(i) for i in ids], np.int64)
            grow = len(new_ids)
            arrays = {}
            for f in self._fields:
                a = s["arrays"][f]
                a = np.concatenate([a, np.zeros((grow, *a.shape[1:]), a.dtype)]) if grow else a.copy()
                a[target] = encoded[f]
                arrays[f] = a
            vectors = {}
            for name, v in (("candidate", c), ("history", h)):
                base = s[name]
                if grow:
                    base = torch.cat([base, base.new_zeros(grow, base.shape[1])])
                else:
                    base = base.clone()
                vectors[name] = base.index_copy(0, torch.as_tensor(target, device=base.device), v.to(base.dtype))
            state = {
                "ids": all_ids,
                "arrays": arrays,
                **vectors,
                "changed": sorted(set(s["changed"]) | set(target.tolist())),
            }
            rows_changed = torch.as_tensor(target)
            self._install(state, s["search"].updated(vectors["candidate"].float().cpu(), rows_changed))
            self._save()
        return {"added": len(new_ids), "updated": len(old)}

    @staticmethod
    def _checked_row(i: int, row: Any) -> dict:
        if not isinstance(row, Mapping):
            raise TypeError(f"news {i}: expected an object with MIND's news fields, got {type(row).__name__}")
        unknown = sorted(set(row) - set(NEWS_FIELDS))
        if unknown:
            raise ValueError(f"news {i}: unknown field(s) {unknown}; the fields are {list(NEWS_FIELDS)}")
        for f in NEWS_FIELDS:
            if row.get(f) is not None and not isinstance(row[f], str):
                raise TypeError(f"news {i}: {f} must be a string, got {type(row[f]).__name__}")
        if not row.get("news_id") or not row["news_id"].strip():
            raise ValueError(f"news {i}: news_id is required")
        if not (row.get("title") or "").strip():
            raise ValueError(f"news {i} ({row['news_id']}): a title is required")
        return dict(row)


def _model_class(path: str | None, ckpt: Path) -> type[NewsRecModel]:
    if not path:
        raise ValueError(f"{ckpt} does not name its model class: pass model_class=… (e.g. newsrec.models.GLORY)")
    module, _, name = path.rpartition(".")
    if not module.startswith("newsrec."):
        raise ValueError(f"{ckpt} names the class {path!r}, outside newsrec: pass model_class=… to load it")
    import importlib

    cls = getattr(importlib.import_module(module), name, None)
    if not (isinstance(cls, type) and issubclass(cls, NewsRecModel)):
        raise ValueError(f"{ckpt} names {path!r}, which is not a newsrec model")
    return cls


def _check_signature(dm: MINDDataModule, recorded: Mapping[str, Any], ckpt: Path) -> None:
    if not recorded:
        return
    now = dm.signature()
    for key, what in (("vocabulary_crc32", "vocabulary"), ("news_ids_crc32", "corpus (news ids)")):
        if key in recorded and recorded[key] != now[key]:
            raise ValueError(
                f"the data root {dm.root} does not match {ckpt}: its {what} differs from the one the model was "
                f"trained with (crc32 {now[key]:08x}, expected {recorded[key]:08x}); pass the root and corpus "
                "settings of the training run"
            )
