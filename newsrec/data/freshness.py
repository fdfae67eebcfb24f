"""Fresh news as a measurement: which news had no training click, which impressions a fresh
article was clicked in, and the ranking metrics over those impressions beside all of them.

A news platform exists to surface what was just published, and a model that reads click counts
(a graph, popularity) knows nothing about an article nobody has clicked yet. The ``fresh``
column of the benchmarks is the metrics over the impressions whose clicked news is fresh.

Example (three news, the training split clicked news 1 only; two dev impressions, the first
clicks news 2, fresh, the second news 1)::

    fresh = fresh_news(click_counts)                      # [False, False, True]  (row 0 = padding)
    keep = fresh_impressions(candidates, offsets, labels, fresh)   # [True, False]
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["fresh_news", "fresh_impressions", "split_metrics", "FRESH_SPLITS"]

#: the two impression sets every benchmark reports
FRESH_SPLITS = ("all", "fresh")


def fresh_news(train_click_counts: np.ndarray) -> np.ndarray:
    """bool ``[N]``: news without any training click (row 0, the padding row, is never fresh).

    Args:
        train_click_counts: int ``[N]`` clicks of every news in the training split (impressions
            and histories; :meth:`Behaviors.click_counts <newsrec.data.Behaviors.click_counts>`).
    """
    counts = np.asarray(train_click_counts)
    if counts.ndim != 1:
        raise ValueError(f"train_click_counts must be 1-D [num_news], got shape {counts.shape}")
    fresh = counts == 0
    if len(fresh):
        fresh[0] = False
    return fresh


def fresh_impressions(
    candidates: np.ndarray, candidate_offsets: np.ndarray, labels: np.ndarray, fresh: np.ndarray
) -> np.ndarray:
    """bool ``[I]``: impressions in which at least one clicked candidate is fresh.

    Args:
        candidates: int ``[total candidates]`` corpus rows, impressions one after another.
        candidate_offsets: int ``[I + 1]`` where each impression's candidates start.
        labels: ``[total candidates]`` (1 = clicked).
        fresh: bool ``[N]`` (:func:`fresh_news`).
    """
    candidates, labels = np.asarray(candidates, np.int64), np.asarray(labels)
    offsets = np.asarray(candidate_offsets, np.int64)
    if len(candidates) != len(labels) or len(offsets) < 1 or offsets[-1] != len(candidates):
        raise ValueError(
            f"{len(candidates)} candidates, {len(labels)} labels and offsets ending at {offsets[-1:]} do not match"
        )
    fresh = np.asarray(fresh, bool)
    if len(candidates) and (candidates.min() < 0 or candidates.max() >= len(fresh)):
        raise ValueError(f"candidate rows must lie in [0, {len(fresh)}): the fresh mask covers every news")
    hit = (labels == 1) & fresh[candidates]
    row_of = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    return np.bincount(row_of[hit], minlength=len(offsets) - 1) > 0


def split_metrics(
    scores: list[np.ndarray], labels: list[np.ndarray], fresh_rows: np.ndarray
) -> dict[str, dict[str, float]]:
    """AUC / MRR / nDCG@5 / nDCG@10 (fractions, as :class:`~newsrec.metrics.ImpressionMetrics`)
    over all impressions and over the fresh ones.

    Args:
        scores, labels: one array per impression (candidates in one order).
        fresh_rows: bool ``[I]`` (:func:`fresh_impressions`).

    Returns:
        ``{"all": {...}, "fresh": {...}}``, each with ``impressions`` (those with a click and a
        non-click); a split without any impression has NaN values.
    """
    from newsrec.metrics import ImpressionMetrics

    fresh_rows = np.asarray(fresh_rows, bool)
    if len(scores) != len(labels) or len(scores) != len(fresh_rows):
        raise ValueError(f"{len(scores)} score arrays, {len(labels)} label arrays, {len(fresh_rows)} fresh flags")
    out = {}
    for name, keep in (("all", np.ones(len(scores), bool)), ("fresh", fresh_rows)):
        idx = np.flatnonzero(keep)
        m = ImpressionMetrics()
        if len(idx):
            m.update(
                torch.from_numpy(np.concatenate([np.asarray(scores[i], np.float64) for i in idx])),
                torch.from_numpy(np.concatenate([np.asarray(labels[i], np.int64) for i in idx])),
                torch.from_numpy(np.repeat(np.arange(len(idx)), [len(labels[i]) for i in idx])),
            )
        if int(m.count) == 0:
            out[name] = {"auc": float("nan"), "mrr": float("nan"), "ndcg@5": float("nan"), "ndcg@10": float("nan"),
                         "impressions": 0.0}  # fmt: skip
            continue
        out[name] = {k: float(v) for k, v in m.compute().items() if k != "skipped"}
    return out
