"""Heterogeneous graph convolution and pooling over dense per-user graphs (User-as-Graph)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["HeteroDenseConv", "hetero_dense_pool"]


class HeteroDenseConv(nn.Module):
    r"""A graph convolution over a dense heterogeneous graph: one weight per relation for the
    normalised (mean) aggregation of the neighbours along it, and one self weight per node type:

    .. math::
        \mathbf{h}'_i = \mathbf{W}^{self}_{\tau(i)} \mathbf{h}_i + \mathbf{b}_{\tau(i)}
        + \sum_r \mathbf{W}_r \frac{1}{|N_r(i)|} \sum_{j \in N_r(i)} \mathbf{h}_j

    Padding nodes (``mask`` False) send nothing and come out zero.

    Args:
        in_dim, out_dim: feature sizes.
        num_relations: ``R``, adjacencies given (one per relation).
        num_types: node types (the self weight of each).

    Shapes:
        - **x**: ``[B, N, in_dim]``; **adjacency**: ``[R, B, N, N]``; **mask**: bool ``[B, N]``;
          **node_type**: long ``[B, N]`` in ``0 … num_types - 1``.
        - **output**: ``[B, N, out_dim]``.
    """

    def __init__(self, in_dim: int, out_dim: int, num_relations: int = 1, num_types: int = 1) -> None:
        super().__init__()
        self.relations = nn.ModuleList(nn.Linear(in_dim, out_dim, bias=False) for _ in range(num_relations))
        self.self_weights = nn.ModuleList(nn.Linear(in_dim, out_dim) for _ in range(num_types))

    def reset_parameters(self) -> None:
        for m in (*self.relations, *self.self_weights):
            m.reset_parameters()

    def forward(self, x: Tensor, adjacency: Tensor, mask: Tensor, node_type: Tensor | None = None) -> Tensor:
        keep = mask.unsqueeze(-1).to(x.dtype)
        x = x * keep
        adjacency = adjacency * (keep.transpose(1, 2).unsqueeze(0) * keep.unsqueeze(0))  # no edge to padding
        degree = adjacency.sum(-1, keepdim=True).clamp_min(1.0)  # [R, B, N, 1]
        out = sum(w(adj @ x / deg) for w, adj, deg in zip(self.relations, adjacency, degree))
        if len(self.self_weights) == 1:
            own = self.self_weights[0](x)
        else:
            stacked = torch.stack([w(x) for w in self.self_weights], 0)  # [types, B, N, out]
            index = node_type.unsqueeze(0).unsqueeze(-1).expand(1, *stacked.shape[1:])
            own = stacked.gather(0, index)[0]
        return (out + own) * keep


def hetero_dense_pool(
    z: Tensor, assignment_logits: Tensor, adjacency: Tensor, mask: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    r"""One pooling step with a soft assignment (DiffPool's, with normalised aggregation):

    .. math::
        \mathbf{S} = \operatorname{softmax}_k(\mathbf{L}), \qquad
        \mathbf{H}' = \operatorname{diag}(\mathbf{S}^\top\mathbf{1})^{-1}\,\mathbf{S}^\top\mathbf{Z}, \qquad
        \mathbf{A}' = \mathbf{S}^\top \Big(\sum_r \mathbf{A}_r\Big) \mathbf{S}

    (each cluster the mean of the nodes it holds, weighted by their assignment). Padding nodes
    hold no mass; a cluster that holds nothing (a user without clicks) is masked out.

    Shapes: ``z [B, N, d]``, ``assignment_logits [B, N, K]``, ``adjacency [R, B, N, N]``,
    ``mask [B, N]`` → ``(x [B, K, d], adjacency [1, B, K, K], mask [B, K])``.
    """
    keep = mask.unsqueeze(-1).to(z.dtype)
    s = torch.softmax(assignment_logits, -1) * keep  # [B, N, K]
    mass = s.sum(1)  # [B, K]
    x = s.transpose(1, 2) @ (z * keep) / mass.clamp_min(1e-9).unsqueeze(-1)
    pooled_adj = s.transpose(1, 2) @ adjacency.sum(0) @ s
    return x, pooled_adj.unsqueeze(0), mass > 1e-6
