"""GNewsRec (Hu et al., Information Processing & Management 2020): a user–news–topic graph for
long-term interest and an attention LSTM for short-term interest."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from newsrec.core import DataRequirements, NewsBatch
from newsrec.models.base import NewsRecModel, gather_rows
from newsrec.nn import id_embedding, masked_softmax

__all__ = ["GNewsRec"]


class GNewsRec(NewsRecModel):
    r"""GNewsRec over the training split's heterogeneous tripartite graph of users, news and
    topics (MIND's categories stand for the paper's LDA topics; the user–news edges are the click
    graph of :func:`~newsrec.graphs.bipartite_click_graph`, neighbours sampled once, seeded).

    A two-layer graph network (GraphSAGE-style: a node's vector concatenated with the mean of its
    neighbours', a linear layer and a ReLU). Layer 1 makes the graph-enhanced news from its text
    vector and its graph neighbours, its clickers (user nodes: ID embeddings) and its topic node;
    layer 2 makes the long-term user from its ID embedding and its clicked news (news nodes of
    layer 1). An LSTM over the clicks, attended with the candidate as the query, gives the
    short-term user; the user is the concatenation of both, mixed by a linear layer to the news
    size:

    .. math::
        \mathbf{n}^{(1)} = \operatorname{ReLU}\big(\mathbf{W}_1[\mathbf{t}_n;\
        \operatorname{mean}(\{\mathbf{e}_v\}_{v \in N(n)} \cup \{\mathbf{e}_{topic(n)}\})] + \mathbf{b}_1\big),
        \qquad
        \mathbf{u}^L = \operatorname{ReLU}\big(\mathbf{W}_2[\mathbf{e}_u;\
        \operatorname{mean}_{n \in N(u)} \mathbf{n}^{(1)}] + \mathbf{b}_2\big),

    .. math::
        \mathbf{h}_{1..H} = \operatorname{LSTM}(\mathbf{n}^{(1)}_{1..H}), \qquad
        \mathbf{u}^S(c) = \sum_k \operatorname{softmax}_k(\mathbf{h}_k^\top \mathbf{W}_q \mathbf{c})\,
        \mathbf{h}_k, \qquad s = \big(\mathbf{W}_c[\mathbf{u}^L; \mathbf{u}^S(c)] + \mathbf{b}_c\big)^\top \mathbf{c}

    with :math:`\mathbf{c} = \mathbf{n}^{(1)}` of the candidate. A user's news neighbours
    :math:`N(u)` are its clicks (the history: the user–news edges of the graph are the training
    histories' clicks); a news' user neighbours are ``num_neighbors`` sampled clickers.

    **newsrec's option** ``residual=True`` (off in the paper's config; newsrec's form before this
    round, which starts from the text match: 68.8 AUC against 65.5 for a ReLU-and-concatenation
    form on a world without a collaborative signal, ``benchmarks/RESULTS.md``): bias-free residual
    layers and a sum,
    :math:`\mathbf{n} = \mathbf{t}_n + \mathbf{e}_{topic(n)} + \mathbf{W}_1
    \operatorname{mean}_{v}\mathbf{e}_v`, :math:`\mathbf{u}^L = \operatorname{mean}_{n \in N(u)}
    \mathbf{n} + \mathbf{W}_2\mathbf{e}_u`, :math:`s = (\mathbf{u}^L + \mathbf{W}_s\mathbf{u}^S(c))^\top
    \mathbf{c}`.

    The ID and topic tables start at ±0.05 and ID vectors are dropped out (``id_dropout``).
    **Not cacheable** (the short-term user depends on the candidate): evaluation and serving run
    the forward, exactly; candidates are scored ``candidate_chunk`` at a time. A fresh news (no
    clickers) keeps its text and topic; a user the training split lacks (ID row 0) its clicks.

    Args:
        num_neighbors: sampled clickers per news (15).
        candidate_chunk: candidates scored at a time (64).
        id_dropout: dropout on every user-ID vector looked up (the model's ``dropout`` by default).
        residual: newsrec's residual-and-sum form (above).
        **kwargs: the :class:`NewsRecModel` arguments (``num_users`` among the data sizes).

    Shapes: ``title [U, L]``, ``category [U]``, ``news_clickers [U, M]`` → news ``[U, dim]``;
    users ``[B_u, 1 + H, dim + 1]`` (the long-term vector, then the LSTM states with the click
    mask); scores ``[B, C]``.
    """

    cacheable = False
    user_is_vector = False

    def __init__(
        self,
        num_neighbors: int = 15,
        candidate_chunk: int = 64,
        id_dropout: float | None = None,
        residual: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters()
        dim = self.dim
        self.num_neighbors, self.candidate_chunk, self.residual = num_neighbors, candidate_chunk, residual
        self.news_encoder = self.text_encoder()
        self.topic_embedding = id_embedding(self.num_categories, dim)
        self.user_embedding = id_embedding(self.num_users, dim)
        self.id_dropout = nn.Dropout(self.dropout_rate if id_dropout is None else id_dropout)
        width = 1 if residual else 2
        self.news_layer = nn.Linear(width * dim, dim, bias=not residual)  # W_1
        self.user_layer = nn.Linear(width * dim, dim, bias=not residual)  # W_2
        self.lstm = nn.LSTM(dim, dim, batch_first=True)
        self.query = nn.Linear(dim, dim, bias=False)  # W_q
        self.combine = nn.Linear(width * dim, dim, bias=not residual)  # W_c (W_s in the residual form)

    def data_requirements(self) -> DataRequirements:
        fields = (self.text_field("title"), "category", "news_clickers")
        return DataRequirements(
            news_fields=fields, text_tokenizer=self.text_tokenizer(), user_ids=True, user_news_graph=self.num_neighbors
        )

    def _users(self, ids: Tensor) -> Tensor:
        return self.id_dropout(self.user_embedding(ids.clamp(0, self.user_embedding.num_embeddings - 1)))

    def encode_news(self, news: dict[str, Tensor], history_news: Tensor | None = None) -> Tensor:
        text = self.news_encoder(news[self.text_field("title")])  # [U, d]
        clickers = news["news_clickers"]  # [U, M]
        present = (clickers > 0).unsqueeze(-1).to(text.dtype)
        topic = self.topic_embedding(news["category"])
        if self.residual:
            clicked_by = (self._users(clickers) * present).sum(1) / present.sum(1).clamp_min(1)
            return text + topic + self.news_layer(clicked_by)
        has_topic = (news["category"] > 0).unsqueeze(-1).to(text.dtype)  # the topic node, where the news has one
        total = (self._users(clickers) * present).sum(1) + topic * has_topic
        neighbours = total / (present.sum(1) + has_topic).clamp_min(1)
        return torch.relu(self.news_layer(torch.cat([text, neighbours], -1)))

    def encode_users(self, batch: dict, history_news: Tensor) -> Tensor:
        mask = batch["history_mask"]
        clicked = gather_rows(history_news, batch["history"])  # [B_u, H, d]
        keep = mask.unsqueeze(-1).to(clicked.dtype)
        mean = (clicked * keep).sum(1) / keep.sum(1).clamp_min(1)
        own = self._users(batch["history_users"])
        if self.residual:
            long_term = mean + self.user_layer(own)
        else:
            long_term = torch.relu(self.user_layer(torch.cat([own, mean], -1)))
        states, _ = self.lstm(clicked)  # padding follows the clicks: it never reaches an earlier state
        rows = torch.cat([long_term.unsqueeze(1), states * keep], 1)
        flags = torch.cat([torch.ones_like(mask[:, :1]), mask], 1).unsqueeze(-1).to(clicked.dtype)
        return torch.cat([rows, flags], -1)

    def score_candidates(self, users: Tensor, candidates: Tensor, batch: NewsBatch) -> Tensor:
        """``users [B, 1 + H, d + 1]``, ``candidates [B, C, d]`` → ``[B, C]`` (class docstring)."""
        long_term, states, mask = users[:, 0, :-1], users[:, 1:, :-1], users[:, 1:, -1] > 0
        out = []
        for start in range(0, candidates.shape[1], self.candidate_chunk):
            c = candidates[:, start : start + self.candidate_chunk]  # [B, C', d]
            weights = masked_softmax(torch.einsum("bhd,bcd->bch", states, self.query(c)), mask.unsqueeze(1))
            short_term = torch.einsum("bch,bhd->bcd", weights, states)  # [B, C', d]
            if self.residual:
                user = long_term.unsqueeze(1) + self.combine(short_term)
            else:
                user = self.combine(torch.cat([long_term.unsqueeze(1).expand_as(short_term), short_term], -1))
            out.append((user * c).sum(-1))
        return torch.cat(out, 1)
