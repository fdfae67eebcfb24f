"""KRED (Liu et al., RecSys 2020): knowledge-aware document representation."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from newsrec.core import DataRequirements
from newsrec.models.base import NewsRecModel, gather_rows
from newsrec.nn import AdditiveAttention, masked_softmax

__all__ = ["KRED", "KnowledgeGraphAttention"]

#: KRED's entity context fields (see newsrec.data.entity_alignment), their sizes
CONTEXT_FIELDS = {"entity_positions": 4, "entity_counts": 16, "entity_types": 32}


class KnowledgeGraphAttention(nn.Module):
    r"""An entity enriched by its graph neighbours with one learned relation :math:`\mathbf{r}`
    (KGAT's attention, KRED's entity representation layer):

    .. math::
        \pi(e, n) = \operatorname{softmax}_{n \in N(e)}\big((\mathbf{W} \mathbf{n})^\top
        \tanh(\mathbf{W}\mathbf{e} + \mathbf{r})\big), \qquad
        \mathbf{e}' = \operatorname{ReLU}\big(\mathbf{W}_o\,[\mathbf{e};\ \textstyle\sum_n \pi(e, n)\,\mathbf{n}]\big)

    Shapes: ``entity [..., d]``, ``neighbors [..., M, d]``, ``mask [..., M]`` → ``[..., out_dim]``.
    """

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.project = nn.Linear(in_dim, in_dim, bias=False)
        self.relation = nn.Parameter(torch.zeros(in_dim))
        self.output = nn.Linear(2 * in_dim, out_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.project.reset_parameters()
        nn.init.normal_(self.relation, std=0.01)
        self.output.reset_parameters()

    def forward(self, entity: Tensor, neighbors: Tensor, mask: Tensor) -> Tensor:
        query = torch.tanh(self.project(entity) + self.relation)
        weights = masked_softmax(torch.einsum("...md,...d->...m", self.project(neighbors), query), mask)
        pooled = torch.einsum("...m,...md->...d", weights, neighbors)
        return torch.relu(self.output(torch.cat([entity, pooled], -1)))


class KRED(NewsRecModel):
    r"""KRED: a news' text vector :math:`\mathbf{v}` (newsrec's title encoder, GloVe or PLM) and
    its entities, each enriched by its entity-graph neighbours (:class:`KnowledgeGraphAttention`)
    and by context embeddings of where it occurs (title, abstract or both), how often and its
    type (MIND's ``Type``); an attention with the text as query distils the entities:

    .. math::
        \mathbf{e}''_i = \mathbf{e}'_i + \mathbf{p}_{pos(i)} + \mathbf{f}_{freq(i)} + \mathbf{t}_{type(i)}, \qquad
        \alpha_i = \operatorname{softmax}_i\big(\mathbf{q}^\top
        \tanh(\mathbf{W}_e\mathbf{e}''_i + \mathbf{W}_v\mathbf{v})\big), \qquad
        \mathbf{n} = \tanh\big(\mathbf{W}_o[\mathbf{v};\ \textstyle\sum_i \alpha_i\mathbf{e}''_i]\big)

    The user is attention pooling over the clicked news; the score is the inner product
    (cacheable). Entity vectors start from the data's TransE vectors; the neighbours are
    newsrec's click-built entity graph (MIND ships no triples: one learned relation stands for
    all). The context comes from MIND's entity fields, aligned once in the data layer
    (:func:`~newsrec.data.entity_alignment.entity_context_arrays`).

    Args:
        entity_dim: entity vector size (100, TransE's on MIND).
        num_entity_neighbors: graph neighbours per entity (10).
        **kwargs: the :class:`NewsRecModel` arguments (the model size ``dim`` is the news size).

    Shapes: ``title [U, L]``, ``entities`` and the context fields ``[U, E]``,
    ``entity_neighbors [U, E, M]`` → news ``[U, dim]``; users ``[B_u, dim]``.
    """

    def __init__(self, entity_dim: int = 100, num_entity_neighbors: int = 10, **kwargs) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters()
        dim, hidden = self.dim, self.attention_hidden
        self.num_entity_neighbors = num_entity_neighbors
        self.news_encoder = self.text_encoder()
        self.entity_embedding = nn.Embedding(self.num_entity_ids, entity_dim, padding_idx=0)
        self.graph_attention = KnowledgeGraphAttention(entity_dim, dim)
        self.context = nn.ModuleDict({f: nn.Embedding(n, dim, padding_idx=0) for f, n in CONTEXT_FIELDS.items()})
        self.entity_key = nn.Linear(dim, hidden, bias=False)
        self.text_key = nn.Linear(dim, hidden)
        self.distill_query = nn.Linear(hidden, 1, bias=False)
        self.output = nn.Linear(2 * dim, dim)
        self.user_pooling = AdditiveAttention(dim, hidden)

    def data_requirements(self) -> DataRequirements:
        fields = (self.text_field("title"), "entities", *CONTEXT_FIELDS)
        return DataRequirements(
            news_fields=fields,
            text_tokenizer=self.text_tokenizer(),
            entity_neighbors=self.num_entity_neighbors,
            entity_graph={},
        )

    def pretrained_embeddings(self) -> dict[str, list[nn.Embedding]]:
        return {**super().pretrained_embeddings(), "entities": [self.entity_embedding]}

    def encode_news(self, news: dict[str, Tensor], history_news: Tensor | None = None) -> Tensor:
        text = self.news_encoder(news[self.text_field("title")])  # [U, d]
        ids, neighbors = news["entities"], news["entity_neighbors"]
        entities = self.graph_attention(self.entity_embedding(ids), self.entity_embedding(neighbors), neighbors > 0)
        for field, table in self.context.items():
            entities = entities + table(news[field].clamp(0, table.num_embeddings - 1))
        keys = torch.tanh(self.entity_key(entities) + self.text_key(text).unsqueeze(1))
        weights = masked_softmax(self.distill_query(keys).squeeze(-1), ids > 0)  # no entity: weights 0
        distilled = torch.einsum("ue,ued->ud", weights, entities)
        return torch.tanh(self.output(torch.cat([text, distilled], -1)))

    def encode_users(self, batch: dict, history_news: Tensor) -> Tensor:
        return self.user_pooling(gather_rows(history_news, batch["history"]), batch["history_mask"])
