"""A learned score term from click-graph transition features (GLORY's ``graph_score``)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from newsrec.utils import renamed_arguments

__all__ = ["TransitionScorer"]


class TransitionScorer(nn.Module):
    r"""A candidate-aware click-graph score, added to the dot product :math:`\mathbf{u}^\top\mathbf{c}`:

    .. math::
        g(u, c) = \sum_{j < m} a_j \,\big(\phi(\mathbf{f}_{c,j}) - \phi(\mathbf{0})\big)

    where :math:`\mathbf{f}_{c,j}` are the transition features between candidate :math:`c` and
    the user's :math:`j`-th most recent click (``j = 0`` the last; see
    :meth:`newsrec.graphs.transitions.TransitionTable.features`), :math:`\phi` a small MLP
    (``F → hidden_dim → 1``, ReLU) and :math:`a_j` a learned weight per recency position. Subtracting
    :math:`\phi(\mathbf{0})` makes a candidate without any edge to the user's clicks (a fresh
    article) score exactly :math:`\mathbf{u}^\top\mathbf{c}`: the term falls back to zero.

    Args:
        num_features: ``F`` (4 for :class:`TransitionTable`).
        num_recent: ``m``, recency positions (one weight each).
        hidden_dim: MLP hidden size (16).

    Shapes:
        - **features**: ``[B, C, m, F]``.
        - **mask**: bool ``[B, m]`` (True = a real click); masked positions add nothing.
        - **output**: ``[B, C]``.
    """

    @renamed_arguments(hidden="hidden_dim")
    def __init__(self, num_features: int = 4, num_recent: int = 50, hidden_dim: int = 16) -> None:
        super().__init__()
        self.num_recent = num_recent
        self.mlp = nn.Sequential(nn.Linear(num_features, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, 1))
        self.recency_weight = nn.Parameter(torch.empty(num_recent))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for layer in self.mlp:
            if isinstance(layer, nn.Linear):
                layer.reset_parameters()
        nn.init.ones_(self.recency_weight)

    def forward(self, features: Tensor, mask: Tensor) -> Tensor:
        m = features.shape[2]
        if m > self.num_recent:
            raise ValueError(f"features cover {m} recent clicks but the scorer has {self.num_recent} positions")
        features = features.to(self.recency_weight.dtype)
        phi = self.mlp(features).squeeze(-1) - self.mlp(features.new_zeros(features.shape[-1])).squeeze(-1)
        # exactly 0 where there is no edge (a batched and a single-row product may round apart)
        phi = phi.masked_fill((features == 0).all(-1), 0.0)
        weight = self.recency_weight[:m] * mask.to(phi.dtype)  # [B, m]
        return torch.einsum("bcm,bm->bc", phi, weight)
