"""Batches for every model: datasets, samplers and the vectorised batch builder.

A batch is a :class:`~newsrec.core.NewsBatch` (it also reads like a dict):

- ``news``: the features of the ``U`` distinct news the batch needs (histories, candidates and
  sampled graph nodes), e.g. ``title [U, L_title]``; ``news_rows [U]`` are their corpus rows.
  Position 0 is always the padding news (row 0), so padding indices point at it.
- ``history [B_u, L]`` / ``history_mask [B_u, L]``: each distinct user history as indices
  into ``news`` (oldest first, padded at the end).
- ``candidates [B, C]`` / ``candidate_mask [B, C]`` (indices into ``news``), ``labels [B, C]``
  (1 = clicked; in training the clicked news is column 0), ``user_index [B]`` (which history
  row each impression uses), ``impression_ids [B]`` and ``rows [B]`` (behaviors rows).
- ``transition_features [B, C, m, 4]`` / ``transition_mask [B, m]`` when the model asks for
  ``transitions = m``: the click-graph transition features between every candidate and the
  impression's ``m`` most recent clicks (:meth:`TransitionTable.features`; in training, the
  sample user's own clicks after the sample's history are left out of the counts).
- ``history_users [B_u]`` when the model asks for ``user_ids``: each history's user as an
  index of the training users (0: a user the training split does not have).
- ``semantic_neighbors [U, k]`` when the model reads it (DIGAT): each news' nearest news by
  title, as positions in ``news`` (the candidates' neighbours are always in the batch; 0 where
  a neighbour is not); likewise ``semantic_graph [U, S]``, each news' semantic-augmented graph
  (:mod:`newsrec.data.semantic_graph`), with its ``semantic_graph_edges [U, S]``.
- GLORY adds ``subgraph``: a :class:`~torch_geometric.data.Batch` of the users' sampled
  subgraphs whose ``node_index [T]`` gives each node's position in ``news``.

Everything is gathered from numpy arrays in a few vectorised operations per batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from newsrec.core import DataRequirements, NewsBatch
from newsrec.core.requirements import SEMANTIC_GRAPH_FIELD, SEMANTIC_NEIGHBOR_FIELD
from newsrec.data.behaviors import Behaviors, TrainingSamples
from newsrec.data.corpus import NewsCorpus
from newsrec.data.samplers import EpochBatchSampler, ImpressionBatchSampler, ResumableLoader, history_order

__all__ = [
    "BatchBuilder",
    "TrainDataset",
    "ImpressionDataset",
    "EpochBatchSampler",
    "ResumableLoader",
    "ImpressionBatchSampler",
    "NewsDataset",
    "DataRequirements",
    "news_features",
    "history_order",
]


class BatchBuilder:
    """Builds batches from corpus rows: call it with histories, candidates and labels."""

    def __init__(
        self,
        corpus: NewsCorpus,
        requirements: DataRequirements,
        *,
        khop_sampler=None,
        entity_table: np.ndarray | None = None,
        transition_table=None,
        future_edges=None,
        arrays: dict[str, np.ndarray] | None = None,
    ) -> None:
        source = corpus.arrays if arrays is None else arrays  # ``arrays``: the corpus plus added news
        self.fields = {f: np.asarray(source[f]) for f in requirements.news_fields}
        self.requirements = requirements
        self.khop_sampler = khop_sampler
        self.entity_table = entity_table  # [num_entities, M_e] neighbour ids, 0 = none
        self.transition_table = transition_table  # TransitionTable, when requirements.transitions
        self.future_edges = future_edges  # UserFutureEdges of the training users
        if requirements.transitions is not None and transition_table is None:
            raise ValueError("requirements.transitions needs a transition_table")

    def __call__(
        self,
        history: np.ndarray,
        history_mask: np.ndarray,
        candidates: np.ndarray,
        candidate_mask: np.ndarray,
        labels: np.ndarray,
        user_index: np.ndarray,
        impression_ids: np.ndarray,
        rows: np.ndarray,
        users: np.ndarray | None = None,
        history_lengths: np.ndarray | None = None,
        history_users: np.ndarray | None = None,
    ) -> NewsBatch:
        """All arrays hold corpus rows (0 = padding); returns the batch (module docstring).

        ``users`` / ``history_lengths`` (``[B]``, training only): the training user of each
        sample and its full history length, so that transition features leave out the user's
        own later clicks (see :class:`~newsrec.graphs.transitions.UserFutureEdges`).
        ``history_users`` (``[B_u]``): each history's user-vocabulary index, for a model that
        asks for ``user_ids`` (``None``: every history is a new user, index 0)."""
        parts = [np.zeros(1, np.int64), history[history_mask], candidates[candidate_mask]]
        subgraph = None
        if self.khop_sampler is not None:
            subgraph = self.khop_sampler.sample(history, history_mask)
            parts.append(subgraph.n_id.numpy())
        linked = [f for f in (SEMANTIC_NEIGHBOR_FIELD, SEMANTIC_GRAPH_FIELD) if f in self.fields]
        for field in linked:  # the candidates' neighbour (semantic graph) news join the batch (DIGAT)
            parts.append(self.fields[field][candidates[candidate_mask]].reshape(-1).astype(np.int64))
        news_rows = np.unique(np.concatenate(parts))  # sorted, starts with 0

        def local(a: np.ndarray) -> np.ndarray:
            return np.searchsorted(news_rows, a)

        news = news_features(self.fields, tuple(self.fields), news_rows, self.entity_table)
        for field in linked:  # as positions in the batch (0: a neighbour the batch does not hold)
            wanted = news[field].numpy()
            pos = np.minimum(local(wanted), len(news_rows) - 1)
            news[field] = torch.from_numpy(np.where(news_rows[pos] == wanted, pos, 0))
        batch = NewsBatch(
            news=news,
            news_rows=torch.from_numpy(news_rows.astype(np.int64)),
            history=torch.from_numpy(np.where(history_mask, local(history), 0)),
            history_mask=torch.from_numpy(history_mask),
            candidates=torch.from_numpy(np.where(candidate_mask, local(candidates), 0)),
            candidate_mask=torch.from_numpy(candidate_mask),
            labels=torch.from_numpy(labels.astype(np.int64)),
            user_index=torch.from_numpy(user_index.astype(np.int64)),
            impression_ids=torch.from_numpy(impression_ids.astype(np.int64)),
            rows=torch.from_numpy(rows.astype(np.int64)),
        )
        if self.requirements.user_ids:
            given = np.zeros(len(history), np.int64) if history_users is None else history_users
            batch.history_users = torch.from_numpy(np.asarray(given, np.int64).reshape(len(history)))
        if self.requirements.transitions is not None:
            feats, tmask = self._transitions(history, history_mask, candidates, user_index, users, history_lengths)
            batch.transition_features = torch.from_numpy(feats)
            batch.transition_mask = torch.from_numpy(tmask)
        if subgraph is not None:
            subgraph.node_index = torch.from_numpy(local(subgraph.n_id.numpy()))
            batch.subgraph = subgraph
        return batch

    def request(
        self,
        histories: Sequence[Sequence[int]],
        history_length: int,
        candidates: Sequence[Sequence[int]] | None = None,
        users: Sequence[int] | None = None,
    ) -> NewsBatch:
        """A batch for requests (serving): one impression per history (rows, oldest first; its
        last ``history_length`` count), with ``candidates`` (rows per request, padded) or none,
        and ``users`` (user-vocabulary indices, 0 = unknown; ``None``: all unknown).
        A history-only batch of a model that asks for transitions also carries
        ``transition_neighbors``: per request, the rows with a click transition to or from its
        ``m`` most recent clicks (:meth:`TransitionTable.neighbors`), and ``transition_silent``:
        the rows without any transition (:meth:`TransitionTable.silent`, for a fresh-aware term)."""
        B = len(histories)
        cuts = [np.asarray(h, np.int64)[len(h) - min(len(h), history_length) :] for h in histories]
        history = np.zeros((B, history_length), np.int64)
        history_mask = np.arange(history_length)[None, :] < np.asarray([len(h) for h in cuts], np.int64)[:, None]
        if B:
            history[history_mask] = np.concatenate(cuts)
        given = candidates if candidates is not None else [()] * B
        width = max([1, *(len(c) for c in given)])
        cands = np.zeros((B, width), np.int64)
        cand_mask = np.arange(width)[None, :] < np.asarray([len(c) for c in given], np.int64).reshape(B, 1)
        if B and cand_mask.any():
            cands[cand_mask] = np.concatenate([np.asarray(c, np.int64) for c in given])
        zeros = np.zeros(B, np.int64)
        history_users = None if users is None else np.asarray(users, np.int64)
        batch = self(
            history, history_mask, cands, cand_mask, np.zeros_like(cands), np.arange(B), zeros, zeros,
            history_users=history_users,
        )  # fmt: skip
        if candidates is None and self.requirements.transitions is not None:
            m = int(self.requirements.transitions)
            table = self.transition_table
            batch.extra["transition_neighbors"] = [
                torch.from_numpy(table.neighbors(h[-m:], silent=False).astype(np.int64)) for h in cuts
            ]
            batch.extra["transition_silent"] = torch.from_numpy(table.silent().astype(np.int64))
        return batch

    def news(self, rows: np.ndarray) -> dict[str, torch.Tensor]:
        """The features of news ``rows`` the model reads (:func:`news_features` of this builder's
        arrays and entity-neighbour table)."""
        return news_features(self.fields, tuple(self.fields), rows, self.entity_table)

    def _transitions(self, history, history_mask, candidates, user_index, users, history_lengths):
        from newsrec.graphs.transitions import recent_clicks

        m = int(self.requirements.transitions)
        recent, rmask = recent_clicks(history, history_mask, m)
        recent, rmask = recent[user_index], rmask[user_index]  # per impression
        cands = np.where(candidates >= 0, candidates, 0)
        subtract = None
        if self.future_edges is not None and users is not None:
            last = recent[:, 0]
            h, c = recent[:, None, :], cands[:, :, None]
            fwd = self.future_edges.counts(users, history_lengths, last, h, c)
            bwd = self.future_edges.counts(users, history_lengths, last, c, h)
            subtract = (fwd, bwd, self.future_edges.touching(users, history_lengths, last, cands))
        return self.transition_table.features(recent, rmask, cands, subtract), rmask


class TrainDataset(Dataset):
    """Training samples (1 clicked + K negatives, re-drawn each epoch); indexed by
    ``(epoch, sample indices)`` and returning whole batches."""

    def __init__(
        self,
        behaviors: Behaviors,
        samples: TrainingSamples,
        builder: BatchBuilder,
        history_length: int,
        user_vocabulary: Sequence[str] | None = None,
    ) -> None:
        self.behaviors, self.samples, self.builder, self.history_length = behaviors, samples, builder, history_length
        self.impression_users = _impression_users(behaviors, builder, user_vocabulary)
        self._epoch: int | None = None
        self._negatives: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: tuple[int, np.ndarray]) -> NewsBatch:
        epoch, idx = key
        if self._epoch != epoch:
            self._negatives, self._epoch = self.samples.negatives(epoch), epoch
        idx = np.asarray(idx, dtype=np.int64)
        rows = self.samples.rows[idx]
        hist, n = self.behaviors.histories(rows, self.history_length)
        hmask = np.arange(self.history_length)[None, :] < n[:, None]
        cands = np.concatenate([self.samples.positives[idx, None], self._negatives[idx]], axis=1)
        labels = np.zeros_like(cands)
        labels[:, 0] = 1
        return self.builder(
            hist,
            hmask,
            cands,
            np.ones(cands.shape, bool),
            labels,
            np.arange(len(idx)),
            self.behaviors.impression_ids[rows],
            rows,
            users=self.behaviors.users[rows],
            history_lengths=self.behaviors.history_lengths[rows],
            history_users=None if self.impression_users is None else self.impression_users[rows],
        )


class ImpressionDataset(Dataset):
    """Whole impressions (evaluation and prediction); indexed by arrays of rows."""

    def __init__(
        self,
        behaviors: Behaviors,
        builder: BatchBuilder,
        history_length: int,
        user_vocabulary: Sequence[str] | None = None,
    ) -> None:
        self.behaviors, self.builder, self.history_length = behaviors, builder, history_length
        self.impression_users = _impression_users(behaviors, builder, user_vocabulary)

    def __len__(self) -> int:
        return len(self.behaviors)

    def __getitem__(self, rows: np.ndarray) -> NewsBatch:
        rows = np.asarray(rows, dtype=np.int64)
        b = self.behaviors
        hist, n = b.histories(rows, self.history_length)
        hmask = np.arange(self.history_length)[None, :] < n[:, None]
        # deduplicate identical histories (of one user, for a model that reads user ids) in the batch
        users = None if self.impression_users is None else self.impression_users[rows]
        key = np.concatenate([hist, n[:, None]] + ([] if users is None else [users[:, None]]), axis=1)
        _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
        cands, labels, cmask = b.impressions(rows)
        return self.builder(
            hist[first], hmask[first], cands, cmask, labels, inverse.reshape(-1), b.impression_ids[rows], rows,
            history_users=None if users is None else users[first],
        )  # fmt: skip


def _impression_users(
    behaviors: Behaviors, builder: BatchBuilder, vocabulary: Sequence[str] | None
) -> np.ndarray | None:
    """Each impression's user-vocabulary index (``[I]``) when the builder's model reads user ids."""
    if not builder.requirements.user_ids:
        return None
    if vocabulary is None:
        raise ValueError("the model reads user ids: give the dataset the training split's user_ids as user_vocabulary")
    return behaviors.users_in(vocabulary)


#: entity-id news fields and the field of their entity-graph neighbours
ENTITY_NEIGHBOR_FIELDS = {"entities": "entity_neighbors", "title_entity_words": "title_entity_neighbors"}


def news_features(
    arrays: dict[str, np.ndarray], fields: Sequence[str], rows: np.ndarray, entity_table: np.ndarray | None = None
) -> dict[str, torch.Tensor]:
    """The features of news ``rows`` (``{field: [n, ...]}`` int64 tensors from ``arrays``), plus,
    when an entity-neighbour table ``[num_entities, M_e]`` is given, the neighbours of every
    entity field asked for (:data:`ENTITY_NEIGHBOR_FIELDS`: ``entity_neighbors [n, E, M_e]`` of
    ``entities``, ``title_entity_neighbors [n, L, M_e]`` of ``title_entity_words``)."""
    rows = np.asarray(rows, dtype=np.int64)
    news = {f: torch.from_numpy(np.asarray(arrays[f])[rows].astype(np.int64)) for f in fields}
    if entity_table is not None:
        present = [f for f in ENTITY_NEIGHBOR_FIELDS if f in fields]
        if not present:
            raise ValueError(f"entity neighbours need one of the news fields {tuple(ENTITY_NEIGHBOR_FIELDS)}")
        for f in present:
            news[ENTITY_NEIGHBOR_FIELDS[f]] = torch.from_numpy(entity_table[np.asarray(arrays[f])[rows]])
    return news


class NewsDataset(Dataset):
    """Chunks of the whole corpus (for encoding every news once per evaluation), from a
    :class:`NewsCorpus` or from news arrays ``{field: [N, ...]}`` (the corpus's plus the
    ``plm_*`` fields: :meth:`MINDDataModule.news_arrays`)."""

    def __init__(
        self,
        corpus: NewsCorpus | dict[str, np.ndarray],
        fields: Sequence[str],
        entity_table: np.ndarray | None = None,
    ) -> None:
        self.arrays = corpus if isinstance(corpus, dict) else corpus.arrays
        self.fields = tuple(fields)
        self.entity_table = entity_table
        self.num_news = len(next(iter(self.arrays.values())))

    def __len__(self) -> int:
        return self.num_news

    def __getitem__(self, rows: np.ndarray) -> dict:
        rows = np.asarray(rows, dtype=np.int64)
        return {
            "news": news_features(self.arrays, self.fields, rows, self.entity_table),
            "news_rows": torch.from_numpy(rows),
        }
