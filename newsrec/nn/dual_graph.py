r"""DIGAT's dual-graph blocks (Mao et al., Findings of EMNLP 2022, as ``Veason-silverbullet/DIGAT``
builds them): a graph attention whose scores are conditioned on the other graph's context, the
news graph's gated context, and the user graph's topic-level context."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from newsrec.nn.attention import masked_softmax

__all__ = ["ContextGraphAttention", "NewsGraphContext", "QueryAttention", "UserGraphContext"]

_RELU = nn.init.calculate_gain("relu")


class QueryAttention(nn.Module):
    r"""Scaled dot-product attention of a set of vectors to one query vector (the official
    ``ScaledDotProductAttention``):

    .. math::
        \alpha_i = \operatorname{softmax}_i\big((\mathbf{K}\mathbf{h}_i)^\top(\mathbf{Q}\mathbf{q}
        + \mathbf{b}) / \sqrt{d_a}\big), \qquad \mathbf{o} = \textstyle\sum_i \alpha_i \mathbf{h}_i

    Shapes: ``features [P, N, d]``, ``query [P, d_q]``, ``mask [P, N]`` (bool) → ``[P, d]``; a row
    with every position masked gives the zero vector.
    """

    def __init__(self, dim: int, query_dim: int, attention_dim: int) -> None:
        super().__init__()
        self.K = nn.Linear(dim, attention_dim, bias=False)
        self.Q = nn.Linear(query_dim, attention_dim, bias=True)
        self.scale = math.sqrt(attention_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.K.weight)
        nn.init.xavier_uniform_(self.Q.weight)
        nn.init.zeros_(self.Q.bias)

    def forward(self, features: Tensor, query: Tensor, mask: Tensor) -> Tensor:
        logits = torch.einsum("pna,pa->pn", self.K(features), self.Q(query)) / self.scale
        return torch.einsum("pn,pnd->pd", masked_softmax(logits, mask), features)


class ContextGraphAttention(nn.Module):
    r"""One graph's attention layer of DIGAT, its scores conditioned on the other graph's context
    :math:`\mathbf{c}` (``compute_{news,user}_graph_embeddings``):

    .. math::
        e_{ij} = \operatorname{LeakyReLU}_{0.2}\Big(\mathbf{a}^\top \operatorname{ReLU}\big(
        \mathbf{F}_3\mathbf{c} + \mathbf{b}_3 + \mathbf{F}_1\mathbf{x}_j + \mathbf{F}_2\mathbf{x}_i
        \big)\Big), \quad
        \alpha_{ij} = \operatorname{softmax}_{j \in \mathcal{N}(i)} e_{ij}, \quad
        \mathbf{x}'_i = \operatorname{ReLU}\Big(\textstyle\sum_j \alpha_{ij}(\mathbf{W}\mathbf{x}_j
        + \mathbf{b})\Big) + \mathbf{x}_i

    with dropout ``dropout / 2`` on the input nodes and ``dropout`` on :math:`\alpha` in training.

    Shapes: ``x [P, N, d]``, ``adj [P, N, N]`` (bool; ``adj[p, i, j]``: ``j`` is a neighbour of
    ``i``; every node has its self-loop), ``context [P, d]`` → ``[P, N, d]``. The ``[P, N, N, d]``
    score tensor is built once per call (26 × 26 news nodes, 68 × 68 user nodes at MIND's sizes).
    """

    def __init__(self, dim: int, dropout: float = 0.2) -> None:
        super().__init__()
        self.W = nn.Linear(dim, dim, bias=True)
        self.ffn1 = nn.Linear(dim, dim, bias=False)
        self.ffn2 = nn.Linear(dim, dim, bias=False)
        self.ffn3 = nn.Linear(dim, dim, bias=True)
        self.a = nn.Linear(dim, 1, bias=False)
        self.input_dropout, self.attention_dropout = nn.Dropout(dropout / 2), nn.Dropout(dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.W.weight)
        nn.init.zeros_(self.W.bias)
        for ffn in (self.ffn1, self.ffn2, self.ffn3):
            nn.init.xavier_uniform_(ffn.weight, gain=_RELU)
        nn.init.zeros_(self.ffn3.bias)
        nn.init.xavier_uniform_(self.a.weight, gain=nn.init.calculate_gain("leaky_relu", 0.2))

    def forward(self, x: Tensor, adj: Tensor, context: Tensor) -> Tensor:
        x = self.input_dropout(x)
        hidden = self.ffn3(context)[:, None, None] + self.ffn1(x).unsqueeze(1) + self.ffn2(x).unsqueeze(2)
        scores = F.leaky_relu(self.a(F.relu(hidden)).squeeze(-1), 0.2)  # [P, N, N]
        alpha = self.attention_dropout(masked_softmax(scores, adj))
        return F.relu(torch.bmm(alpha, self.W(x))) + x


class NewsGraphContext(nn.Module):
    r"""The news graph's context: the candidate node (local) gated with its neighbours' attention
    readout (global) queried by the candidate (``compute_news_graph_context``):

    .. math::
        \mathbf{g} = \operatorname{Att}(\mathbf{x}_{1..N}; \mathbf{x}_0), \quad
        \boldsymbol{\gamma} = \sigma\big(\mathbf{W}[\mathbf{x}_0; \mathbf{g}] + \mathbf{b}\big), \quad
        \mathbf{c}_n = \boldsymbol{\gamma} \odot \mathbf{x}_0 + (1 - \boldsymbol{\gamma}) \odot \mathbf{g}

    (dropout ``dropout / 2`` on the gate's logits in training).

    Shapes: ``x [P, N, d]`` (node 0 the candidate), ``mask [P, N]`` (bool: the nodes the global
    readout reads; the official code leaves the candidate out) → ``[P, d]``.
    """

    def __init__(self, dim: int, dropout: float = 0.2) -> None:
        super().__init__()
        self.attention = QueryAttention(dim, dim, dim)
        self.gate = nn.Linear(2 * dim, dim)
        self.dropout = nn.Dropout(dropout / 2)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.attention.reset_parameters()
        nn.init.xavier_uniform_(self.gate.weight)
        nn.init.zeros_(self.gate.bias)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        local = x[:, 0]
        global_ = self.attention(x, local, mask)
        gate = torch.sigmoid(self.dropout(self.gate(torch.cat([local, global_], -1))))
        return gate * local + (1 - gate) * global_


class UserGraphContext(nn.Module):
    r"""The user graph's context for a news context :math:`\mathbf{c}_n`
    (``compute_user_graph_context``): topic-level attention among the clicks of each category,
    then attention over the user's topics:

    .. math::
        a_i = (\mathbf{K}\mathbf{h}_i)^\top(\mathbf{Q}\mathbf{c}_n + \mathbf{b}) / \sqrt{d}, \quad
        \mathbf{t}_k = \textstyle\sum_{i: k_i = k} \operatorname{softmax}_{i: k_i = k}(a_i)\,
        \mathbf{h}_i, \quad
        \mathbf{t}_k \leftarrow \operatorname{ReLU}(\mathbf{A}\mathbf{t}_k + \mathbf{b}_A) + \mathbf{t}_k,
        \quad \mathbf{c}_u = \operatorname{Att}(\mathbf{t}_{1..T}; \mathbf{c}_n)

    (dropout on :math:`\mathbf{t}` in training).

    Shapes: ``clicks [P, H, d]`` (the user graph's click nodes), ``topic_of [P, H, T]`` (bool:
    click ``i`` is real and of topic ``k``; a topic without a real click is left out),
    ``news_context [P, d]`` → ``[P, d]``.
    """

    def __init__(self, dim: int, dropout: float = 0.2) -> None:
        super().__init__()
        self.K = nn.Linear(dim, dim, bias=False)
        self.Q = nn.Linear(dim, dim, bias=True)
        self.affine = nn.Linear(dim, dim)
        self.attention = QueryAttention(dim, dim, dim)
        self.dropout = nn.Dropout(dropout)
        self.scale = math.sqrt(dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.K.weight)
        nn.init.xavier_uniform_(self.Q.weight)
        nn.init.zeros_(self.Q.bias)
        nn.init.xavier_uniform_(self.affine.weight, gain=_RELU)
        nn.init.zeros_(self.affine.bias)
        self.attention.reset_parameters()

    def forward(self, clicks: Tensor, topic_of: Tensor, news_context: Tensor) -> Tensor:
        logits = torch.einsum("phd,pd->ph", self.K(clicks), self.Q(news_context)) / self.scale
        alpha = masked_softmax(logits.unsqueeze(-1).expand_as(topic_of), topic_of, dim=1)  # [P, H, T]
        topics = torch.einsum("pht,phd->ptd", alpha, clicks)
        topics = self.dropout(F.relu(self.affine(topics)) + topics)
        return self.attention(topics, news_context, topic_of.any(1))
