"""DIGAT (Mao et al., Findings of EMNLP 2022): news recommendation with dual-graph interaction."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.nn import DenseGATConv

from newsrec.core import DataRequirements, NewsBatch, as_batch
from newsrec.core.requirements import SEMANTIC_NEIGHBOR_FIELD
from newsrec.models.base import NewsRecModel, gather_rows
from newsrec.models.pairs import score_pairs
from newsrec.nn import AdditiveAttention, masked_softmax

__all__ = ["DIGAT", "DualGraphLayer"]


class DualGraphLayer(nn.Module):
    r"""One dual-graph interaction layer: every node of each graph is updated by graph attention
    inside its own graph (PyG :class:`~torch_geometric.nn.DenseGATConv` over the graph's dense
    adjacency) and by attention to the other graph's nodes, with a residual connection:

    .. math::
        \mathbf{x}'_i = \operatorname{LN}\Big(\mathbf{x}_i + \operatorname{GAT}(\mathbf{X}, \mathbf{A})_i
        + \sum_j \operatorname{softmax}_j\big(\mathbf{x}_i^\top \mathbf{W}\mathbf{y}_j / \sqrt{d}\big)\,
        \mathbf{y}_j\Big)

    (and the same for :math:`\mathbf{y}` with :math:`\mathbf{x}`).

    Shapes: ``x [P, Nx, d]``, ``adj_x [P, Nx, Nx]``, ``mask_x [P, Nx]``, and likewise ``y`` →
    the updated ``x``, ``y``.
    """

    def __init__(self, dim: int, heads: int = 2) -> None:
        super().__init__()
        self.gat_news = DenseGATConv(dim, dim // heads, heads=heads)
        self.gat_user = DenseGATConv(dim, dim // heads, heads=heads)
        self.cross_news = nn.Linear(dim, dim, bias=False)
        self.cross_user = nn.Linear(dim, dim, bias=False)
        self.norm_news, self.norm_user = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.dim = dim

    def reset_parameters(self) -> None:
        for m in (self.gat_news, self.gat_user, self.cross_news, self.cross_user, self.norm_news, self.norm_user):
            m.reset_parameters()

    def _cross(self, x: Tensor, y: Tensor, y_mask: Tensor, project: nn.Linear) -> Tensor:
        weights = masked_softmax(torch.einsum("pid,pjd->pij", x, project(y)) / self.dim**0.5, y_mask.unsqueeze(1))
        return torch.einsum("pij,pjd->pid", weights, y)

    def forward(self, x, adj_x, mask_x, y, adj_y, mask_y) -> tuple[Tensor, Tensor]:
        keep_x, keep_y = mask_x.unsqueeze(-1).to(x.dtype), mask_y.unsqueeze(-1).to(y.dtype)
        x_new = x + self.gat_news(x, adj_x, mask_x) + self._cross(x, y, mask_y, self.cross_news)
        y_new = y + self.gat_user(y, adj_y, mask_y) + self._cross(y, x, mask_x, self.cross_user)
        return self.norm_news(x_new) * keep_x, self.norm_user(y_new) * keep_y


class DIGAT(NewsRecModel):
    r"""DIGAT: the candidate's semantic-augmented news graph (the candidate and its nearest news
    in the corpus by title embedding, ``semantic_neighbors``: computed once from the data and
    cached, see :func:`~newsrec.data.derived.semantic_neighbor_array`; edges between the
    candidate and each neighbour, and between neighbours that are each other's neighbours) and
    the user's graph of clicked news (fully connected) interact through ``num_layers`` stacked
    :class:`DualGraphLayer`; the score matches the candidate's node with the user graph's
    attention readout:

    .. math::
        s = \mathbf{x}_{c}^{(L)\top}\, \operatorname{Att}\big(\mathbf{y}^{(L)}_{1..H}\big)

    **Not cacheable**: both graphs change with the pair. The forward scores (impression,
    candidate) pairs ``chunk_pairs`` at a time, exactly; evaluation and serving run it. News
    added in serving have no semantic neighbours until the data is prepared again (a candidate
    graph of one node).

    Args:
        num_layers: dual-graph interaction layers (2).
        gat_heads: attention heads of the graph attention (2).
        chunk_pairs: pairs scored at a time (256).
        **kwargs: the :class:`NewsRecModel` arguments (news are encoded by the title encoder).

    Shapes: ``title [U, L]``, ``semantic_neighbors [U, k]`` (positions in the batch) → news
    ``[U, dim]``; scores ``[B, C]``.
    """

    cacheable = False
    user_is_vector = False

    def __init__(self, num_layers: int = 2, gat_heads: int = 2, chunk_pairs: int = 256, **kwargs) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters()
        if self.dim % gat_heads:
            raise ValueError(f"the model size {self.dim} must be divisible by gat_heads={gat_heads}")
        self.chunk_pairs = chunk_pairs
        self.news_encoder = self.text_encoder()
        self.layers = nn.ModuleList(DualGraphLayer(self.dim, gat_heads) for _ in range(num_layers))
        self.readout = AdditiveAttention(self.dim, self.attention_hidden)

    def data_requirements(self) -> DataRequirements:
        fields = (self.text_field("title"), SEMANTIC_NEIGHBOR_FIELD)
        return DataRequirements(news_fields=fields, text_tokenizer=self.text_tokenizer())

    def encode_news(self, news: dict[str, Tensor], history_news: Tensor | None = None) -> Tensor:
        return self.news_encoder(news[self.text_field("title")])

    def encode_users(self, batch: dict, history_news: Tensor) -> Tensor:
        return gather_rows(history_news, batch["history"])  # the user graph's nodes

    def _pairs(self, vectors: Tensor, neighbors: Tensor, candidates: Tensor, clicked: Tensor, click_mask: Tensor):
        """Scores of ``P`` pairs: ``candidates [P]`` (batch positions), their users' ``clicked
        [P, H, d]`` and ``click_mask [P, H]``."""
        nodes = torch.cat([candidates.unsqueeze(1), neighbors[candidates]], 1)  # [P, 1 + k]
        news_mask = nodes > 0
        news_mask[:, 0] = True
        x = vectors[nodes] * news_mask.unsqueeze(-1).to(vectors.dtype)
        # the candidate links to each neighbour; neighbours link where one lists the other
        listed = (neighbors[nodes].unsqueeze(2) == nodes.unsqueeze(1).unsqueeze(-1)).any(-1)  # [P, 1+k, 1+k]
        adj_x = (listed | listed.transpose(1, 2)).float()
        adj_x[:, 0, 1:] = adj_x[:, 1:, 0] = 1.0
        adj_x = adj_x * (news_mask.unsqueeze(1) & news_mask.unsqueeze(2))
        adj_y = (click_mask.unsqueeze(1) & click_mask.unsqueeze(2)).float()
        y = clicked
        for layer in self.layers:
            x, y = layer(x, adj_x, news_mask, y, adj_y, click_mask)
        return (x[:, 0] * self.readout(y, click_mask)).sum(-1)

    def forward(self, batch: NewsBatch) -> Tensor:
        batch = as_batch(batch)
        vectors = self.encode_news(batch["news"])  # [U, d]: every news of the batch, neighbours included
        neighbors = batch["news"][SEMANTIC_NEIGHBOR_FIELD]
        clicked = self.encode_users(batch, vectors).index_select(0, batch["user_index"])
        click_mask = batch["history_mask"].index_select(0, batch["user_index"])
        return score_pairs(
            batch["candidates"], batch["candidate_mask"], self.chunk_pairs,
            lambda rows, news: self._pairs(vectors, neighbors, news, clicked[rows], click_mask[rows]),
        )  # fmt: skip
