"""The live click graph of serving: the training click graph plus every click the service has
taken, updated incrementally.

A reader's consecutive clicks ``a, b`` (in time order) are a *transition* ``a → b``. The
training data's transitions (each training user's longest history, as the graphs are built for
training) and the served clicks' transitions make one weighted multiset, and everything the
model reads from the click graph is derived from it:

* GLORY's global **news graph** (``dir_seq`` or ``undir_seq``, self-loops as built): its
  top-``M`` neighbour tables and the in-neighbour lists that GLORY's k-hop sampler cuts each
  user's subgraph from (:meth:`KHopSampler.from_tables <newsrec.graphs.KHopSampler.from_tables>`);
* the **transition counts** behind GLORY's candidate-aware graph score and the transition
  baseline (:meth:`TransitionTable.from_counts <newsrec.graphs.TransitionTable.from_counts>`);
* GLORY's global **entity graph** (``inter_news``): every entity of ``a`` linked to every entity
  of ``b``, and its top-``M_e`` neighbour table (which changes the candidate-side vectors of the
  news that carry a changed entity: :attr:`LiveSnapshot.changed_entities`).

Each structure is a sorted array of ``a << 32 | b`` keys with float64 weights, merged with a
batch's transitions in O(E) (a search and an insert, no re-sort), and each top-``M`` table is
recomputed only for the nodes a batch touched. A batch gives a new immutable
:class:`LiveSnapshot`; readers keep the one they started with.

**Decay.** With ``half_life`` set, a transition made at time ``t`` weighs in proportion to
``2^{-(now - t) / half_life}`` (training transitions are dated at the end of the training
data), and the weights are scaled so that they sum to the number of transitions: ageing moves
weight from old transitions to new ones but never shrinks the graph, so the model reads counts
on the scale it was trained on (a graph that only shrank, weights ``2^{-(now - t)/h}`` as they
are, cost GLORY up to 2.7 AUC points overall in ``benchmarks/live_graph.py``). Weights are stored
as ``2^{(t - t_0) / h}`` and the whole graph is scaled once per snapshot, so that ageing costs
nothing per edge. ``now`` is the latest transition's time, but never later than the ``horizon``
:meth:`LiveGraph.add` is given (serving: the server's clock plus a tolerance): a transition dated
after it counts as made at the horizon, so one click dated in the future (a skewed clock, a bad
client) can never age every other transition to nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from newsrec.core.requirements import DataRequirements
from newsrec.graphs.news_graph import consecutive_positions
from newsrec.graphs.sampling import KHopSampler, NeighborTable
from newsrec.graphs.transitions import PairTable, TransitionTable

__all__ = ["LiveGraph", "LiveSnapshot", "PairWeights"]

SHIFT = 32
LOW = (1 << SHIFT) - 1
#: the key space of the live pair tables: ``a << 32 | b`` for node ids below 2**31
KEY_SPACE = 1 << SHIFT


def _keys(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (np.asarray(a, np.int64) << SHIFT) | np.asarray(b, np.int64)


def _ranked(row: np.ndarray, other: np.ndarray, w: np.ndarray, owners: int, m: int, pad: int):
    """``(neighbors [owners, m], weights)`` from pairs ``(row, other, w)``: each row's ``m``
    heaviest, ties by id (as :meth:`NeighborTable.top <newsrec.graphs.NeighborTable.top>`)."""
    order = np.lexsort((other, -w, row))
    row, other, w = row[order], other[order], w[order]
    rank = np.arange(len(row)) - np.searchsorted(row, row)
    keep = rank < m
    nbr = np.full((owners, m), pad, np.int64)
    weights = np.zeros((owners, m))
    nbr[row[keep], rank[keep]] = other[keep]
    weights[row[keep], rank[keep]] = w[keep]
    return nbr, weights


@dataclass(frozen=True)
class PairWeights:
    """A weighted set of pairs ``(a, b)``: sorted distinct int64 ``keys`` (``a << 32 | b``) and
    float64 ``weights`` ``[E]``. Never changed in place: :meth:`add` returns a new one."""

    keys: np.ndarray
    weights: np.ndarray

    @classmethod
    def empty(cls) -> PairWeights:
        return cls(np.zeros(0, np.int64), np.zeros(0, np.float64))

    def __len__(self) -> int:
        return len(self.keys)

    def add(self, a: np.ndarray, b: np.ndarray, w: np.ndarray) -> PairWeights:
        """The pairs with ``w`` added to ``(a[i], b[i])`` (repeats summed; a negative ``w`` takes a
        pair's weight back, and a pair whose weight falls to zero leaves the set). O(E + n log n)."""
        if not len(a):
            return self
        k, inverse = np.unique(_keys(a, b), return_inverse=True)
        dw = np.bincount(inverse.reshape(-1), weights=np.asarray(w, np.float64), minlength=len(k))
        pos = np.searchsorted(self.keys, k)
        hit = pos < len(self.keys)
        hit[hit] = self.keys[pos[hit]] == k[hit]
        weights = self.weights.copy()
        at = pos[hit]
        weights[at] += dw[hit]
        gone = at[weights[at] <= 1e-9 * np.abs(dw[hit])]  # taken back entirely (a late click's old link)
        new = ~hit & (dw > 0)
        keys = np.insert(self.keys, pos[new], k[new])
        weights = np.insert(weights, pos[new], dw[new])
        if len(gone):
            gone = gone + np.searchsorted(pos[new], gone, side="right")  # shifted by the inserts before them
            keys, weights = np.delete(keys, gone), np.delete(weights, gone)
        return PairWeights(keys, weights)

    def rows(self, owners: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every pair of the sorted distinct ``owners`` (as ``a``): ``(position in owners, b, weight)``."""
        owners = np.asarray(owners, np.int64)
        lo = np.searchsorted(self.keys, owners << SHIFT)
        hi = np.searchsorted(self.keys, (owners + 1) << SHIFT)
        n = hi - lo
        idx = np.repeat(lo - (np.cumsum(n) - n), n) + np.arange(int(n.sum()))
        return np.repeat(np.arange(len(owners)), n), self.keys[idx] & LOW, self.weights[idx]

    def top(self, owners: np.ndarray, m: int, pad: int) -> tuple[np.ndarray, np.ndarray]:
        """``(neighbors [len(owners), m], weights)``: each owner's ``m`` heaviest pairs (ties by
        id, as :meth:`NeighborTable.top <newsrec.graphs.NeighborTable.top>`), ``pad`` / 0 beyond."""
        row, other, w = self.rows(owners)
        return _ranked(row, other, w, len(owners), m, pad)

    def top_after_increase(
        self, owners: np.ndarray, old: np.ndarray, touched: np.ndarray, m: int, pad: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`top` of the sorted distinct ``owners`` when the only change since ``old``
        (their previous top-``m`` ids, ``pad`` where none) is that the pairs ``touched`` (keys)
        gained weight: a pair outside the old top that was not touched cannot enter it, so only
        the old top and the touched pairs are ranked (O(owners × m + touched), not the owners'
        whole rows)."""
        valid = old != pad
        mine = np.repeat(owners, m).reshape(old.shape)[valid]
        keys = np.unique(np.concatenate([(mine << SHIFT) | old[valid], touched]))
        w = self.weights[np.searchsorted(self.keys, keys)]
        row, other = np.searchsorted(owners, keys >> SHIFT), keys & LOW
        return _ranked(row, other, w, len(owners), m, pad)

    def csr(self, num_nodes: int, direction: str, scale: float = 1.0) -> NeighborTable:
        """The pairs as a :class:`~newsrec.graphs.NeighborTable` (owner ``a``; within a node by id)."""
        indptr = np.searchsorted(self.keys, np.arange(num_nodes + 1, dtype=np.int64) << SHIFT).astype(np.int64)
        weights = self.weights * scale if scale != 1.0 else self.weights
        return NeighborTable(indptr, self.keys & LOW, weights, num_nodes, direction)


@dataclass(frozen=True)
class LiveSnapshot:
    """One consistent state of the live graph, what a request reads.

    Attributes:
        khop_sampler: GLORY's sampler over the live news graph (``None``: the model has none).
        transition_table: the live transition counts (decayed when a half-life is set).
        entity_table: ``[num_entities, M_e]`` live entity neighbours (``None``: no entity graph).
        changed_entities: the entities whose neighbour row differs from the previous snapshot's.
        num_transitions: distinct directed transitions ``a → b`` (``a ≠ b``) with weight.
        now: the time the weights are aged to (seconds since the epoch).
    """

    khop_sampler: KHopSampler | None
    transition_table: TransitionTable
    entity_table: np.ndarray | None
    changed_entities: np.ndarray
    num_transitions: int
    now: float


class LiveGraph:
    """The training click graph plus served transitions (module docstring).

    Args:
        requirements: the model's data requirements: which graphs it reads
            (``news_graph`` + ``news_graph_sampling``, ``entity_neighbors`` + ``entity_graph``).
        sequences: the training click sequences ``(values, offsets)`` the training graphs were
            built from (:meth:`Behaviors.user_sequences <newsrec.data.behaviors.Behaviors.user_sequences>`).
        num_news: news rows (the index's, padding row included).
        news_entities: int ``[num_news, E]`` entity ids of every row (0 = none), for the entity graph.
        num_entities: entity ids (row 0 padding).
        half_life: seconds for an edge's weight to halve; ``None``: no decay.
        start_time: when the training transitions were made (the end of the training data).
    """

    def __init__(
        self,
        requirements: DataRequirements,
        sequences: tuple[np.ndarray, np.ndarray],
        num_news: int,
        *,
        news_entities: np.ndarray | None = None,
        num_entities: int = 0,
        half_life: float | None = None,
        start_time: float = 0.0,
    ) -> None:
        build, sampling = requirements.news_graph, requirements.news_graph_sampling
        if build is not None and build.method not in ("dir_seq", "undir_seq"):
            raise ValueError(
                f"the live graph follows 'dir_seq' and 'undir_seq' news graphs, not {build.method!r}: "
                "serve without a click store, or train with news_graph.method dir_seq"
            )
        entity_method = (requirements.entity_graph or {}).get("method", "inter_news")
        self.entities = requirements.entity_neighbors is not None
        if self.entities and entity_method != "inter_news":
            raise ValueError(f"the live graph follows the 'inter_news' entity graph, not {entity_method!r}")
        if self.entities and news_entities is None:
            raise ValueError("an entity graph needs news_entities")
        if half_life is not None and not (half_life > 0 and math.isfinite(half_life)):
            raise ValueError(f"half_life must be a positive number of seconds, got {half_life!r}")
        self.build, self.sampling = build, sampling
        self.entity_self_loops = (requirements.entity_graph or {}).get("self_loops", True)
        self.m_e = requirements.entity_neighbors
        self.half_life, self.t0, self.now = half_life, float(start_time), float(start_time)
        self.num_news = int(num_news)
        self.news_entities = None if news_entities is None else np.asarray(news_entities, np.int64)
        self.num_entities = int(num_entities)
        values, offsets = (np.asarray(x, np.int64) for x in sequences)
        pos = consecutive_positions(offsets)
        self.trans = self.trans_in = self.fwd = self.rev = self.ent = PairWeights.empty()
        self.count = self.mass = 0.0  # transitions a -> b (a != b) and their stored weight
        self.out_total = np.zeros(self.num_news)
        self.in_total = np.zeros(self.num_news)
        self.top = self.ent_top = None
        self._update(values[pos], values[pos + 1], np.ones(len(pos)), everything=True)

    # -- the update -----------------------------------------------------------------------------------
    def weights_at(self, times: np.ndarray) -> np.ndarray:
        """The stored weight of one transition made at each of ``times`` (1 without decay)."""
        times = np.asarray(times, np.float64)
        if self.half_life is None:
            return np.ones(len(times))
        return np.exp2((times - self.t0) / self.half_life)

    def add(
        self,
        src: np.ndarray,
        dst: np.ndarray,
        times: np.ndarray,
        sign: np.ndarray | None = None,
        horizon: float | None = None,
    ) -> LiveSnapshot:
        """Add transitions ``src[i] → dst[i]`` made at ``times[i]`` (``sign`` −1 takes one back:
        a late click splits an old link) and return the new snapshot. A time after ``horizon``
        (seconds since the epoch; ``None``: none) counts as ``horizon``."""
        src, dst = np.asarray(src, np.int64), np.asarray(dst, np.int64)
        times = np.asarray(times, np.float64)
        if horizon is not None:
            times = np.minimum(times, float(horizon))
        if len(src) and (min(src.min(), dst.min()) < 1 or max(src.max(), dst.max()) >= self.num_news):
            raise ValueError(f"transition rows must lie in [1, {self.num_news})")
        if len(times):
            self.now = max(self.now, float(times.max()))
            if self.half_life is not None and (self.now - self.t0) / self.half_life > 512:
                self._rebase()
        sign = np.ones(len(src)) if sign is None else np.asarray(sign, np.float64)
        return self._update(src, dst, self.weights_at(times) * sign, counts=sign)

    def grow(self, num_news: int, news_entities: np.ndarray | None = None) -> LiveSnapshot:
        """The graph over ``num_news`` rows (fresh articles are nodes without edges)."""
        extra = int(num_news) - self.num_news
        if extra < 0:
            raise ValueError("the live graph never shrinks")
        if news_entities is not None:
            self.news_entities = np.asarray(news_entities, np.int64)
        if extra:
            self.num_news = int(num_news)
            self.out_total = np.concatenate([self.out_total, np.zeros(extra)])
            self.in_total = np.concatenate([self.in_total, np.zeros(extra)])
            if self.top is not None:
                m = self.top[0].shape[1]
                self.top = (
                    np.concatenate([self.top[0], np.full((extra, m), -1)]),
                    np.concatenate([self.top[1], np.zeros((extra, m))]),
                )
        return self._update(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))

    def _update(
        self, a: np.ndarray, b: np.ndarray, w: np.ndarray, everything: bool = False, counts: np.ndarray | None = None
    ) -> LiveSnapshot:
        loop = a == b
        self.count += float((w if counts is None else counts)[~loop].sum())
        self.mass += float(w[~loop].sum())
        self.trans = self.trans.add(a[~loop], b[~loop], w[~loop])
        self.trans_in = self.trans_in.add(b[~loop], a[~loop], w[~loop])  # the same pairs by target
        self.out_total = self.out_total.copy()
        self.in_total = self.in_total.copy()
        np.add.at(self.out_total, a[~loop], w[~loop])
        np.add.at(self.in_total, b[~loop], w[~loop])
        if self.build is not None:
            keep = np.ones(len(a), bool) if self.build.self_loops else ~loop
            s, d, ww = a[keep], b[keep], w[keep]
            if self.build.method == "undir_seq":
                two = s != d
                s, d, ww = np.concatenate([s, d[two]]), np.concatenate([d, s[two]]), np.concatenate([ww, ww[two]])
            self.fwd, self.rev = self.fwd.add(s, d, ww), self.rev.add(d, s, ww)
            by_in = self.sampling.direction == "in"
            owner, other = (d, s) if by_in else (s, d)
            owners = np.arange(self.num_news) if everything else np.unique(owner)
            table, m = (self.rev if by_in else self.fwd), self.sampling.num_neighbors
            if everything or self.top is None or (ww < 0).any():  # a weight fell: whole rows
                nbr, weights = table.top(owners, m, pad=-1)
            else:
                nbr, weights = table.top_after_increase(owners, self.top[0][owners], _keys(owner, other), m, -1)
            if self.top is None:
                self.top = (nbr, weights)
            elif len(owners):
                self.top = (self.top[0].copy(), self.top[1].copy())
                self.top[0][owners], self.top[1][owners] = nbr, weights
        changed = np.zeros(0, np.int64)
        if self.entities:
            changed = self._update_entities(a, b, w, everything)
        return self.snapshot(changed)

    def _update_entities(self, a, b, w, everything: bool) -> np.ndarray:
        ents = self.news_entities
        width = ents.shape[1]
        e1 = np.repeat(ents[a], width, axis=1).reshape(-1)
        e2 = np.tile(ents[b], (1, width)).reshape(-1)
        ww = np.repeat(w, width * width)
        keep = (e1 > 0) & (e2 > 0) & ((e1 != e2) | self.entity_self_loops)
        e1, e2, ww = e1[keep], e2[keep], ww[keep]
        two = e1 != e2
        s, d = np.concatenate([e1, e2[two]]), np.concatenate([e2, e1[two]])
        self.ent = self.ent.add(s, d, np.concatenate([ww, ww[two]]))
        owners = np.arange(self.num_entities) if everything else np.unique(s)
        if everything or self.ent_top is None or (ww < 0).any():  # a weight fell: whole rows
            nbr, _ = self.ent.top(owners, self.m_e, pad=0)
        else:
            nbr, _ = self.ent.top_after_increase(owners, self.ent_top[owners], _keys(s, d), self.m_e, 0)
        if self.ent_top is None:
            nbr[0] = 0  # padding has no neighbours
            self.ent_top = nbr
            return np.zeros(0, np.int64)
        owners, nbr = owners[owners > 0], nbr[owners > 0]
        differs = (self.ent_top[owners] != nbr).any(axis=1)
        if differs.any():
            self.ent_top = self.ent_top.copy()
            self.ent_top[owners[differs]] = nbr[differs]
        return owners[differs]

    def _rebase(self) -> None:
        """Move the weights' reference time to ``now`` (before ``2^{(t - t_0)/h}`` overflows)."""
        factor = math.exp2(-(self.now - self.t0) / self.half_life)
        self.t0 = self.now
        for name in ("trans", "trans_in", "fwd", "rev", "ent"):
            pw = getattr(self, name)
            setattr(self, name, PairWeights(pw.keys, pw.weights * factor))
        self.out_total, self.in_total = self.out_total * factor, self.in_total * factor
        self.mass *= factor
        if self.top is not None:
            self.top = (self.top[0], self.top[1] * factor)

    # -- reading ---------------------------------------------------------------------------------------
    @property
    def scale(self) -> float:
        """What the stored weights are multiplied by: 1 without decay; with it, the number of
        transitions over their stored weight (the aged weights sum to the count)."""
        if self.half_life is None or self.mass <= 0:
            return 1.0
        return self.count / self.mass

    def snapshot(self, changed_entities: np.ndarray | None = None) -> LiveSnapshot:
        """The current state as an immutable :class:`LiveSnapshot`."""
        scale = self.scale
        sampler = None
        if self.build is not None:
            s = self.sampling
            by_target = self.rev.csr(self.num_news, "in", scale)
            table = by_target if s.direction == "in" else self.fwd.csr(self.num_news, "out", scale)
            top = (self.top[0], self.top[1] * scale)
            sampler = KHopSampler.from_tables(table, by_target, top, s.num_neighbors, s.num_hops, edges=s.edges)
        counts = PairTable.from_sorted(self.trans.keys, self.trans.weights * scale, KEY_SPACE)
        transitions = TransitionTable.from_counts(
            counts, self.out_total * scale, self.in_total * scale, reverse_keys=self.trans_in.keys
        )
        return LiveSnapshot(
            sampler,
            transitions,
            self.ent_top,
            np.zeros(0, np.int64) if changed_entities is None else changed_entities,
            len(self.trans),
            self.now,
        )

    def neighbors(self, row: int, k: int, direction: str = "out") -> tuple[np.ndarray, np.ndarray]:
        """A news' ``k`` heaviest live transitions (``"out"``: the news read next; ``"in"``: the
        news read before), ``(rows, weights)``, heaviest first (aged weights with decay)."""
        if direction not in ("out", "in"):
            raise ValueError(f"direction must be 'out' or 'in', got {direction!r}")
        nbr, w = (self.trans if direction == "out" else self.trans_in).top(np.asarray([row]), k, pad=-1)
        keep = nbr[0] >= 0
        return nbr[0][keep], w[0][keep] * self.scale
