"""The user–news bipartite click graph of the training split, and its sampled neighbour tables
(GERL, GNewsRec). Vectorised numpy: no Python loop over users, news or clicks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch_geometric.data import HeteroData

from newsrec.graphs.news_graph import as_ragged

__all__ = ["BipartiteNeighbors", "bipartite_click_graph", "sample_bipartite_neighbors"]


def _clicks(sequences, users) -> tuple[np.ndarray, np.ndarray]:
    """``(user [E], news [E])`` of every click of the sequences (distinct pairs)."""
    values, offsets = as_ragged(sequences)
    owner = np.repeat(np.asarray(users, np.int64), np.diff(offsets))
    keep = values > 0
    pairs = np.unique(np.stack([owner[keep], values[keep].astype(np.int64)], 1), axis=0)
    return pairs[:, 0], pairs[:, 1]


def bipartite_click_graph(sequences, users, num_users: int, num_news: int) -> HeteroData:
    """The user–news click graph as a PyG :class:`~torch_geometric.data.HeteroData`: node types
    ``user`` (``num_users``) and ``news`` (``num_news``), edge types ``(user, clicks, news)`` and
    its reverse ``(news, clicked_by, user)``, one edge per distinct (user, news) click."""
    u, n = _clicks(sequences, users)
    data = HeteroData()
    data["user"].num_nodes, data["news"].num_nodes = int(num_users), int(num_news)
    data["user", "clicks", "news"].edge_index = torch.from_numpy(np.stack([u, n]))
    data["news", "clicked_by", "user"].edge_index = torch.from_numpy(np.stack([n, u]))
    return data


@dataclass
class BipartiteNeighbors:
    """Sampled neighbour tables of the click graph (0 = none):

    - ``news_clickers [num_news, M]``: users who clicked the news (one hop), as user-vocabulary
      ids (the training users' index + 1, as ``history_users``);
    - ``news_coclicked [num_news, M]``: news those users clicked (two hops), never the news itself.

    A user's two-hop neighbours (users who clicked the same news) are the clickers of the user's
    clicked news: ``news_clickers`` gathered over the history.
    """

    news_clickers: np.ndarray
    news_coclicked: np.ndarray


def _csr(owner: np.ndarray, other: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(owner, kind="stable")
    indptr = np.concatenate([[0], np.cumsum(np.bincount(owner, minlength=size))]).astype(np.int64)
    return indptr, other[order]


def sample_bipartite_neighbors(
    sequences, users, num_users: int, num_news: int, num_neighbors: int, seed: int = 0
) -> BipartiteNeighbors:
    """:class:`BipartiteNeighbors` with ``num_neighbors`` (``M``) per news, drawn at random once,
    reproducibly from ``seed`` (GERL samples neighbours at random): the clickers without
    replacement (all of them, padded, when fewer than ``M``), the co-clicked news by ``M`` random
    two-hop walks news → clicker → another click of that clicker."""
    rng = np.random.default_rng(seed)
    u, n = _clicks(sequences, users)
    M = int(num_neighbors)
    clickers = np.zeros((num_news, M), np.int64)
    coclicked = np.zeros((num_news, M), np.int64)
    if not len(u) or M == 0:
        return BipartiteNeighbors(clickers, coclicked)
    # one hop: a random permutation of each news' clickers, its first M kept
    order = np.lexsort((rng.random(len(u)), n))
    news_sorted, user_sorted = n[order], u[order]
    start = np.searchsorted(news_sorted, news_sorted, side="left")
    rank = np.arange(len(order)) - start
    keep = rank < M
    clickers[news_sorted[keep], rank[keep]] = user_sorted[keep] + 1
    # two hops: news -> a random clicker -> a random click of that clicker
    news_ptr, news_users = _csr(n, u, num_news)
    user_ptr, user_news = _csr(u, n, num_users)
    degree = np.diff(news_ptr)
    has = np.nonzero(degree)[0]
    walk_news = np.repeat(has, M)
    pick = news_ptr[walk_news] + (rng.random(len(walk_news)) * degree[walk_news]).astype(np.int64)
    walker = news_users[pick]
    user_degree = np.diff(user_ptr)[walker]
    other = user_news[user_ptr[walker] + (rng.random(len(walker)) * user_degree).astype(np.int64)]
    other = np.where(other == walk_news, 0, other)
    coclicked[has] = other.reshape(len(has), M)
    return BipartiteNeighbors(clickers, coclicked)
