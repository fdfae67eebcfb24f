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
    :math:`\phi(\mathbf{0})` makes a candidate without any edge to the user's clicks score exactly
    :math:`\mathbf{u}^\top\mathbf{c}`: the term falls back to zero.

    **Fresh-aware** (``fresh_aware=True``): zero edges mean two things, "seen, and no reader went
    on from these clicks to it" (evidence against) and "the graph has never seen it" (a fresh
    article: no evidence). With the candidate's exposure :math:`e_c` (its transitions in the
    graph, the features' column ``F``),

    .. math::
        g(u, c) = \begin{cases}
            \sum_{j < m} a_j \big(\phi([\mathbf{f}_{c,j}; e_c]) - \phi([\mathbf{0}; e_c])\big)
                & e_c > 0 \\
            b_{\text{fresh}} & e_c = 0
        \end{cases}

    so the edge evidence is read against how exposed the candidate is (thin counts can weigh
    less), and an unseen candidate gets a learned constant :math:`b_{\text{fresh}}`: it is ranked
    by its text (:math:`\mathbf{u}^\top\mathbf{c}`) against the seen ones. The constant is learned
    by hiding the graph features of a share ``fresh_dropout`` of the training candidates (pair
    features and exposure set to 0, as if fresh); without that, the only unseen training
    candidates would be rare negatives. A seen candidate without an edge still scores exactly
    :math:`\mathbf{u}^\top\mathbf{c}`.

    Args:
        num_features: ``F``, pair features read (4 for :class:`TransitionTable`; its fifth
            column is the exposure).
        num_recent: ``m``, recency positions (one weight each).
        hidden_dim: MLP hidden size (16).
        fresh_aware: read the exposure column ``F`` and give unseen candidates
            :math:`b_{\text{fresh}}` (False: the first form, zero for them).
        fresh_dropout: share of training candidates whose graph features are hidden (0.0).

    Shapes:
        - **features**: ``[B, C, m, F']`` with ``F' ≥ F`` (``F' > F`` when ``fresh_aware``).
        - **mask**: bool ``[B, m]`` (True = a real click); masked positions add nothing.
        - **output**: ``[B, C]``.
    """

    @renamed_arguments(hidden="hidden_dim")
    def __init__(
        self,
        num_features: int = 4,
        num_recent: int = 50,
        hidden_dim: int = 16,
        fresh_aware: bool = False,
        fresh_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0.0 <= fresh_dropout < 1.0:
            raise ValueError(f"fresh_dropout must be in [0, 1), got {fresh_dropout}")
        if fresh_dropout > 0 and not fresh_aware:
            raise ValueError("fresh_dropout hides candidates as if fresh: it needs fresh_aware=True")
        self.num_features, self.num_recent = num_features, num_recent
        self.fresh_aware, self.fresh_dropout = fresh_aware, fresh_dropout
        inputs = num_features + int(fresh_aware)
        self.mlp = nn.Sequential(nn.Linear(inputs, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, 1))
        self.recency_weight = nn.Parameter(torch.empty(num_recent))
        self.fresh_bias = nn.Parameter(torch.empty(())) if fresh_aware else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for layer in self.mlp:
            if isinstance(layer, nn.Linear):
                layer.reset_parameters()
        nn.init.ones_(self.recency_weight)
        if self.fresh_bias is not None:
            nn.init.zeros_(self.fresh_bias)

    def forward(self, features: Tensor, mask: Tensor) -> Tensor:
        m, F = features.shape[2], self.num_features
        if m > self.num_recent:
            raise ValueError(f"features cover {m} recent clicks but the scorer has {self.num_recent} positions")
        if features.shape[-1] < F + int(self.fresh_aware):
            raise ValueError(
                f"features have {features.shape[-1]} columns; the scorer reads {F + int(self.fresh_aware)}"
            )
        features = features.to(self.recency_weight.dtype)
        pair = features[..., :F]
        if self.fresh_aware:
            exposure = features[:, :, 0, F]  # [B, C]
            if self.training and self.fresh_dropout > 0:  # hide some candidates' graph, as if fresh
                keep = (torch.rand_like(exposure) >= self.fresh_dropout).to(pair.dtype)
                pair, exposure = pair * keep[..., None, None], exposure * keep
            e = exposure[..., None, None].expand(*pair.shape[:3], 1)
            phi = self.mlp(torch.cat([pair, e], -1)).squeeze(-1) - self.mlp(
                torch.cat([torch.zeros_like(pair), e], -1)
            ).squeeze(-1)
        else:
            phi = self.mlp(pair).squeeze(-1) - self.mlp(pair.new_zeros(F)).squeeze(-1)
        # exactly 0 where there is no edge (a batched and a single-row product may round apart)
        phi = phi.masked_fill((pair == 0).all(-1), 0.0)
        weight = self.recency_weight[:m] * mask.to(phi.dtype)  # [B, m]
        term = torch.einsum("bcm,bm->bc", phi, weight)
        if self.fresh_aware:
            term = torch.where(exposure > 0, term, self.fresh_bias.to(term.dtype).expand_as(term))
        return term
