"""Sparse look-ups into the global click graph: transition counts between a user's recent clicks
and candidate news, as features for a learned score term (GLORY's ``graph_score``) and for the
count baselines of :mod:`newsrec.baselines`.

Everything here is vectorised numpy: a table of ``(a, b) → value`` pairs is one sorted int64
key array (``a * num_nodes + b``) searched with :func:`numpy.searchsorted`, so a batch of
``R × C × m`` look-ups costs a few array operations.
"""

from __future__ import annotations

import warnings

import numpy as np

from newsrec.graphs.news_graph import as_ragged, consecutive_positions

__all__ = [
    "PairTable",
    "TransitionTable",
    "UserFutureEdges",
    "recent_clicks",
    "NUM_TRANSITION_FEATURES",
    "NUM_PAIR_FEATURES",
]

#: features per (candidate, recent click) pair, see :meth:`TransitionTable.features` (four of
#: the pair, then the candidate's exposure, the same at every recent click)
NUM_TRANSITION_FEATURES = 5
#: of which the pair's own (the first four)
NUM_PAIR_FEATURES = 4


class PairTable:
    """A sparse map ``(a, b) → value`` over node ids in ``[0, num_nodes)``; absent pairs are 0,
    and so are pairs with an id outside that range (news added after the table was built).

    Args:
        src, dst: int ``[E]`` pairs (repeats are summed).
        values: float ``[E]`` (ones when ``None``).
        num_nodes: size of the id space.
    """

    def __init__(self, src: np.ndarray, dst: np.ndarray, values: np.ndarray | None, num_nodes: int) -> None:
        self.num_nodes = int(num_nodes)
        src, dst = np.asarray(src, np.int64), np.asarray(dst, np.int64)
        vals = np.ones(len(src)) if values is None else np.asarray(values, np.float64)
        key = src * self.num_nodes + dst
        self.keys, inverse = np.unique(key, return_inverse=True)
        self.values = np.bincount(inverse.reshape(-1), weights=vals, minlength=len(self.keys))

    @classmethod
    def from_sorted(cls, keys: np.ndarray, values: np.ndarray, num_nodes: int) -> PairTable:
        """A table over ``keys`` (sorted, distinct ``a * num_nodes + b``) and their ``values``,
        taken as they are (no copy, no sort)."""
        table = cls.__new__(cls)
        table.num_nodes, table.keys, table.values = int(num_nodes), keys, values
        return table

    def __len__(self) -> int:
        return len(self.keys)

    def lookup(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """float64 array of ``a``'s broadcast shape with ``b``: the value of every pair (0 if absent)."""
        a, b = np.broadcast_arrays(np.asarray(a, np.int64), np.asarray(b, np.int64))
        key = (a * self.num_nodes + b).reshape(-1)
        if not len(self.keys):
            return np.zeros(a.shape)
        pos = np.minimum(np.searchsorted(self.keys, key), len(self.keys) - 1)
        inside = ((a >= 0) & (a < self.num_nodes) & (b >= 0) & (b < self.num_nodes)).reshape(-1)
        found = (self.keys[pos] == key) & inside
        return np.where(found, self.values[pos], 0.0).reshape(a.shape)


def recent_clicks(history: np.ndarray, history_mask: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``m`` most recent clicks of padded histories, most recent first.

    Args:
        history: int ``[R, L]`` (oldest first, padded at the end).
        history_mask: bool ``[R, L]``.
        m: how many clicks to keep.

    Returns:
        ``(clicks int64 [R, m], mask bool [R, m])``: ``clicks[r, j]`` is the ``j``-th most recent
        click (``j = 0`` the last one), 0 where ``mask`` is False.
    """
    n = history_mask.sum(1).astype(np.int64)
    j = np.arange(m, dtype=np.int64)[None, :]
    mask = j < n[:, None]
    pos = np.where(mask, n[:, None] - 1 - j, 0)
    width = history.shape[1]
    if width == 0:
        return np.zeros((len(history), m), np.int64), np.zeros((len(history), m), bool)
    clicks = np.take_along_axis(history, np.minimum(pos, width - 1), axis=1)
    return np.where(mask, clicks, 0).astype(np.int64), mask


class TransitionTable:
    r"""Directed click-transition counts of the global news graph (``dir_seq``, self-loops
    dropped) with each news' outgoing and incoming totals.

    For a recent click :math:`h` and a candidate :math:`c`, :meth:`features` gives

    .. math::
        \big[\log(1 + n_{h\to c}),\ n_{h\to c} / n_{h\to\cdot},\
             \log(1 + n_{c\to h}),\ n_{c\to h} / n_{\cdot\to h}\big]

    — how often readers went on from :math:`h` to :math:`c`, the share of :math:`h`'s onward
    clicks that went to :math:`c`, and the same for :math:`c` coming just before :math:`h` — and
    a fifth, the candidate's exposure in the graph, :math:`\log(1 + n_{\cdot\to c} + n_{c\to\cdot})`,
    which tells "seen, and no reader went from :math:`h` to it" (exposure > 0, pair features 0)
    from "the graph has never seen it" (a fresh article: everything 0).

    Args:
        sequences: training click sequences, one per user (any form :func:`as_ragged` takes).
        num_nodes: number of news.
    """

    def __init__(self, sequences, num_nodes: int) -> None:
        values, offsets = as_ragged(sequences)
        pos = consecutive_positions(offsets)
        src, dst = values[pos], values[pos + 1]
        keep = src != dst  # no self-loops
        src, dst = src[keep], dst[keep]
        self.num_nodes = int(num_nodes)
        self.counts = PairTable(src, dst, None, num_nodes)  # sums the repeated pairs
        self.out_total = np.bincount(src, minlength=num_nodes).astype(np.float64)
        self.in_total = np.bincount(dst, minlength=num_nodes).astype(np.float64)

    @classmethod
    def from_counts(
        cls, counts: PairTable, out_total: np.ndarray, in_total: np.ndarray, reverse_keys: np.ndarray | None = None
    ) -> TransitionTable:
        """A table over counts kept elsewhere (the live click graph of serving): ``counts`` the
        directed transitions without self-loops (its own key space may be larger than the news),
        ``out_total`` / ``in_total`` float ``[N]`` each news' totals, and optionally the sorted
        ``(dst, src)`` keys of the same pairs (else :meth:`neighbors` sorts them once)."""
        table = cls.__new__(cls)
        table.num_nodes, table.counts = len(out_total), counts
        table.out_total, table.in_total = out_total, in_total
        table._reverse_keys = reverse_keys
        return table

    @property
    def num_edges(self) -> int:
        return len(self.counts)

    def silent(self) -> np.ndarray:
        """Sorted news rows ``1..N-1`` without any transition (fresh, or never clicked after or
        before another news): the graph knows nothing of them (computed once per table)."""
        if getattr(self, "_silent", None) is None:
            degree = self.in_total + self.out_total
            self._silent = np.flatnonzero(degree[1:] == 0).astype(np.int64) + 1
        return self._silent

    def neighbors(self, nodes: np.ndarray, silent: bool = False) -> np.ndarray:
        """Sorted distinct news with a transition to or from any of ``nodes`` (ids outside the
        table have none) and, with ``silent=True``, the news without any transition (:meth:`silent`):
        the only candidates whose graph-score term can differ from that of a seen news without an
        edge to ``nodes`` (the pair features are all zero elsewhere, and a fresh-aware scorer
        gives unseen news its own term)."""
        extra = self.silent() if silent else np.zeros(0, np.int64)
        nodes = np.unique(np.asarray(nodes, np.int64))
        nodes = nodes[(nodes >= 0) & (nodes < self.num_nodes)]
        if not len(nodes) or not len(self.counts):
            return extra.copy()
        n = self.counts.num_nodes  # the key space (a from_counts table's may exceed the news)
        if getattr(self, "_reverse_keys", None) is None:  # (dst, src) keys, sorted, built once
            keys = self.counts.keys
            self._reverse_keys = np.sort((keys % n) * n + keys // n)
        out = []
        for keys in (self.counts.keys, self._reverse_keys):
            lo, hi = np.searchsorted(keys, nodes * n), np.searchsorted(keys, (nodes + 1) * n)
            take = np.repeat(lo - np.cumsum(np.r_[0, (hi - lo)[:-1]]), hi - lo) + np.arange(int((hi - lo).sum()))
            out.append(keys[take] % n)
        return np.unique(np.concatenate([*out, extra]))

    def neighbours(self, nodes: np.ndarray) -> np.ndarray:
        """Deprecated spelling of :meth:`neighbors` (removed in the next release)."""
        warnings.warn("TransitionTable.neighbours is deprecated: use neighbors", DeprecationWarning, stacklevel=2)
        return self.neighbors(nodes)

    def features(
        self,
        recent: np.ndarray,
        recent_mask: np.ndarray,
        candidates: np.ndarray,
        subtract: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> np.ndarray:
        """Transition features of every (candidate, recent click) pair.

        Args:
            recent: int ``[R, m]`` recent clicks per row (most recent first, see
                :func:`recent_clicks`).
            recent_mask: bool ``[R, m]``.
            candidates: int ``[R, C]``.
            subtract: optional ``(forward [R, C, m], backward [R, C, m])`` counts to take off the
                global counts first (a training sample's own future clicks, see
                :class:`UserFutureEdges`), and optionally a third, ``[R, C]``: the row user's own
                future transitions into or out of each candidate (:meth:`UserFutureEdges.touching`),
                taken off the candidate's exposure.

        Returns:
            float32 ``[R, C, m, 5]`` (the class docstring's features): the four pair features, 0
            at masked clicks, and the candidate's exposure (the same at every position, masked or
            not). With a three-part ``subtract``, the exposure leaves out the row user's own future
            transitions into and out of the candidate, so that training reads the exposure the
            candidate had without the sample's own answer.
        """
        h = recent[:, None, :]  # [R, 1, m]
        c = candidates[:, :, None]  # [R, C, 1]
        fwd = self.counts.lookup(h, c)  # [R, C, m]  h -> c
        bwd = self.counts.lookup(c, h)  # c -> h
        known = np.minimum(h, self.num_nodes - 1)  # news added after the build have no clicks
        out_h = np.broadcast_to(np.where(h < self.num_nodes, self.out_total[known], 0.0), fwd.shape)
        in_h = np.broadcast_to(np.where(h < self.num_nodes, self.in_total[known], 0.0), fwd.shape)
        cand = np.minimum(candidates, self.num_nodes - 1)
        degree = np.where(candidates < self.num_nodes, self.in_total[cand] + self.out_total[cand], 0.0)  # [R, C]
        if subtract is not None:
            fwd = np.maximum(fwd - subtract[0], 0.0)
            bwd = np.maximum(bwd - subtract[1], 0.0)
            out_h = np.maximum(out_h - subtract[0], 0.0)
            in_h = np.maximum(in_h - subtract[1], 0.0)
            if len(subtract) > 2:
                degree = np.maximum(degree - subtract[2], 0.0)
        feats = np.stack(
            [
                np.log1p(fwd),
                np.divide(fwd, out_h, out=np.zeros_like(fwd), where=out_h > 0),
                np.log1p(bwd),
                np.divide(bwd, in_h, out=np.zeros_like(bwd), where=in_h > 0),
            ],
            axis=-1,
        )
        feats *= recent_mask[:, None, :, None]
        exposure = np.broadcast_to(np.log1p(degree)[:, :, None, None], (*fwd.shape, 1))
        return np.concatenate([feats, exposure], axis=-1).astype(np.float32)


class UserFutureEdges:
    """Each user's own click transitions, by position, so that a training sample's features can
    leave out the clicks its user made *after* the sample's history (they are in the global graph
    because the graph is built from the users' longest histories, which include later training
    clicks: counted in, they would tell the model the answer).

    For a sample of user ``u`` whose history is the first ``n`` clicks of ``u``'s graph sequence,
    the future transitions are ``seq[k] → seq[k + 1]`` for ``k ≥ n − 1`` (the first of them leads
    from the last history click to the next click, often the sample's clicked candidate). A sample
    whose history is not such a prefix (its last click differs from ``seq[n − 1]``) has none.

    Args:
        sequences: the same per-user sequences the :class:`TransitionTable` was built from
            (sequence ``i`` = user ``i``).
        num_nodes: number of news.
    """

    def __init__(self, sequences, num_nodes: int) -> None:
        values, offsets = as_ragged(sequences)
        self.values, self.offsets, self.num_nodes = values, offsets, int(num_nodes)
        if (len(offsets) - 1) * float(num_nodes) ** 2 >= 2.0**63:
            raise ValueError(
                f"{len(offsets) - 1} users × {num_nodes}² news pairs overflow int64 keys: "
                "build the table from fewer users"
            )
        lengths = np.diff(offsets)
        owner = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
        pos = consecutive_positions(offsets)
        self.k = (pos - offsets[owner[pos]]).astype(np.int64)  # position of each edge in its sequence
        self.user = owner[pos]
        self.src, self.dst = values[pos], values[pos + 1]
        # sort by (user, src, dst, k) so that a (user, src, dst) group is contiguous and ordered by k
        order = np.lexsort((self.k, self.dst, self.src, self.user))
        self.user, self.src, self.dst, self.k = self.user[order], self.src[order], self.dst[order], self.k[order]
        self.group = (self.user * self.num_nodes + self.src) * self.num_nodes + self.dst
        # (user, news) keys of every edge's source and destination, each ordered by k inside a key
        self._ends = []
        for end in (self.src, self.dst):
            key = self.user * self.num_nodes + end
            o = np.lexsort((self.k, key))
            self._ends.append((key[o], self.k[o]))

    def counts(
        self, users: np.ndarray, history_lengths: np.ndarray, last_clicks: np.ndarray, a: np.ndarray, b: np.ndarray
    ) -> np.ndarray:
        """Future-transition counts ``a → b`` of each row's user.

        Args:
            users: int ``[R]`` user (sequence) index of each row.
            history_lengths: int ``[R]`` the row's full history length ``n``.
            last_clicks: int ``[R]`` the row's last history click (checks the prefix assumption).
            a, b: int arrays of shape ``[R, ...]`` (broadcast together).

        Returns:
            float64 of the broadcast shape: how many of the row user's transitions at positions
            ``k ≥ n − 1`` go from ``a`` to ``b``.
        """
        a, b = np.broadcast_arrays(np.asarray(a, np.int64), np.asarray(b, np.int64))
        shape = a.shape
        users = np.asarray(users, np.int64)
        n = np.asarray(history_lengths, np.int64)
        seq_len = np.diff(self.offsets)[users]
        prefix = (n >= 1) & (n <= seq_len)
        if len(self.values):
            at = np.minimum(self.offsets[users] + np.maximum(n - 1, 0), len(self.values) - 1)
            prefix &= self.values[at] == np.asarray(last_clicks, np.int64)
        if not len(self.group) or not prefix.any():
            return np.zeros(shape)
        u = np.broadcast_to(users.reshape((-1,) + (1,) * (a.ndim - 1)), shape)
        start = np.broadcast_to((n - 1).reshape((-1,) + (1,) * (a.ndim - 1)), shape)
        ok = np.broadcast_to(prefix.reshape((-1,) + (1,) * (a.ndim - 1)), shape)
        key = ((u * self.num_nodes + a) * self.num_nodes + b).reshape(-1)
        out = _count_from(self.group, self.k, key, start.reshape(-1))
        return np.where(ok.reshape(-1), out, 0.0).reshape(shape)

    def touching(
        self, users: np.ndarray, history_lengths: np.ndarray, last_clicks: np.ndarray, news: np.ndarray
    ) -> np.ndarray:
        """The row user's future transitions (positions ``k ≥ n − 1``, as :meth:`counts`) into or
        out of each of ``news`` (int ``[R, ...]``): float64 of ``news``'s shape, a self-loop
        counted twice (as it counts in both the in- and out-totals of a
        :class:`TransitionTable`)."""
        news = np.asarray(news, np.int64)
        shape = news.shape
        users = np.asarray(users, np.int64)
        n = np.asarray(history_lengths, np.int64)
        prefix = (n >= 1) & (n <= np.diff(self.offsets)[users])
        if len(self.values):
            at = np.minimum(self.offsets[users] + np.maximum(n - 1, 0), len(self.values) - 1)
            prefix &= self.values[at] == np.asarray(last_clicks, np.int64)
        if not len(self.group) or not prefix.any():
            return np.zeros(shape)
        lead = (-1,) + (1,) * (news.ndim - 1)
        key = (np.broadcast_to(users.reshape(lead), shape) * self.num_nodes + news).reshape(-1)
        start = np.broadcast_to((n - 1).reshape(lead), shape).reshape(-1)
        out = sum(_count_from(keys, ks, key, start) for keys, ks in self._ends)
        return np.where(np.broadcast_to(prefix.reshape(lead), shape).reshape(-1), out, 0.0).reshape(shape)


def _count_from(keys: np.ndarray, ks: np.ndarray, query: np.ndarray, start: np.ndarray) -> np.ndarray:
    """For each ``query`` key, how many entries of ``keys`` (sorted; ``ks`` sorted inside each
    key) equal it with ``ks >= start`` (float64, vectorised bisection)."""
    lo = np.searchsorted(keys, query, side="left")
    hi = np.searchsorted(keys, query, side="right")
    out = np.zeros(query.shape)
    idx = np.flatnonzero(hi > lo)
    if len(idx):
        left, right, target = lo[idx].copy(), hi[idx].copy(), start[idx]
        while True:
            active = left < right
            if not active.any():
                break
            mid = (left + right) // 2
            go_right = active & (ks[np.minimum(mid, len(ks) - 1)] < target)
            left = np.where(go_right, mid + 1, left)
            right = np.where(active & ~go_right, mid, right)
        out[idx] = hi[idx] - left
    return out


def transition_tables(
    values: np.ndarray, offsets: np.ndarray, users: np.ndarray, num_users: int, num_nodes: int
) -> tuple[TransitionTable, UserFutureEdges]:
    """The training click transitions (:class:`TransitionTable`) and each training user's own
    transitions by position (:class:`UserFutureEdges`, indexed by user), from the users' click
    sequences (``values``/``offsets`` ragged, ``users`` the user of each sequence; users
    without a sequence get an empty one)."""
    table = TransitionTable((values, offsets), num_nodes)
    lengths = np.zeros(num_users, np.int64)
    lengths[users] = np.diff(offsets)
    full = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return table, UserFutureEdges((values, full), num_nodes)
