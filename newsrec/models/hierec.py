"""HieRec (Qi et al., ACL 2021): hierarchical user interest modelling, as the official code
(``taoqi98/HieRec``, Keras) builds it."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from newsrec.core import DataRequirements, NewsBatch
from newsrec.models.base import NewsRecModel, gather_rows
from newsrec.nn import AdditiveAttention, MultiHeadSelfAttention, masked_softmax
from newsrec.nn.embedding import learned_embedding

__all__ = ["HieRec", "GroupAttention", "ClickCountScore"]

#: the official code's click-count table has 51 rows (0 … 50 clicks: its history length)
MAX_COUNT = 50


class ClickCountScore(nn.Module):
    r"""A learned attention score per click count (the official HieRec's ``Embedding(51, 128)``
    then ``Dense(1)``, shared by the topic and the user level):
    :math:`c(n) = \mathbf{w}^\top \mathbf{E}[\min(n, 50)] + b`.

    Shapes: ``counts`` long ``[...]`` → ``[...]``.
    """

    def __init__(self, dim: int = 128, max_count: int = MAX_COUNT) -> None:
        super().__init__()
        self.max_count = max_count
        self.embedding = learned_embedding(max_count + 1, dim, padding_idx=None)  # Keras uniform ±0.05
        self.score = nn.Linear(dim, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.embedding.reset_parameters()
        nn.init.xavier_uniform_(self.score.weight)  # Keras Dense: glorot uniform, zero bias
        nn.init.zeros_(self.score.bias)

    def forward(self, counts: Tensor) -> Tensor:
        return self.score(self.embedding(counts.clamp(0, self.max_count))).squeeze(-1)


class GroupAttention(nn.Module):
    r"""Attention pooling inside groups with a linear, zero-initialised score (the official
    HieRec's ``Dense(1, use_bias=False)`` started at zero) plus an optional extra score per item
    (the click-count score): for every group ``g`` of a row,

    .. math::
        \mathbf{v}_g = \sum_{i \in g} \operatorname{softmax}_{i \in g}\big(\mathbf{w}^\top
        \mathbf{x}_i + c_i\big)\,\mathbf{x}_i

    (the zero vector for an empty group). At the start every weight inside a group is equal.

    Shapes: ``x [B, N, d]``, ``membership`` bool ``[B, G, N]`` (True: item ``i`` is in group
    ``g``), ``extra`` ``[B, N]`` or ``None`` → ``[B, G, d]``.
    """

    def __init__(self, in_dim: int) -> None:
        super().__init__()
        self.score = nn.Linear(in_dim, 1, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.score.weight)

    def forward(self, x: Tensor, membership: Tensor, extra: Tensor | None = None) -> Tensor:
        logits = self.score(x).squeeze(-1)  # [B, N]
        if extra is not None:
            logits = logits + extra
        weights = masked_softmax(logits.unsqueeze(1).expand_as(membership), membership)
        return torch.einsum("bgn,bnd->bgd", weights, x)


class HieRec(NewsRecModel):
    r"""HieRec: three levels of user interest and a three-part matching score, as the official
    code builds it.

    **News** (official ``get_doc_encoder``): the title encoder (words → multi-head
    self-attention 20 × 20 → attention pooling) and an entity encoder (TransE vectors →
    self-attention 5 × 20 → attention pooling), concatenated and projected by a linear layer to
    the model size ``d``: :math:`\mathbf{n} = \mathbf{W}[\mathbf{h}_t; \mathbf{h}_e] + \mathbf{b}`;
    dropout ``news_dropout`` (0.25) on every news vector in training.

    **User** (official ``HirUserEncoder``): a subtopic interest pools the user's clicked news of
    that subtopic and adds the subtopic's embedding; a topic interest pools the user's subtopic
    interests of that topic, scored also by each subtopic's click count, and adds the topic's
    embedding; the user interest pools the topic interests, scored also by each topic's click
    count (:class:`GroupAttention` with zero-initialised linear scores, :class:`ClickCountScore`
    shared by both levels). The topic and subtopic tables start at zero, as the official code's.

    **Score** of a candidate ``c`` of topic :math:`t_c` and subtopic :math:`s_c`:

    .. math::
        \hat{s} = \lambda_t\, w_{t_c}\, (\mathbf{t}_{t_c}^\top \mathbf{c}) + \lambda_s\, w_{s_c}\,
        (\mathbf{s}_{s_c}^\top \mathbf{c}) + \lambda_u\,(\mathbf{u}^\top\mathbf{c}),
        \qquad \lambda_u = 1 - \lambda_t - \lambda_s

    where :math:`w` is the share of the user's clicks in that topic or subtopic (0 when the user
    never clicked it), :math:`\lambda_t` = 0.15 and :math:`\lambda_s` = 0.7. In training the
    official code divides the weights by :math:`\lambda_u` (its ``Weighter``: 1, 1, 0.7 / 0.15)
    and zeroes both shares of a user with probability ``interest_mask`` (0.9999: it trains on the
    user-level score alone, the topic and subtopic interests learning through the user level);
    ``interest_mask=0`` trains the three-part score as the paper writes it. A subtopic belongs
    to the topic of the news that carry it (MIND's subcategories nest in categories).

    The user state is a table (``user_is_vector = False``): row 0 the user interest, rows
    ``1 … T`` the topic interests, rows ``T+1 … T+S`` the subtopic interests, each with its click
    share in the last column. It does not depend on the candidate, so every news is encoded once
    (cacheable), and serving scores every news from the table (no vector search): about
    ``(1 + T + S)(d + 1)`` floats per cached user (0.5 MB on MIND with d = 400: size
    ``user_cache_size`` for it).

    Remaining differences from the official code (docs/models/fidelity.md#hierec): the title
    self-attention has zero-initialised Q/K/V biases and the attention poolings no score bias
    (newsrec's shared text encoder); the entity self-attention masks padded entities (the
    official one attends to them).

    Args:
        topic_weight: :math:`\lambda_t` (0.15).
        subtopic_weight: :math:`\lambda_s` (0.7).
        entity_dim: entity vector size (100, TransE's on MIND).
        entity_heads, entity_head_dim: the entity self-attention (5 × 20).
        count_dim: the click-count embedding size (128).
        news_dropout: dropout on the news vectors (0.25).
        interest_mask: the probability that a user's topic and subtopic shares are zeroed in
            training (official: 0.9999; 0: the paper's three-part training score).
        pretrained_entities: start the entity table from the data's TransE vectors.
        **kwargs: the :class:`NewsRecModel` arguments.

    Shapes: ``title [U, L]``, ``entities [U, E]``, ``category [U]``, ``subcategory [U]`` → news
    ``[U, d]``; users ``[B_u, 1 + T + S, d + 1]``; scores ``[B, C]``.
    """

    user_is_vector = False

    def __init__(
        self,
        topic_weight: float = 0.15,
        subtopic_weight: float = 0.7,
        entity_dim: int = 100,
        entity_heads: int = 5,
        entity_head_dim: int = 20,
        count_dim: int = 128,
        news_dropout: float = 0.25,
        interest_mask: float = 0.9999,
        pretrained_entities: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters()
        if topic_weight < 0 or subtopic_weight < 0 or topic_weight + subtopic_weight > 1:
            raise ValueError(
                f"topic_weight and subtopic_weight must be ≥ 0 with a sum ≤ 1, got {topic_weight}, {subtopic_weight}"
            )
        if not 0.0 <= interest_mask <= 1.0:
            raise ValueError(f"interest_mask is a probability, got {interest_mask}")
        self.topic_weight, self.subtopic_weight, self.interest_mask = topic_weight, subtopic_weight, interest_mask
        self.pretrained_entities = pretrained_entities
        dim, hidden = self.dim, self.attention_hidden
        self.news_encoder = self.text_encoder()
        self.entity_embedding = nn.Embedding(self.num_entity_ids, entity_dim, padding_idx=0)
        self.entity_attention = MultiHeadSelfAttention(entity_dim, entity_heads, entity_head_dim, bias=False)
        self.entity_pooling = AdditiveAttention(entity_heads * entity_head_dim, hidden)
        self.news_projection = nn.Linear(dim + entity_heads * entity_head_dim, dim)
        self.news_dropout = nn.Dropout(news_dropout)
        self.entity_dropout = nn.Dropout(self.dropout_rate)
        self.topic_embedding = learned_embedding(self.num_categories, dim, init="zeros")
        self.subtopic_embedding = learned_embedding(self.num_subcategories, dim, init="zeros")
        self.subtopic_pooling = GroupAttention(dim)
        self.topic_pooling = GroupAttention(dim)
        self.user_pooling = GroupAttention(dim)
        self.count_score = ClickCountScore(count_dim)

    def data_requirements(self) -> DataRequirements:
        fields = (self.text_field("title"), "entities", "category", "subcategory")
        return DataRequirements(news_fields=fields, text_tokenizer=self.text_tokenizer())

    def pretrained_embeddings(self) -> dict[str, list[nn.Embedding]]:
        tables = super().pretrained_embeddings()
        if self.pretrained_entities:
            tables["entities"] = [self.entity_embedding]
        return tables

    def encode_entities(self, entities: Tensor) -> Tensor:
        """``[U, E] → [U, entity_heads · entity_head_dim]`` (zeros for a news without entities)."""
        mask = entities != 0
        x = self.entity_dropout(self.entity_embedding(entities))
        x = self.entity_dropout(self.entity_attention(x, mask))
        return self.entity_pooling(x, mask)

    def encode_news(self, news: dict[str, Tensor], history_news: Tensor | None = None) -> Tensor:
        title = self.news_encoder(news[self.text_field("title")])
        vector = self.news_projection(torch.cat([title, self.encode_entities(news["entities"])], -1))
        return self.news_dropout(vector)

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
        arange_t = torch.arange(T, device=mask.device).view(1, T, 1)
        nested = (topic_of.unsqueeze(1) == arange_t) & has_subtopic.unsqueeze(1)
        topic_interest = self.topic_pooling(subtopic_interest, nested, self.count_score(subtopic_clicks))
        topic_interest = (topic_interest + self.topic_embedding.weight) * has_topic.unsqueeze(-1).to(clicked.dtype)
        user_interest = self.user_pooling(topic_interest, has_topic.unsqueeze(1), self.count_score(topic_clicks))
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
        shares = rows[..., -1]  # [B, C, 3]
        user_weight = 1 - self.topic_weight - self.subtopic_weight
        weights = shares.new_tensor([user_weight, self.topic_weight, self.subtopic_weight])
        if self.training:
            # the official training score: weights / λ_u, both shares of a user zeroed w.p. interest_mask
            weights = weights / user_weight if user_weight > 0 else weights
            if self.interest_mask > 0:
                keep = (torch.rand(len(shares), 1, 1, device=shares.device) >= self.interest_mask).to(shares.dtype)
                shares = torch.cat([shares[..., :1], shares[..., 1:] * keep], -1)
        matched = torch.einsum("bckd,bcd->bck", rows[..., :-1], candidates) * shares
        return (matched * weights).sum(-1)
