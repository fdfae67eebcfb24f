"""Impression-level ranking metrics as MIND defines them, and the beyond-accuracy metrics
(:mod:`newsrec.beyond_accuracy`, re-exported here). The leaderboard file writer is
:func:`newsrec.training.write_prediction_file`."""

from __future__ import annotations

import warnings

import torch
from torch import Tensor
from torchmetrics import Metric

from newsrec import beyond_accuracy
from newsrec.beyond_accuracy import (  # noqa: F401 (re-exported: beyond_accuracy.__all__)
    BEYOND_ACCURACY_NAMES,
    BeyondAccuracyMetrics,
    category_diversity,
    category_personalisation,
    coverage,
    gini_index,
    intra_list_diversity,
    novelty,
    serendipity,
    top_k_lists,
)
from newsrec.utils import METRIC_NAMES

__all__ = ["ImpressionMetrics", "impression_scores", "flat_to_padded", "METRIC_NAMES", *beyond_accuracy.__all__]


def flat_to_padded(preds: Tensor, target: Tensor, indexes: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Group flat candidates by impression index into padded ``[B, L]`` tensors.

    Candidates keep their order within an impression. Returns ``(preds, target, mask)``.
    """
    if not (preds.shape == target.shape == indexes.shape) or preds.dim() != 1:
        raise ValueError("preds, target and indexes must be 1-D tensors of the same length")
    order = torch.sort(indexes, stable=True).indices
    idx = indexes[order]
    _, group, counts = torch.unique_consecutive(idx, return_inverse=True, return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    pos = torch.arange(len(idx), device=idx.device) - starts[group]
    B, L = len(counts), int(counts.max()) if len(counts) else 0
    p = preds.new_zeros((B, L))
    t = target.new_zeros((B, L))
    m = torch.zeros((B, L), dtype=torch.bool, device=preds.device)
    p[group, pos] = preds[order]
    t[group, pos] = target[order]
    m[group, pos] = True
    return p, t, m


def impression_scores(preds: Tensor, target: Tensor, mask: Tensor) -> tuple[dict[str, Tensor], Tensor]:
    """Per-impression AUC, MRR, nDCG@5 and nDCG@10 on padded ``[B, L]`` inputs.

    Args:
        preds: float ``[B, L]`` scores (finite where ``mask``).
        target: ``[B, L]`` labels in {0, 1}.
        mask: bool ``[B, L]``, True for real candidates.

    Returns:
        ``(values, valid)``: a dict of float64 ``[B]`` tensors and a bool ``[B]`` that is False
        for impressions with no click or no non-click (skipped, as MIND's evaluation does).

    Definitions (rank 1 = highest score; ties in MRR/nDCG keep candidate order, ties in AUC
    count 1/2):
        AUC = P(score of a clicked > score of a non-clicked);
        MRR = Σ_clicked (1 / rank) / #clicked;
        nDCG@k = Σ_{rank ≤ k} (2^y − 1) / log2(rank + 1), divided by the same sum for the ideal
        order.
    """
    mask = mask.bool()
    y = (target > 0) & mask
    yf = y.double()
    s = preds.double()
    if torch.isnan(s[mask]).any():
        raise ValueError("predictions contain NaN")
    n_pos = yf.sum(1)
    n_neg = (mask & ~y).double().sum(1)
    valid = (n_pos > 0) & (n_neg > 0)
    # AUC by average ranks (ascending; ties get the mean rank), pads sorted below everything
    low = torch.where(mask, s, torch.full_like(s, -torch.inf))
    sorted_s = torch.sort(low, dim=1).values
    left = torch.searchsorted(sorted_s, low.contiguous(), right=False).double()
    right = torch.searchsorted(sorted_s, low.contiguous(), right=True).double()
    n_pad = (~mask).double().sum(1, keepdim=True)
    avg_rank = (left + right + 1) / 2 - n_pad  # 1-based rank among the real candidates
    rank_sum = (avg_rank * yf).sum(1)
    auc = (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg).clamp_min(1)
    # descending order, stable: ties keep candidate order
    high = torch.where(mask, s, torch.full_like(s, -torch.inf))
    order = torch.sort(high, dim=1, descending=True, stable=True).indices
    y_sorted = torch.gather(yf, 1, order)
    ranks = torch.arange(1, s.shape[1] + 1, dtype=torch.float64, device=s.device)
    mrr = (y_sorted / ranks).sum(1) / n_pos.clamp_min(1)
    discount = 1.0 / torch.log2(ranks + 1)
    gains = y_sorted  # 2^y - 1 with y ∈ {0, 1}
    ideal = torch.sort(yf, dim=1, descending=True).values
    out = {"auc": auc, "mrr": mrr}
    for k in (5, 10):
        dk = discount.clone()
        dk[k:] = 0
        dcg = (gains * dk).sum(1)
        idcg = (ideal * dk).sum(1)
        out[f"ndcg@{k}"] = dcg / idcg.clamp_min(1e-12)
    return out, valid


class ImpressionMetrics(Metric):
    """AUC, MRR, nDCG@5 and nDCG@10 per impression, averaged over impressions (MIND's definition).

    Feed either flat tensors with impression indexes (``update(preds, target, indexes)``) or a
    padded batch (``update(preds, target, mask=mask)``, also spelt ``update_padded``). Every
    impression's candidates must arrive in one call (newsrec's evaluation always passes whole
    impressions). Impressions with no click or no non-click are skipped and counted in
    ``skipped``. States are sums and counts, so DDP reduction is exact and cheap. With no valid
    impression at all, ``compute`` warns (``RuntimeWarning``) and returns NaN for the four values.

    Example::

        >>> m = ImpressionMetrics()
        >>> m.update(torch.tensor([0.9, 0.1, 0.3]), torch.tensor([1, 0, 0]), torch.tensor([0, 0, 0]))
        >>> {k: round(float(v), 3) for k, v in m.compute().items()}
        {'auc': 1.0, 'mrr': 1.0, 'ndcg@5': 1.0, 'ndcg@10': 1.0, 'impressions': 1.0, 'skipped': 0.0}
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        for name in METRIC_NAMES:
            self.add_state(f"sum_{name}", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("skipped", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(  # type: ignore[override]
        self, preds: Tensor, target: Tensor, indexes: Tensor | None = None, *, mask: Tensor | None = None
    ) -> None:
        """Flat 1-D ``preds``, ``target`` and ``indexes`` (the impression of each candidate), or
        padded ``[B, L]`` ``preds``/``target`` with ``mask`` (True = real candidate)."""
        if (indexes is None) == (mask is None):
            raise ValueError("pass exactly one of indexes (flat inputs) or mask (padded inputs)")
        if indexes is not None:
            if preds.numel() == 0:
                return
            preds, target, mask = flat_to_padded(preds, target, indexes)
        if preds.shape != target.shape or preds.shape != mask.shape or preds.dim() != 2:
            raise ValueError(
                f"preds, target and mask must be [B, L] tensors of one shape, got "
                f"{tuple(preds.shape)}, {tuple(target.shape)}, {tuple(mask.shape)}"
            )
        values, valid = impression_scores(preds, target, mask)
        for name in METRIC_NAMES:
            setattr(self, f"sum_{name}", getattr(self, f"sum_{name}") + values[name][valid].sum())
        # out-of-place updates: states must never be modified in place (a CPU tensor may live in
        # memory shared with other processes, e.g. after ddp_spawn pickling)
        self.count = self.count + valid.sum()
        self.skipped = self.skipped + (~valid).sum()

    def update_padded(self, preds: Tensor, target: Tensor, mask: Tensor) -> None:
        """Padded ``[B, L]`` scores, labels and mask (True = real candidate)."""
        self.update(preds, target, mask=mask)

    def compute(self) -> dict[str, Tensor]:
        n = self.count.double().clamp_min(1)
        out = {name: getattr(self, f"sum_{name}") / n for name in METRIC_NAMES}
        if self.count == 0:
            warnings.warn(
                f"ImpressionMetrics: no impression with both a click and a non-click "
                f"({int(self.skipped)} skipped): AUC, MRR and nDCG are NaN",
                RuntimeWarning,
                stacklevel=2,
            )
            out = {k: torch.tensor(float("nan"), dtype=torch.float64) for k in out}
        out["impressions"] = self.count.double()
        out["skipped"] = self.skipped.double()
        return out
