"""GLORY's global news graph: click transitions of all users."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch
from torch_geometric.data import Data

__all__ = ["NEWS_GRAPH_METHODS", "as_ragged", "build_news_graph", "aggregate_edges", "consecutive_positions"]

NEWS_GRAPH_METHODS = ("dir_seq", "undir_seq", "co_occurrence")


def as_ragged(sequences) -> tuple[np.ndarray, np.ndarray]:
    """Normalise click sequences to ``(values int64, offsets int64)``.

    Accepts a ``(values, offsets)`` pair, a pyarrow list array, or any iterable of integer
    sequences (lists, numpy arrays, 1-D tensors).
    """
    if isinstance(sequences, tuple) and len(sequences) == 2 and not isinstance(sequences[0], (int, np.integer)):
        values, offsets = (np.asarray(a, dtype=np.int64) for a in sequences)
        if offsets.ndim == 1 and len(offsets) >= 1 and offsets[0] == 0 and offsets[-1] == len(values):
            return values, offsets
    if isinstance(sequences, (pa.ListArray, pa.LargeListArray, pa.ChunkedArray)):
        if isinstance(sequences, pa.ChunkedArray):
            sequences = sequences.combine_chunks()
        values = np.asarray(sequences.flatten().to_numpy(zero_copy_only=False), dtype=np.int64)
        lengths = np.asarray(sequences.value_lengths().fill_null(0).to_numpy(zero_copy_only=False), dtype=np.int64)
        return values, np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    seqs = [np.asarray(s.cpu() if isinstance(s, torch.Tensor) else s, dtype=np.int64).reshape(-1) for s in sequences]
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    values = np.concatenate(seqs) if seqs else np.zeros(0, np.int64)
    return values, np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)


def aggregate_edges(
    src: np.ndarray,
    dst: np.ndarray,
    num_nodes: int,
    weight: np.ndarray | None = None,
    *,
    undirected: bool = False,
    self_loops: bool = True,
    symmetric: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Sum the weights of repeated ``src → dst`` pairs.

    With ``undirected=True`` the weight of the pair {u, v} is the sum over both directions and
    is stored on both ``u → v`` and ``v → u`` (a self-loop once); with ``symmetric=False`` only
    as ``min → max`` (to merge partial results). Returns ``(edge_index [2, E], edge_weight [E])``
    sorted by (source, target).
    """
    src, dst = np.asarray(src, np.int64), np.asarray(dst, np.int64)
    w = np.ones(len(src), np.float64) if weight is None else np.asarray(weight, np.float64)
    if not self_loops:
        keep = src != dst
        src, dst, w = src[keep], dst[keep], w[keep]
    if undirected:
        lo, hi = np.minimum(src, dst), np.maximum(src, dst)
        src, dst = lo, hi
    key = src * num_nodes + dst
    uniq, inverse = np.unique(key, return_inverse=True)
    weights = np.bincount(inverse.reshape(-1), weights=w, minlength=len(uniq))
    s, d = uniq // num_nodes, uniq % num_nodes
    if undirected and symmetric:
        off = s != d
        s, d, weights = (
            np.concatenate([s, d[off]]),
            np.concatenate([d, s[off]]),
            np.concatenate([weights, weights[off]]),
        )
        order = np.lexsort((d, s))
        s, d, weights = s[order], d[order], weights[order]
    return np.stack([s, d]), weights


def consecutive_positions(offsets: np.ndarray) -> np.ndarray:
    """int64 positions ``k`` of the flat click array such that ``values[k]`` and ``values[k + 1]``
    are consecutive clicks of one sequence (every position but each sequence's last)."""
    offsets = np.asarray(offsets, np.int64)
    last = np.zeros(int(offsets[-1]) if len(offsets) else 0, dtype=bool)
    last[offsets[1:][np.diff(offsets) > 0] - 1] = True
    return np.flatnonzero(~last)


def _pairs_within(values: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All ordered pairs of distinct positions within each sequence (Σ n² work)."""
    lengths = np.diff(offsets)
    owner = np.repeat(np.arange(len(lengths)), lengths)
    reps = lengths[owner]  # each element pairs with every element of its sequence
    left = np.repeat(np.arange(len(values)), reps)
    start = np.repeat(offsets[:-1][owner], reps)
    within = np.arange(len(left)) - np.repeat(np.cumsum(reps) - reps, reps)
    right = start + within
    keep = left != right
    return values[left[keep]], values[right[keep]]


def build_news_graph(sequences, num_nodes: int, method: str = "dir_seq", *, self_loops: bool = True) -> Data:
    """Build the global news graph from users' click sequences (oldest click first).

    Args:
        sequences: one click sequence per user: an iterable of integer sequences, a pyarrow list
            array, or a ``(values, offsets)`` pair (e.g. :meth:`Behaviors.user_sequences`). Feed
            training histories only (never dev/test candidates), one per user.
        num_nodes: number of news (node ids must lie in ``[0, num_nodes)``).
        method: ``"dir_seq"`` (GLORY's default: each consecutive pair ``a, b`` adds ``a → b``),
            ``"undir_seq"`` (the same pairs, undirected), or ``"co_occurrence"`` (every pair of
            news in one sequence, undirected: a complete graph over each history, Σ n² pairs).
        self_loops: keep edges ``a → a`` (a news clicked twice in a row); GLORY keeps them.

    Returns:
        ``Data(edge_index [2, E] long, edge_weight [E] float, num_nodes)``: row 0 is the earlier
        click, row 1 the next; the weight counts occurrences over all users; edges sorted by
        (source, target).
    """
    if method not in NEWS_GRAPH_METHODS:
        raise ValueError(f"method must be one of {NEWS_GRAPH_METHODS}, got {method!r}")
    values, offsets = as_ragged(sequences)
    if len(values) and (values.min() < 0 or values.max() >= num_nodes):
        bad = values[(values < 0) | (values >= num_nodes)][0]
        raise ValueError(f"node id {bad} is outside [0, {num_nodes})")
    if method == "co_occurrence":
        src, dst = _pairs_within(values, offsets)
        edge_index, weight = aggregate_edges(src, dst, num_nodes, undirected=True, self_loops=self_loops)
    else:
        pos = consecutive_positions(offsets)
        edge_index, weight = aggregate_edges(
            values[pos], values[pos + 1], num_nodes, undirected=method == "undir_seq", self_loops=self_loops
        )
    return Data(
        edge_index=torch.from_numpy(edge_index).long(),
        edge_weight=torch.from_numpy(weight).float(),
        num_nodes=num_nodes,
    )
