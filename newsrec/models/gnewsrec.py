"""GNewsRec (Hu et al., Information Processing & Management 2020): a user–news–topic graph for
long-term interest and an attention LSTM for short-term interest."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from newsrec.core import DataRequirements, NewsBatch
from newsrec.models.base import NewsRecModel, gather_rows
from newsrec.nn import masked_softmax

__all__ = ["GNewsRec"]


class GNewsRec(NewsRecModel):
    r"""GNewsRec over the training split's heterogeneous tripartite graph of users, news and
    topics (MIND's categories stand for the paper's LDA topics; the user–news edges are the click
    graph of :func:`~newsrec.graphs.bipartite_click_graph`, neighbours sampled once, seeded).

    A two-layer GNN: the first layer makes graph-enhanced news from a news' text, its topic and
    its clickers; the second makes the long-term user from its ID and its clicked news'
    graph-enhanced vectors. An LSTM over the recent clicks, attended with the candidate as the
    query, gives the short-term user:

    .. math::
        \mathbf{n}^g = \operatorname{ReLU}\big(\mathbf{W}_1[\mathbf{t}_n;\ \mathbf{e}_{topic(n)};\
        \operatorname{mean}_{v \in N(n)} \mathbf{e}_v]\big), \qquad
        \mathbf{u}^L = \operatorname{ReLU}\big(\mathbf{W}_2[\mathbf{e}_u;\
        \operatorname{mean}_{n \in N(u)} \mathbf{n}^g]\big),

    .. math::
        \mathbf{h}_{1..H} = \operatorname{LSTM}(\mathbf{n}^g_{1..H}), \qquad
        \mathbf{u}^S(c) = \sum_k \operatorname{softmax}_k(\mathbf{h}_k^\top \mathbf{W}_q \mathbf{c})\,
        \mathbf{h}_k, \qquad s = \big(\mathbf{W}_u[\mathbf{u}^L;\ \mathbf{u}^S(c)]\big)^\top \mathbf{c}

    **Not cacheable** (the short-term user depends on the candidate): evaluation and serving run
    the forward, exactly; candidates are scored ``candidate_chunk`` at a time. A fresh news (no
    clickers) keeps its text and topic; a user the training split lacks (ID row 0) its clicks.

    Args:
        num_neighbors: sampled clickers per news (15).
        candidate_chunk: candidates scored at a time (64).
        **kwargs: the :class:`NewsRecModel` arguments (``num_users`` among the data sizes).

    Shapes: ``title [U, L]``, ``category [U]``, ``news_clickers [U, M]`` → news ``[U, dim]``;
    users ``[B_u, 1 + H, dim + 1]`` (the long-term vector, then the LSTM states with the click
    mask); scores ``[B, C]``.
    """

    cacheable = False
    user_is_vector = False

    def __init__(self, num_neighbors: int = 15, candidate_chunk: int = 64, **kwargs) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters()
        dim = self.dim
        self.num_neighbors, self.candidate_chunk = num_neighbors, candidate_chunk
        self.news_encoder = self.text_encoder()
        self.topic_embedding = nn.Embedding(self.num_categories, dim, padding_idx=0)
        self.user_embedding = nn.Embedding(max(self.num_users, 1), dim, padding_idx=0)
        self.news_layer = nn.Linear(3 * dim, dim)
        self.user_layer = nn.Linear(2 * dim, dim)
        self.lstm = nn.LSTM(dim, dim, batch_first=True)
        self.query = nn.Linear(dim, dim, bias=False)
        self.combine = nn.Linear(2 * dim, dim)

    def data_requirements(self) -> DataRequirements:
        fields = (self.text_field("title"), "category", "news_clickers")
        return DataRequirements(
            news_fields=fields, text_tokenizer=self.text_tokenizer(), user_ids=True, user_news_graph=self.num_neighbors
        )

    def _users(self, ids: Tensor) -> Tensor:
        return self.user_embedding(ids.clamp(0, self.user_embedding.num_embeddings - 1))

    def encode_news(self, news: dict[str, Tensor], history_news: Tensor | None = None) -> Tensor:
        text = self.news_encoder(news[self.text_field("title")])
        clickers = news["news_clickers"]
        present = (clickers > 0).unsqueeze(-1).to(text.dtype)
        clicked_by = (self._users(clickers) * present).sum(1) / present.sum(1).clamp_min(1)
        return torch.relu(self.news_layer(torch.cat([text, self.topic_embedding(news["category"]), clicked_by], -1)))

    def encode_users(self, batch: dict, history_news: Tensor) -> Tensor:
        mask = batch["history_mask"]
        clicked = gather_rows(history_news, batch["history"])  # [B_u, H, d]
        keep = mask.unsqueeze(-1).to(clicked.dtype)
        mean = (clicked * keep).sum(1) / keep.sum(1).clamp_min(1)
        long_term = torch.relu(self.user_layer(torch.cat([self._users(batch["history_users"]), mean], -1)))
        states, _ = self.lstm(clicked)  # padding follows the clicks: it never reaches an earlier state
        rows = torch.cat([long_term.unsqueeze(1), states * keep], 1)
        flags = torch.cat([torch.ones_like(mask[:, :1]), mask], 1).unsqueeze(-1).to(clicked.dtype)
        return torch.cat([rows, flags], -1)

    def score_candidates(self, users: Tensor, candidates: Tensor, batch: NewsBatch) -> Tensor:
        """``users [B, 1 + H, d + 1]``, ``candidates [B, C, d]`` → ``[B, C]`` (class docstring)."""
        long_term, states, mask = users[:, 0, :-1], users[:, 1:, :-1], users[:, 1:, -1] > 0
        out = []
        for start in range(0, candidates.shape[1], self.candidate_chunk):
            c = candidates[:, start : start + self.candidate_chunk]
            weights = masked_softmax(torch.einsum("bhd,bcd->bch", states, self.query(c)), mask.unsqueeze(1))
            short_term = torch.einsum("bch,bhd->bcd", weights, states)
            user = self.combine(torch.cat([long_term.unsqueeze(1).expand_as(short_term), short_term], -1))
            out.append((user * c).sum(-1))
        return torch.cat(out, 1)
