"""Non-neural reference points: popularity (and recency-weighted popularity), the click graph's
own counts (``transition`` and ``item_knn``) and the synthetic world's oracle. Any graph model is
judged against the count baselines: simple neighbourhood methods are known to beat neural
sequence models in session-based recommendation."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from newsrec.data.behaviors import Behaviors
from newsrec.graphs.news_graph import as_ragged
from newsrec.graphs.transitions import PairTable, TransitionTable, recent_clicks
from newsrec.metrics import BEYOND_ACCURACY_NAMES, BeyondAccuracyMetrics, ImpressionMetrics

__all__ = [
    "popularity_scores",
    "recency_popularity_scores",
    "first_seen_times",
    "transition_scores",
    "item_knn_scores",
    "evaluate_scores",
    "read_oracle",
    "ItemKNN",
]


def popularity_scores(train: Behaviors, num_news: int) -> np.ndarray:
    """Click counts of every news in the training impressions and histories (+1 smoothing,
    log-scaled), a float64 ``[num_news]`` array."""
    return np.log1p(train.click_counts(num_news).astype(np.float64))


def first_seen_times(splits: list[Behaviors], num_news: int) -> np.ndarray:
    """float64 ``[num_news]``: the earliest impression time (seconds) at which each news was
    shown in any of ``splits`` (``inf`` if never): the publish time where the data has none
    (MIND has no publish time; an article cannot be shown before it is published)."""
    first = np.full(num_news, np.inf)
    for b in splits:
        if len(b.candidates):
            when = np.repeat(b.times.astype(np.float64), b.num_candidates)
            np.minimum.at(first, b.candidates, when)
    return first


def recency_popularity_scores(
    train: Behaviors,
    behaviors: Behaviors,
    num_news: int,
    *,
    half_life_hours: float = 24.0,
    prior: float = 1.0,
    publish_times: np.ndarray | None = None,
) -> list[np.ndarray]:
    r"""Recency-weighted popularity: a candidate's training clicks, each weighing less the older
    it is, plus a prior for a newly published article that fades with its age,

    .. math::
        s(c, t) = \log\Big(1 + 2^{-(t - T)/h} \sum_{\text{clicks } \tau \text{ of } c} 2^{-(T - \tau)/h}
                   + \text{prior} \cdot 2^{-(t - p_c)/h}\Big)

    with :math:`t` the impression's time, :math:`T` the end of the training clicks (the counts
    frozen there, as a frozen graph), :math:`\tau` a training impression click's time,
    :math:`h` the half-life and :math:`p_c` the news' publish time: ``publish_times`` where the
    data has them (EB-NeRD, Adressa), else the first time it was shown
    (:func:`first_seen_times` over ``train`` and ``behaviors``; MIND has no publish time). A fresh
    article (no training click) thus ranks by its age from its first second, and a stale one
    fades. History clicks carry no time and are not counted. One score array per impression of
    ``behaviors`` (file order).
    """
    if half_life_hours <= 0 or prior < 0:
        raise ValueError(f"half_life_hours must be > 0 and prior >= 0, got {half_life_hours}, {prior}")
    h = 3600.0 * half_life_hours
    clicked = train.labels == 1
    when = np.repeat(train.times.astype(np.float64), train.num_candidates)[clicked]
    end = float(when.max()) if len(when) else 0.0
    decayed = np.bincount(train.candidates[clicked], weights=np.exp2(-(end - when) / h), minlength=num_news)
    if publish_times is None:
        publish_times = first_seen_times([train, behaviors], num_news)
    publish = np.asarray(publish_times, np.float64)
    if publish.shape != (num_news,):
        raise ValueError(f"publish_times must have one entry per news ({num_news}), got shape {publish.shape}")
    t = np.repeat(behaviors.times.astype(np.float64), behaviors.num_candidates)
    c = behaviors.candidates
    age = np.maximum(t - np.where(np.isfinite(publish[c]), publish[c], -np.inf), 0.0)  # unknown: no prior
    flat = np.log1p(decayed[c] * np.exp2(-(t - end) / h) + prior * np.exp2(-age / h))
    return np.split(flat, behaviors.candidate_offsets[1:-1]) if len(behaviors) else []


def _tie_break(train: Behaviors, num_news: int) -> np.ndarray:
    """Popularity scaled into ``[0, 1e-6)``: breaks ties (candidates without any edge) only."""
    pop = popularity_scores(train, num_news)
    return 1e-6 * pop / (pop.max() + 1.0)


def _score_recent(
    behaviors: Behaviors,
    pair_score,
    recent: int,
    decay: float,
    tie_break: np.ndarray,
    chunk: int = 4096,
) -> list[np.ndarray]:
    """``Σ_j decay^j · pair_score(h_j, c)`` over each impression's ``recent`` last clicks
    ``h_0`` (the last), ``h_1``, …; per impression, candidates in file order."""
    weights = decay ** np.arange(recent, dtype=np.float64)
    out: list[np.ndarray] = []
    for start in range(0, len(behaviors), chunk):
        rows = np.arange(start, min(start + chunk, len(behaviors)))
        hist, n = behaviors.histories(rows, recent)
        hmask = np.arange(recent)[None, :] < n[:, None]
        clicks, cmask = recent_clicks(hist, hmask, recent)
        cands, _, mask = behaviors.impressions(rows)
        s = pair_score(clicks[:, None, :], cands[:, :, None])  # [R, C, m]
        s = (s * (cmask * weights)[:, None, :]).sum(-1) + tie_break[cands]
        out.extend(row[m] for row, m in zip(s, mask))
    return out


def transition_scores(
    train: Behaviors, behaviors: Behaviors, num_news: int, *, recent: int = 10, decay: float = 0.7
) -> list[np.ndarray]:
    r"""The click graph's own transition baseline: for a candidate :math:`c` and the user's
    last clicks :math:`h_0` (most recent), :math:`h_1`, …,

    .. math::
        s(c) = \sum_{j < \text{recent}} \text{decay}^j \, \frac{n_{h_j \to c}}{n_{h_j \to \cdot}}

    with :math:`n_{a \to b}` the number of times any training user clicked ``b`` right after
    ``a`` (GLORY's ``dir_seq`` graph without self-loops). Ties (no edge at all) are broken by
    popularity. Returns one score array per impression of ``behaviors`` (file order).
    """
    table = TransitionTable(train.user_sequences(), num_news)

    def prob(h: np.ndarray, c: np.ndarray) -> np.ndarray:
        count = table.counts.lookup(h, c)
        total = np.broadcast_to(table.out_total[h], count.shape)
        return np.divide(count, total, out=np.zeros_like(count), where=total > 0)

    return _score_recent(behaviors, prob, recent, decay, _tie_break(train, num_news))


class ItemKNN:
    r"""Item-to-item co-click similarity, as the item-kNN baseline of session-based
    recommendation: two news are similar when the same users click them close together,

    .. math::
        \operatorname{sim}(a, b) = \frac{\operatorname{co}(a, b)}{\sqrt{n_a\, n_b}}

    with :math:`\operatorname{co}(a, b)` the number of times ``a`` and ``b`` were clicked within
    ``window`` positions of each other in one user's sequence (either order) and :math:`n_a` the
    number of clicks on ``a``.

    Args:
        sequences: training click sequences, one per user.
        num_nodes: number of news.
        window: largest position gap that counts as "close" (5).
    """

    def __init__(self, sequences, num_nodes: int, window: int = 5) -> None:
        values, offsets = as_ragged(sequences)
        lengths = np.diff(offsets)
        owner = np.repeat(np.arange(len(lengths)), lengths)
        end = offsets[1:][owner]  # one past each element's sequence end
        src, dst = [], []
        for d in range(1, window + 1):
            p = np.flatnonzero(np.arange(len(values)) + d < end)
            a, b = values[p], values[p + d]
            keep = a != b
            src += [a[keep], b[keep]]
            dst += [b[keep], a[keep]]
        src = np.concatenate(src) if src else np.zeros(0, np.int64)
        dst = np.concatenate(dst) if dst else np.zeros(0, np.int64)
        table = PairTable(src, dst, None, num_nodes)
        occ = np.bincount(values, minlength=num_nodes).astype(np.float64)
        a, b = table.keys // num_nodes, table.keys % num_nodes
        table.values = table.values / np.sqrt(occ[a] * occ[b])
        self.table = table

    def similarity(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """float64 of the broadcast shape: ``sim(a, b)`` (0 for news never clicked close together)."""
        return self.table.lookup(a, b)


def item_knn_scores(
    train: Behaviors, behaviors: Behaviors, num_news: int, *, recent: int = 10, decay: float = 0.7, window: int = 5
) -> list[np.ndarray]:
    """Item-kNN baseline: ``Σ_j decay^j · sim(h_j, c)`` over the user's ``recent`` last clicks
    (:class:`ItemKNN`); ties broken by popularity. One score array per impression."""
    knn = ItemKNN(train.user_sequences(), num_news, window)
    return _score_recent(behaviors, knn.similarity, recent, decay, _tie_break(train, num_news))


def evaluate_scores(
    behaviors: Behaviors,
    scores: list[np.ndarray] | np.ndarray,
    beyond: BeyondAccuracyMetrics | None = None,
    history_length: int = 50,
) -> dict[str, float]:
    """Impression metrics of per-candidate scores: either a per-news score array (looked up by
    candidate) or a list of per-impression score arrays in file order. With ``beyond`` (a
    :class:`BeyondAccuracyMetrics` over corpus rows) the beyond-accuracy values of the top-k
    lists are added (``ild@k``, …; histories cut to the last ``history_length`` clicks, as the
    models see them)."""
    if isinstance(scores, np.ndarray):
        flat = scores[behaviors.candidates]
    else:
        flat = np.concatenate(scores) if len(scores) else np.zeros(0)
    index = np.repeat(np.arange(len(behaviors)), behaviors.num_candidates)
    m = ImpressionMetrics()
    m.update(
        torch.from_numpy(flat.astype(np.float64)),
        torch.from_numpy(behaviors.labels.astype(np.int64)),
        torch.from_numpy(index),
    )
    out = {k: float(v) for k, v in m.compute().items()}
    if beyond is not None:
        rows = np.arange(len(behaviors))
        for start in range(0, len(rows), 4096):
            r = rows[start : start + 4096]
            cands, _, mask = behaviors.impressions(r)
            hist, n = behaviors.histories(r, history_length)
            hmask = np.arange(history_length)[None, :] < n[:, None]
            lo, hi = behaviors.candidate_offsets[r[0]], behaviors.candidate_offsets[r[-1] + 1]
            padded = np.zeros(mask.shape)
            padded[mask] = flat[lo:hi]
            beyond.update(*(torch.from_numpy(a) for a in (padded, mask, cands, hist, hmask)))
        values = beyond.compute()
        out |= {f"{k}@{beyond.k}": float(values[k]) for k in BEYOND_ACCURACY_NAMES}
    return out


def read_oracle(path: str | os.PathLike) -> list[np.ndarray]:
    """The click probabilities a synthetic world wrote (``oracle.tsv``), per impression."""
    out = []
    for line in Path(path).read_text().splitlines():
        _, values = line.split("\t")
        out.append(np.array(values.split(), dtype=np.float64))
    return out
