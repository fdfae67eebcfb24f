"""HieRec (Qi et al., ACL 2021): hierarchical user interest modelling."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from newsrec.core import DataRequirements, NewsBatch
from newsrec.models.base import NewsRecModel, gather_rows
from newsrec.nn import masked_softmax

__all__ = ["HieRec"]


class GroupAttention(nn.Module):
    r"""Attention pooling inside groups: for every group ``g`` of a row (the zero vector for an
    empty group),

    .. math::
        \mathbf{v}_g = \sum_{i \in g} \operatorname{softmax}_{i \in g}\big(\mathbf{q}^\top
        \tanh(\mathbf{W}\mathbf{x}_i + \mathbf{b})\big)\,\mathbf{x}_i

    Shapes: ``x [B, N, d]``, ``membership`` bool ``[B, G, N]`` (True: item ``i`` is in group
    ``g``) → ``[B, G, d]``.
    """

    def __init__(self, in_dim: int, hidden_dim: int = 200) -> None:
        super().__init__()
        self.proj = nn.Linear(in_dim, hidden_dim)
        self.query = nn.Linear(hidden_dim, 1, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.proj.reset_parameters()
        self.query.reset_parameters()

    def forward(self, x: Tensor, membership: Tensor) -> Tensor:
        logits = self.query(torch.tanh(self.proj(x))).squeeze(-1)  # [B, N]
        weights = masked_softmax(logits.unsqueeze(1).expand_as(membership), membership)
        return torch.einsum("bgn,bnd->bgd", weights, x)


class HieRec(NewsRecModel):
    r"""HieRec: three levels of user interest and a three-part matching score.

    A subtopic interest pools the user's clicked news of that subtopic and adds the subtopic's
    embedding; a topic interest pools the user's subtopic interests of that topic and adds the
    topic's embedding; the user interest pools the topic interests (:class:`GroupAttention`
    each). A candidate ``c`` of topic :math:`t_c` and subtopic :math:`s_c` is matched as

    .. math::
        \hat{s} = \lambda_t\, w_{t_c}\, (\mathbf{t}_{t_c}^\top \mathbf{c}) + \lambda_s\, w_{s_c}\,
        (\mathbf{s}_{s_c}^\top \mathbf{c}) + (1 - \lambda_t - \lambda_s)\,(\mathbf{u}^\top\mathbf{c})

    where :math:`w` is the share of the user's clicks in that topic or subtopic (0 when the user
    never clicked it), :math:`\lambda_t` = 0.15 and :math:`\lambda_s` = 0.7. A subtopic belongs to
    the topic of the news that carry it (MIND's subcategories nest in categories). News are
    encoded by newsrec's title encoder (``news_encoder``: GloVe words with self-attention, or a
    PLM).

    The user state is a table (``user_is_vector = False``): row 0 the user interest, rows
    ``1 … T`` the topic interests, rows ``T+1 … T+S`` the subtopic interests, each with its click
    share in the last column. It does not depend on the candidate, so every news is encoded once
    (cacheable), and serving scores every news from the table (no vector search): about
    ``(1 + T + S)(d + 1)`` floats per cached user (0.5 MB on MIND with d = 400: size
    ``user_cache_size`` for it).

    Args:
        topic_weight: :math:`\lambda_t` (0.15).
        subtopic_weight: :math:`\lambda_s` (0.7).
        **kwargs: the :class:`NewsRecModel` arguments.

    Shapes: ``title [U, L]``, ``category [U]``, ``subcategory [U]`` → news ``[U, d]``; users
    ``[B_u, 1 + T + S, d + 1]``; scores ``[B, C]``.
    """

    user_is_vector = False

    def __init__(self, topic_weight: float = 0.15, subtopic_weight: float = 0.7, **kwargs) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters()
        if topic_weight < 0 or subtopic_weight < 0 or topic_weight + subtopic_weight > 1:
            raise ValueError(
                f"topic_weight and subtopic_weight must be ≥ 0 with a sum ≤ 1, got {topic_weight}, {subtopic_weight}"
            )
        self.topic_weight, self.subtopic_weight = topic_weight, subtopic_weight
        dim, hidden = self.dim, self.attention_hidden
        self.news_encoder = self.text_encoder()
        self.topic_embedding = nn.Embedding(self.num_categories, dim)
        self.subtopic_embedding = nn.Embedding(self.num_subcategories, dim)
        self.subtopic_pooling = GroupAttention(dim, hidden)
        self.topic_pooling = GroupAttention(dim, hidden)
        self.user_pooling = GroupAttention(dim, hidden)

    def data_requirements(self) -> DataRequirements:
        fields = (self.text_field("title"), "category", "subcategory")
        return DataRequirements(news_fields=fields, text_tokenizer=self.text_tokenizer())

    def encode_news(self, news: dict[str, Tensor], history_news: Tensor | None = None) -> Tensor:
        return self.news_encoder(news[self.text_field("title")])

    def encode_users(self, batch: dict, history_news: Tensor) -> Tensor:
        history, mask = batch["history"], batch["history_mask"]
        clicked = gather_rows(history_news, history)  # [B, H, d]
        topics = gather_rows(batch["news"]["category"], history)  # [B, H]
        subtopics = gather_rows(batch["news"]["subcategory"], history)
        T, S = self.num_categories, self.num_subcategories
        in_subtopic = (subtopics.unsqueeze(1) == torch.arange(S, device=mask.device).view(1, S, 1)) & mask.unsqueeze(1)
        in_topic = (topics.unsqueeze(1) == torch.arange(T, device=mask.device).view(1, T, 1)) & mask.unsqueeze(1)
        subtopic_clicks, topic_clicks = in_subtopic.sum(-1), in_topic.sum(-1)  # [B, S], [B, T]
        has_subtopic, has_topic = subtopic_clicks > 0, topic_clicks > 0
        subtopic_interest = self.subtopic_pooling(clicked, in_subtopic) + self.subtopic_embedding.weight
        subtopic_interest = subtopic_interest * has_subtopic.unsqueeze(-1).to(clicked.dtype)
        topic_of = (in_subtopic * topics.unsqueeze(1)).amax(-1)  # [B, S]: the topic of each clicked subtopic
        nested = (topic_of.unsqueeze(1) == torch.arange(T, device=mask.device).view(1, T, 1)) & has_subtopic.unsqueeze(
            1
        )
        topic_interest = self.topic_pooling(subtopic_interest, nested) + self.topic_embedding.weight
        topic_interest = topic_interest * has_topic.unsqueeze(-1).to(clicked.dtype)
        user_interest = self.user_pooling(topic_interest, has_topic.unsqueeze(1))  # [B, 1, d]
        total = mask.sum(-1, keepdim=True).clamp_min(1).to(clicked.dtype)
        shares = torch.cat([torch.ones_like(total), topic_clicks / total, subtopic_clicks / total], 1)  # [B, 1+T+S]
        table = torch.cat([user_interest, topic_interest, subtopic_interest], 1)
        return torch.cat([table, shares.unsqueeze(-1)], -1)

    def score_candidates(self, users: Tensor, candidates: Tensor, batch: NewsBatch) -> Tensor:
        """The three-part score (class docstring): ``users [B, 1+T+S, d+1]``, ``candidates
        [B, C, d]``; the candidates' topics and subtopics come from the batch."""
        topics = gather_rows(batch["news"]["category"], batch["candidates"])  # [B, C]
        subtopics = gather_rows(batch["news"]["subcategory"], batch["candidates"]) + 1 + self.num_categories
        picked = torch.cat([torch.zeros_like(topics), topics + 1, subtopics], 1)  # [B, 3C] table rows
        rows = users.gather(1, picked.unsqueeze(-1).expand(-1, -1, users.shape[-1]))  # [B, 3C, d+1]
        rows = rows.view(len(topics), 3, topics.shape[1], -1).transpose(1, 2)  # [B, C, 3, d+1]
        matched = torch.einsum("bckd,bcd->bck", rows[..., :-1], candidates) * rows[..., -1]
        weights = matched.new_tensor(
            [1 - self.topic_weight - self.subtopic_weight, self.topic_weight, self.subtopic_weight]
        )
        return (matched * weights).sum(-1)
