"""Neighbour tables and samplers over the global graphs (vectorised numpy, CPU, no pyg-lib)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Batch, Data

__all__ = ["NeighborTable", "KHopSampler", "EntityNeighborSampler"]


def _to_numpy(t) -> np.ndarray:
    return t.cpu().numpy() if isinstance(t, Tensor) else np.asarray(t)


@dataclass
class NeighborTable:
    """Each node's neighbours sorted by edge weight (descending), ties by node id (ascending).

    ``direction="in"``: the neighbours of ``v`` are the sources of edges ``u → v`` (for the news
    graph: the news clicked just before ``v``; GLORY's choice). ``"out"``: the targets of
    ``v → u``. Stored as CSR (``indptr [N+1]``, ``indices [E]``, ``weights [E]``), built once in
    O(E log E).
    """

    indptr: np.ndarray
    indices: np.ndarray
    weights: np.ndarray
    num_nodes: int
    direction: str

    @classmethod
    def from_graph(cls, graph: Data, direction: str = "in") -> NeighborTable:
        if direction not in ("in", "out"):
            raise ValueError(f"direction must be 'in' or 'out', got {direction!r}")
        src, dst = _to_numpy(graph.edge_index).astype(np.int64)
        w = (
            _to_numpy(graph.edge_weight).astype(np.float64)
            if getattr(graph, "edge_weight", None) is not None
            else np.ones(len(src))
        )
        owner, nbr = (dst, src) if direction == "in" else (src, dst)
        order = np.lexsort((nbr, -w, owner))
        n = int(graph.num_nodes)
        counts = np.bincount(owner, minlength=n)
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return cls(indptr, nbr[order], w[order], n, direction)

    def degree(self) -> np.ndarray:
        return np.diff(self.indptr)

    def top(self, k: int, pad: int = -1) -> tuple[np.ndarray, np.ndarray]:
        """Dense ``[N, k]`` tables of every node's top-``k`` neighbours and their weights
        (``pad`` / 0 where a node has fewer)."""
        deg = self.degree()
        pos = np.arange(k)[None, :]
        valid = pos < deg[:, None]
        idx = np.where(valid, self.indptr[:-1, None] + pos, 0)
        nbr = np.where(valid, self.indices[idx] if len(self.indices) else pad, pad)
        w = np.where(valid, self.weights[idx] if len(self.weights) else 0.0, 0.0)
        return nbr.astype(np.int64), w


class KHopSampler:
    """GLORY's k-hop neighbourhood sampler over the global news graph.

    For each user, the frontier starts at the (deduplicated) history; at each of ``num_hops``
    hops every frontier node contributes its top-``num_neighbors`` neighbours by edge weight
    (ties by id) — or, with ``weighted_random=True``, ``num_neighbors`` neighbours drawn without
    replacement with probability proportional to weight — and the nodes not yet seen form the
    next frontier. The user's subgraph is the subgraph of the global graph induced by all the
    nodes reached (every graph edge between two of them, with its weight).

    Call it on one user's history (a 1-D tensor) for a :class:`~torch_geometric.data.Data`, or
    use :meth:`sample` on a batch for one :class:`~torch_geometric.data.Batch` of disjoint
    per-user subgraphs. All work is vectorised over the batch (no Python loop over users or
    edges) and runs on CPU tensors, inside DataLoader workers.

    Args:
        graph: the global news graph (``edge_index``, ``edge_weight``, ``num_nodes``).
        num_neighbors: M_n (8 in GLORY).
        num_hops: K_n (2 in GLORY).
        direction: which neighbours a node gathers: ``"in"`` (GLORY: the news clicked just
            before it) or ``"out"`` (the news clicked just after it); see :class:`NeighborTable`.
            The subgraph's edges always point from neighbour to node, so that message passing
            brings each node the news it sampled: with ``"in"`` they are the click edges
            ``u → v``, with ``"out"`` the click edges reversed.
        edges: ``"induced"`` (the paper: every graph edge between two reached nodes) or
            ``"sampled"`` (only edges on a reached node's top-M list: the same edges except those
            from a last-hop node to a neighbour outside its top-M; cheaper on dense graphs).
        weighted_random: sample neighbours at random (weighted, without replacement).
        seed: seed of the random sampler.
    """

    def __init__(
        self,
        graph: Data,
        num_neighbors: int = 8,
        num_hops: int = 2,
        *,
        direction: str = "in",
        edges: str = "induced",
        weighted_random: bool = False,
        seed: int = 0,
    ) -> None:
        if num_neighbors < 0 or num_hops < 0:
            raise ValueError("num_neighbors and num_hops must be non-negative")
        if edges not in ("induced", "sampled"):
            raise ValueError(f"edges must be 'induced' or 'sampled', got {edges!r}")
        if edges == "sampled" and weighted_random:
            raise ValueError("edges='sampled' goes with top-M sampling (weighted_random=False)")
        table = NeighborTable.from_graph(graph, direction)
        # the in-CSR of the graph (by target), to cut induced subgraphs
        by_target = table if direction == "in" else NeighborTable.from_graph(graph, "in")
        self._setup(table, by_target, table.top(num_neighbors), num_neighbors, num_hops, edges, weighted_random, seed)

    def _setup(self, table, by_target, top, num_neighbors, num_hops, edges, weighted_random, seed) -> None:
        self.edges = edges
        self.num_nodes = int(table.num_nodes)
        self.num_neighbors, self.num_hops = num_neighbors, num_hops
        self.weighted_random = weighted_random
        self.rng = np.random.default_rng(seed)
        self.table, self.by_target = table, by_target
        self.top_neighbors, self.top_weights = top
        self._scratch: np.ndarray | None = None

    @classmethod
    def from_tables(
        cls,
        table: NeighborTable,
        by_target: NeighborTable,
        top: tuple[np.ndarray, np.ndarray],
        num_neighbors: int = 8,
        num_hops: int = 2,
        *,
        edges: str = "induced",
        weighted_random: bool = False,
        seed: int = 0,
    ) -> KHopSampler:
        """A sampler over tables built elsewhere (the live click graph of serving,
        :mod:`newsrec.serving.live`): ``table`` (neighbours along the sampling direction, any
        order within a node), ``by_target`` (the in-CSR) and ``top`` = ``(neighbors [N, M],
        weights [N, M])``, each node's top-``M`` by weight, ties by id, ``-1`` padded."""
        sampler = cls.__new__(cls)
        sampler._setup(table, by_target, top, num_neighbors, num_hops, edges, weighted_random, seed)
        return sampler

    # -- expansion --------------------------------------------------------------------------------
    def _neighbors(self, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Neighbours of ``nodes``: (row in ``nodes``, neighbour id) pairs."""
        M = self.num_neighbors
        if not self.weighted_random:
            nbr = self.top_neighbors[nodes]
            rows = np.repeat(np.arange(len(nodes)), M)
            flat = nbr.reshape(-1)
            keep = flat >= 0
            return rows[keep], flat[keep]
        t = self.table
        deg = t.degree()[nodes]
        rows = np.repeat(np.arange(len(nodes)), deg)
        start = np.repeat(t.indptr[nodes], deg)
        within = np.arange(len(rows)) - np.repeat(np.cumsum(deg) - deg, deg)
        ids = t.indices[start + within]
        keys = np.log(np.maximum(t.weights[start + within], 1e-300)) + self.rng.gumbel(size=len(rows))
        order = np.lexsort((-keys, rows))
        rank = np.arange(len(rows)) - np.repeat(np.cumsum(deg) - deg, deg)
        keep = rank < M
        return rows[order][keep], ids[order][keep]

    def sample(self, histories, mask: Tensor | np.ndarray | None = None) -> Batch:
        """Sample the subgraphs of a batch of users.

        Args:
            histories: padded ``[B, L]`` news ids with ``mask`` (True = real click), or a list of
                1-D tensors (one history per user).
            mask: bool ``[B, L]`` for padded input (``None`` = every entry is real).

        Returns:
            a :class:`~torch_geometric.data.Batch` of ``B`` disjoint subgraphs with ``n_id``
            (global news ids; each user's nodes start with its distinct history news in order of
            first click, then the hop-1 nodes, then hop-2, …), local ``edge_index``,
            ``edge_weight``, ``batch``, ``ptr`` and ``history_position`` — ``[B, L]`` long, the
            position in ``n_id`` of every history entry (``-1`` for padding).
        """
        if isinstance(histories, (list, tuple)):
            seqs = [_to_numpy(h).reshape(-1).astype(np.int64) for h in histories]
            L = max((len(s) for s in seqs), default=0)
            hist = np.zeros((len(seqs), L), np.int64)
            real = np.zeros((len(seqs), L), bool)
            for i, s in enumerate(seqs):
                hist[i, : len(s)], real[i, : len(s)] = s, True
        else:
            hist = _to_numpy(histories).astype(np.int64)
            real = np.ones(hist.shape, bool) if mask is None else _to_numpy(mask).astype(bool)
        if hist.ndim != 2:
            raise ValueError("histories must be [B, L] (with a mask) or a list of 1-D tensors")
        B, L = hist.shape
        if real.any() and (hist[real].min() < 0 or hist[real].max() >= self.num_nodes):
            raise ValueError(f"history news ids must lie in [0, {self.num_nodes})")
        N = self.num_nodes
        # hop 0: the distinct history news of each user, in order of first click
        b_idx, pos = np.nonzero(real)
        keys = b_idx * N + hist[b_idx, pos]
        uniq, first = np.unique(keys, return_index=True)
        seeds = uniq[np.argsort(first, kind="stable")]
        levels = [seeds]
        # a reusable dense (user, node) table: -1 = unseen, >= 0 = reached, < -1 = candidate
        mark = self._lookup(B)
        mark[seeds] = 0
        frontier = seeds
        try:
            for hop in range(1, self.num_hops + 1):
                if not len(frontier) or self.num_neighbors == 0:
                    break
                rows, nbr = self._neighbors(frontier % N)
                cand = (frontier[rows] // N) * N + nbr
                cand = cand[mark[cand] == -1]
                slot = -2 - np.arange(len(cand), dtype=np.int32)
                mark[cand] = slot
                new = np.sort(cand[mark[cand] == slot])  # one representative per key
                if not len(new):
                    break
                mark[new] = hop
                levels.append(new)
                frontier = new
        finally:
            for lv in levels:
                mark[lv] = -1
        # order: by user, then level, then (seeds: first click; others: id)
        all_keys = np.concatenate(levels)
        level = np.concatenate([np.full(len(lv), i) for i, lv in enumerate(levels)])
        rank = np.concatenate([np.arange(len(levels[0]))] + [lv for lv in levels[1:]])
        order = np.lexsort((rank, level, all_keys // N))
        node_keys = all_keys[order]
        user = node_keys // N
        n_id = node_keys % N
        counts = np.bincount(user, minlength=B)
        ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        # induced edges: for every node v, its in-neighbours u (edges u -> v) kept when u is in
        # v's set; a dense (user, node) -> local position table makes each test one gather
        lookup = self._lookup(B)
        lookup[node_keys] = np.arange(len(node_keys))
        try:
            src_local, tgt_local, edge_weight = self._induced_edges(n_id, user, lookup)
            history_position = np.full((B, L), -1, np.int64)
            history_position[b_idx, pos] = lookup[b_idx * N + hist[b_idx, pos]]
        finally:
            lookup[node_keys] = -1
        edge_index = np.stack([src_local, tgt_local])
        edge_user = user[edge_index[1]] if edge_index.shape[1] else np.zeros(0, np.int64)
        edge_ptr = np.concatenate([[0], np.cumsum(np.bincount(edge_user, minlength=B))]).astype(np.int64)
        return _make_batch(n_id, user, ptr, edge_index, edge_weight, edge_ptr, history_position)

    def _lookup(self, batch_size: int) -> np.ndarray:
        """A reusable ``[batch_size * N]`` table of -1 (entries are reset after each use)."""
        size = batch_size * self.num_nodes
        if self._scratch is None or len(self._scratch) < size:
            self._scratch = np.full(size, -1, np.int32)
        return self._scratch

    def _induced_edges(self, n_id: np.ndarray, user: np.ndarray, lookup: np.ndarray):
        if self.edges == "sampled":
            return self._sampled_edges(n_id, user, lookup)
        t = self.by_target
        deg = t.degree()[n_id]
        total = int(deg.sum())
        if total == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
        tgt = np.repeat(np.arange(len(n_id)), deg)
        entry = np.repeat(t.indptr[n_id] - (np.cumsum(deg) - deg), deg) + np.arange(total)
        src = lookup[user[tgt] * self.num_nodes + t.indices[entry]]
        found = src >= 0
        # grouped by target (hence by user), each target's sources by decreasing weight
        src, tgt, w = src[found].astype(np.int64), tgt[found], t.weights[entry[found]]
        if self.table.direction == "out":  # messages flow from the news clicked after a node
            order = np.argsort(src, kind="stable")
            src, tgt, w = tgt[order], src[order], w[order]
        return src, tgt, w

    def _sampled_edges(self, n_id: np.ndarray, user: np.ndarray, lookup: np.ndarray):
        """Edges between reached nodes that lie on a top-M neighbour list (one dense gather)."""
        nbr = self.top_neighbors[n_id]  # [T, M], -1 = none
        other = lookup[np.maximum(user[:, None] * self.num_nodes + nbr, 0)]
        other[nbr < 0] = -1
        me, col = np.nonzero(other >= 0)
        w = self.top_weights[n_id[me], col]
        other = other[me, col].astype(np.int64)
        return other, me, w  # neighbour -> node, grouped by target (either direction)

    def __call__(self, seeds: Tensor) -> Data:
        """One user's subgraph: ``Data(n_id, edge_index, edge_weight, num_nodes, history_position)``
        with ``history_position [L]`` the position of each seed in ``n_id``."""
        seeds = torch.as_tensor(seeds).reshape(-1)
        batch = self.sample([seeds])
        data = batch.get_example(0)
        data.history_position = batch.history_position[0]
        return data


def _make_batch(n_id, user, ptr, edge_index, edge_weight, edge_ptr, history_position) -> Batch:
    B = len(ptr) - 1
    batch = Batch(
        n_id=torch.from_numpy(n_id).long(),
        edge_index=torch.from_numpy(np.ascontiguousarray(edge_index)).long().reshape(2, -1),
        edge_weight=torch.from_numpy(np.asarray(edge_weight, np.float32)).reshape(-1),
        batch=torch.from_numpy(user).long(),
        ptr=torch.from_numpy(ptr),
        history_position=torch.from_numpy(history_position),
    )
    batch.num_nodes = int(len(n_id))
    ptr_t, eptr_t = torch.from_numpy(ptr), torch.from_numpy(edge_ptr)
    batch._num_graphs = B
    batch._slice_dict = {
        "n_id": ptr_t,
        "edge_index": eptr_t,
        "edge_weight": eptr_t,
        "history_position": torch.arange(B + 1),
    }
    batch._inc_dict = {
        "n_id": torch.zeros(B, dtype=torch.long),
        "edge_index": ptr_t[:-1],
        "edge_weight": torch.zeros(B, dtype=torch.long),
        "history_position": torch.zeros(B, dtype=torch.long),
    }  # batch-global positions
    return batch


class EntityNeighborSampler:
    """The top-``num_neighbors`` neighbours (by weight, ties by id) of every entity in the
    global entity graph — GLORY's global-aware candidate entities (K_e = 1 hop, M_e = 10).

    Args:
        graph: the entity graph (``edge_index``, ``edge_weight``, ``num_nodes``).
        num_neighbors: M_e.
        exclude_self: drop an entity from its own neighbour list (a self-loop).

    Call with entity ids ``[..., E]`` (0 = padding) → ``(neighbors [..., E, M], mask [..., E, M])``
    (padding id 0 where an entity has fewer neighbours or is itself padding).
    """

    def __init__(self, graph: Data, num_neighbors: int = 10, *, exclude_self: bool = False) -> None:
        self.num_neighbors = num_neighbors
        g = graph
        if exclude_self:
            ei = _to_numpy(g.edge_index)
            keep = ei[0] != ei[1]
            g = Data(
                edge_index=torch.as_tensor(ei[:, keep]),
                edge_weight=torch.as_tensor(_to_numpy(g.edge_weight)[keep]),
                num_nodes=g.num_nodes,
            )
        table = NeighborTable.from_graph(g, "out")
        nbr, _ = table.top(num_neighbors, pad=0)
        nbr[0] = 0  # padding has no neighbours
        self.table = torch.from_numpy(nbr)

    def __call__(self, entities: Tensor) -> tuple[Tensor, Tensor]:
        entities = torch.as_tensor(entities).long()
        if entities.numel() and (entities.min() < 0 or entities.max() >= len(self.table)):
            raise ValueError(f"entity ids must lie in [0, {len(self.table)})")
        nbr = self.table[entities]
        return nbr, nbr != 0
