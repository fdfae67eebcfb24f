"""Sparse weighted feature fields and the factorisation machine's O(k·n) terms (LibFM, DeepFM)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["FeatureField", "fm_pairwise"]


class FeatureField(nn.Module):
    r"""One sparse field of a factorisation machine: ``num_features`` ids, each with a factor
    vector :math:`\mathbf{v}_i \in \mathbb{R}^k` and a linear weight :math:`w_i`. For the
    weighted ids of a sample it returns the three sums the O(k·n) form needs,

    .. math::
        \mathbf{s} = \sum_i x_i \mathbf{v}_i, \qquad \mathbf{q} = \sum_i x_i^2\, \mathbf{v}_i^{\odot 2},
        \qquad l = \sum_i x_i w_i

    Id 0 is "no feature" (its vector and weight are zero and stay so); ids at or beyond
    ``num_features`` (a news added after training, a user the table does not have) count as 0.

    Args:
        num_features: the field's id space (row 0 included).
        factor_dim: ``k``.

    Shapes: ``ids`` long ``[..., n]``, ``weights`` float ``[..., n]`` (``None``: ones) →
    ``s [..., k]``, ``q [..., k]``, ``l [...]``.
    """

    def __init__(self, num_features: int, factor_dim: int) -> None:
        super().__init__()
        self.num_features = max(int(num_features), 1)
        self.factors = nn.Embedding(self.num_features, factor_dim, padding_idx=0)
        self.linear = nn.Embedding(self.num_features, 1, padding_idx=0)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.factors.weight, std=0.01)
        nn.init.zeros_(self.linear.weight)
        with torch.no_grad():
            self.factors.weight[0].zero_()

    def forward(self, ids: Tensor, weights: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        ids = torch.where((ids >= 0) & (ids < self.num_features), ids, torch.zeros_like(ids))
        x = torch.ones(ids.shape, device=ids.device) if weights is None else weights
        x = x * (ids != 0).to(x.dtype)
        v = self.factors(ids)  # [..., n, k]
        s = torch.einsum("...n,...nk->...k", x, v)
        q = torch.einsum("...n,...nk->...k", x * x, v * v)
        return s, q, (x * self.linear(ids).squeeze(-1)).sum(-1)


def fm_pairwise(s: Tensor, q: Tensor) -> Tensor:
    r"""The factorisation machine's pairwise term from the field sums of :class:`FeatureField`:
    :math:`\tfrac12 \sum_f (s_f^2 - q_f) = \sum_{i<j} x_i x_j \langle \mathbf{v}_i, \mathbf{v}_j\rangle`.
    ``s, q [..., k] → [...]``."""
    return 0.5 * (s * s - q).sum(-1)
