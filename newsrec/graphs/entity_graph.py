"""GLORY's global entity graph."""

from __future__ import annotations

import numpy as np
import torch
from torch_geometric.data import Data

from newsrec.graphs.news_graph import aggregate_edges, as_ragged, build_news_graph

__all__ = ["ENTITY_GRAPH_METHODS", "build_entity_graph"]

ENTITY_GRAPH_METHODS = ("inter_news", "intra_news")


def _cross(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every entity of ``a[i]`` paired with every entity of ``b[i]`` (rows ``[n, E]``)."""
    E1, E2 = a.shape[1], b.shape[1]
    src = np.repeat(a, E2, axis=1).reshape(-1)
    dst = np.tile(b, (1, E1)).reshape(-1)
    ww = np.repeat(w, E1 * E2)
    keep = (src > 0) & (dst > 0)
    return src[keep], dst[keep], ww[keep]


def _sum_by_key(keys: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    uniq, inverse = np.unique(keys, return_inverse=True)
    return uniq, np.bincount(inverse.reshape(-1), weights=weights, minlength=len(uniq))


def build_entity_graph(
    sequences,
    news_entities,
    num_entities: int,
    method: str = "inter_news",
    *,
    self_loops: bool = True,
    chunk_pairs: int = 1 << 24,
) -> Data:
    """Build the global entity graph (undirected, weighted) from users' click sequences.

    Args:
        sequences: one click sequence per user, as for :func:`build_news_graph`.
        news_entities: int ``[num_news, E]`` entity ids of every news (0 = padding), e.g.
            ``NewsCorpus.entities``.
        num_entities: number of entity ids (nodes), id 0 being padding (never a node with edges).
        method: ``"inter_news"`` (GLORY: every entity of a clicked news is connected to every
            entity of the next clicked news) or ``"intra_news"`` (entities that occur together in
            one clicked news).
        self_loops: keep ``e — e`` edges (an entity shared by consecutive news); GLORY keeps them.
        chunk_pairs: entity pairs aggregated at a time (bounds peak memory on large graphs).

    Returns:
        ``Data(edge_index [2, E], edge_weight [E], num_nodes=num_entities)``; the weight of
        {e1, e2} counts its occurrences in either direction and is stored on both directions.
    """
    if method not in ENTITY_GRAPH_METHODS:
        raise ValueError(f"method must be one of {ENTITY_GRAPH_METHODS}, got {method!r}")
    ents = np.asarray(news_entities.cpu() if isinstance(news_entities, torch.Tensor) else news_entities, dtype=np.int64)
    if ents.ndim != 2:
        raise ValueError("news_entities must be a [num_news, E] matrix")
    if ents.size and (ents.min() < 0 or ents.max() >= num_entities):
        raise ValueError(f"entity ids must lie in [0, {num_entities})")
    if method == "inter_news":
        news = build_news_graph(sequences, len(ents), "dir_seq", self_loops=True)
        src_news, dst_news = news.edge_index.numpy()
        weights = news.edge_weight.double().numpy()
        # E² entity pairs per news edge: aggregate chunk by chunk to bound memory
        width = max(ents.shape[1], 1) ** 2
        step = max(1, chunk_pairs // width)
        # partial results are merged whenever they outgrow a few chunks, so memory stays
        # bounded by the number of distinct entity pairs
        keys = np.zeros(0, np.int64)
        sums = np.zeros(0, np.float64)
        pending: list[tuple[np.ndarray, np.ndarray]] = []
        pending_size = 0
        for start in range(0, len(src_news), step):
            sl = slice(start, start + step)
            s_, d_, w_ = _cross(ents[src_news[sl]], ents[dst_news[sl]], weights[sl])
            if not self_loops:
                keep = s_ != d_
                s_, d_, w_ = s_[keep], d_[keep], w_[keep]
            k = np.minimum(s_, d_) * num_entities + np.maximum(s_, d_)
            pending.append(_sum_by_key(k, w_))
            pending_size += len(pending[-1][0])
            if pending_size > 4 * chunk_pairs:
                keys, sums = _sum_by_key(
                    np.concatenate([keys] + [p[0] for p in pending]), np.concatenate([sums] + [p[1] for p in pending])
                )
                pending, pending_size = [], 0
        keys, sums = _sum_by_key(
            np.concatenate([keys] + [p[0] for p in pending]), np.concatenate([sums] + [p[1] for p in pending])
        )
        src, dst, w = keys // num_entities, keys % num_entities, sums
    else:
        values, _ = as_ragged(sequences)
        clicked, counts = np.unique(values, return_counts=True)
        if len(clicked) and (clicked.min() < 0 or clicked.max() >= len(ents)):
            raise ValueError(f"news ids must lie in [0, {len(ents)})")
        e = ents[clicked]
        i, j = np.triu_indices(ents.shape[1], k=1)  # each unordered pair of entity slots once
        src, dst = e[:, i].reshape(-1), e[:, j].reshape(-1)
        w = np.repeat(counts.astype(np.float64), len(i))
        keep = (src > 0) & (dst > 0)
        src, dst, w = src[keep], dst[keep], w[keep]
    edge_index, weight = aggregate_edges(src, dst, num_entities, w, undirected=True, self_loops=self_loops)
    return Data(
        edge_index=torch.from_numpy(edge_index).long(),
        edge_weight=torch.from_numpy(weight).float(),
        num_nodes=num_entities,
    )
