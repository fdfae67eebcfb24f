"""KRED (Liu et al., RecSys 2020): knowledge-aware document representation, as its official code
(``danyang-liu/KRED``) builds it for the user-to-item task."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from newsrec.core import DataRequirements
from newsrec.models.base import NewsRecModel, gather_rows
from newsrec.nn import learned_embedding, masked_softmax

__all__ = ["KRED", "KREDNewsEncoder", "KnowledgeGraphAttention"]

#: KRED's entity context fields (see newsrec.data.entity_alignment) and their table sizes: the
#: official position table has 1,000 rows (it uses 1 title, 2 abstract); counts and types are
#: bucketed by the data layer (at most 15 occurrences, 31 type ids)
CONTEXT_FIELDS = {"entity_positions": 1000, "entity_counts": 16, "entity_types": 32}
PREDICTORS = ("mlp", "dot")


def _mlp_score(in_dim: int, hidden: int) -> nn.Sequential:
    """The official code's two-layer score ``ReLU(W_2 ReLU(W_1 x + b_1) + b_2)``: ``[..., in] → [..., 1]``."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, 1), nn.ReLU())


class KnowledgeGraphAttention(nn.Module):
    r"""An entity enriched by its graph neighbours, KRED's KGAT layer (official ``model/KGAT.py``):

    .. math::
        \pi(e, n) = \operatorname{softmax}_{n \in N(e)}\big(\mathbf{w}_2^\top
        \operatorname{ReLU}(\mathbf{W}_1[\mathbf{e};\ \mathbf{n};\ \mathbf{r}] + \mathbf{b}_1) + b_2\big),
        \qquad \mathbf{e}' = \operatorname{ReLU}\big(\mathbf{W}_o\,[\mathbf{e};\
        \textstyle\sum_n \pi(e, n)\,\mathbf{n}] + \mathbf{b}_o\big)

    MIND ships no triples: one learned relation vector :math:`\mathbf{r}` stands for every edge
    (the official code reads fixed TransE relation vectors). Padded neighbours are masked (the
    official code's neighbour lists are always full).

    Args:
        entity_dim: :math:`d` (the output has the same size, as the official code's).
        hidden_dim: the attention's hidden size (the official ``layer_dim``, 128).

    Shapes: ``entity [..., d]``, ``neighbors [..., M, d]``, ``mask [..., M]`` → ``[..., d]``.
    """

    def __init__(self, entity_dim: int, hidden_dim: int = 128) -> None:
        super().__init__()
        self.relation = nn.Parameter(torch.zeros(entity_dim))
        self.attention = nn.Sequential(nn.Linear(3 * entity_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, 1))
        self.aggregate = nn.Linear(2 * entity_dim, entity_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.relation, std=0.01)
        for m in (*self.attention, self.aggregate):
            if isinstance(m, nn.Linear):
                m.reset_parameters()

    def forward(self, entity: Tensor, neighbors: Tensor, mask: Tensor) -> Tensor:
        relation = self.relation.expand_as(neighbors)
        pairs = torch.cat([entity.unsqueeze(-2).expand_as(neighbors), neighbors, relation], -1)
        weights = masked_softmax(self.attention(pairs).squeeze(-1), mask)
        pooled = torch.einsum("...m,...md->...d", weights, neighbors)
        return torch.relu(self.aggregate(torch.cat([entity, pooled], -1)))


class KREDNewsEncoder(nn.Module):
    r"""KRED's knowledge-aware document vector over a text vector :math:`\mathbf{v}` (official
    ``model/News_embedding.py``): the KGAT entities plus their context embeddings, distilled by
    an attention with the text, then a two-layer output:

    .. math::
        \mathbf{e}''_i &= \mathbf{e}'_i + \mathbf{p}_{pos(i)} + \mathbf{f}_{freq(i)} + \mathbf{t}_{type(i)}, \qquad
        \alpha_i = \operatorname{softmax}_i\big(\operatorname{ReLU}(\mathbf{w}_2^\top
        \operatorname{ReLU}(\mathbf{W}_1[\mathbf{e}''_i;\ \mathbf{v}] + \mathbf{b}_1) + b_2)\big) \\
        \mathbf{n} &= \tanh\big(\mathbf{W}_4 \operatorname{ReLU}(\mathbf{W}_3
        [\textstyle\sum_i \alpha_i\mathbf{e}''_i;\ \mathbf{v}] + \mathbf{b}_3) + \mathbf{b}_4\big)

    The context tables start xavier with gain 0.01 (the official ``xavier_normal_``; here its
    uniform form, of the same variance). Padded entities are masked (the official code attends to
    them): a news without entities gets a zero distilled vector and keeps its text.

    Args:
        text_dim: the text vector's size (the official code's 768-d sentence vector).
        entity_dim: the entity size; ``out_dim``: the news vector's (the official 100).
        hidden_dim: the attention's and output's hidden size (the official ``layer_dim``, 128).

    Shapes: ``text [U, t]``, ``entities [U, E, d]``, ``neighbors [U, E, M, d]``,
    ``neighbor_mask [U, E, M]``, ``context`` ``{field: [U, E]}``, ``entity_mask [U, E]`` → ``[U, out_dim]``.
    """

    def __init__(self, text_dim: int, entity_dim: int, out_dim: int, hidden_dim: int = 128) -> None:
        super().__init__()
        self.graph_attention = KnowledgeGraphAttention(entity_dim, hidden_dim)
        self.context = nn.ModuleDict(
            {f: learned_embedding(n, entity_dim, init="xavier_uniform", gain=0.01) for f, n in CONTEXT_FIELDS.items()}
        )
        self.distill = _mlp_score(text_dim + entity_dim, hidden_dim)
        self.output = nn.Sequential(
            nn.Linear(text_dim + entity_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, out_dim), nn.Tanh()
        )

    def forward(
        self,
        text: Tensor,
        entities: Tensor,
        neighbors: Tensor,
        neighbor_mask: Tensor,
        context: dict[str, Tensor],
        entity_mask: Tensor,
    ) -> Tensor:
        e = self.graph_attention(entities, neighbors, neighbor_mask)  # [U, E, d]
        for field, table in self.context.items():
            e = e + table(context[field].clamp(0, table.num_embeddings - 1))
        keys = torch.cat([e, text.unsqueeze(1).expand(-1, e.shape[1], -1)], -1)
        weights = masked_softmax(self.distill(keys).squeeze(-1), entity_mask)  # no entity: weights 0
        distilled = torch.einsum("ue,ued->ud", weights, e)
        return self.output(torch.cat([distilled, text], -1))


class KRED(NewsRecModel):
    r"""KRED as its official code builds it for the user-to-item task: a news' text vector
    :math:`\mathbf{v}` (newsrec's title encoder, GloVe or PLM, where the official code reads a
    fixed 768-d sentence-BERT vector) and its entities, each enriched by its entity-graph
    neighbours and by context embeddings of where it occurs (title, abstract or both), how often
    and its type (MIND's ``Type``), distilled into a ``news_dim`` vector
    (:class:`KREDNewsEncoder`). Clicked news pass through a **second** such encoder of their own
    (the official ``User_modeling`` builds its own ``News_embedding``; the text encoder is
    shared); the user is an attention over them, :math:`a_i = \operatorname{softmax}_i(\operatorname{ReLU}
    (\mathbf{w}_2^\top\operatorname{ReLU}(\mathbf{W}_1\mathbf{n}_i)))`;
    the score is the official MLP,
    :math:`s = \lambda\,\sigma(\mathbf{w}^\top\operatorname{ReLU}(\mathbf{W}[\mathbf{u};\ \mathbf{c}]))`
    with :math:`\lambda` = ``score_scale`` (the official ``smooth_lamda`` 10, applied before the
    softmax over the 1 + K candidates; newsrec's loss is its cross-entropy, the official code's
    a BCE on those probabilities).

    The user vector never depends on the candidates (cacheable), but with ``predictor="mlp"``
    the score is not an inner product: serving scores every news from the cached vectors
    (``user_is_vector`` False). ``predictor="dot"`` is the inner product of the paper's
    description. Kept differences, for correctness: the official user attention's softmax runs
    over the users of a batch (``nn.Softmax(dim=0)``), newsrec's over each user's clicks, masked,
    so a user's scores never depend on the other rows; padded entities and neighbours are masked.
    Entity vectors start from the data's TransE vectors and stay fixed (``freeze_entities``, as
    the official ``from_pretrained``); the neighbours are newsrec's click-built entity graph.

    Args:
        entity_dim: entity vector size (100, TransE's on MIND).
        num_entity_neighbors: graph neighbours per entity (20, official).
        news_dim: the news and user vectors' size (100, the official ``embedding_dim``).
        layer_dim: every hidden layer's size (128, the official ``layer_dim``).
        predictor: ``"mlp"`` (official) or ``"dot"``; ``score_scale``: :math:`\lambda` (10).
        user_news_encoder: the clicked news' own :class:`KREDNewsEncoder` (True, official);
            False shares the candidate's.
        freeze_entities: keep the entity vectors fixed (True, official).
        **kwargs: the :class:`NewsRecModel` arguments (``num_heads × head_dim`` is the text
            vector's size).

    Shapes: ``title [U, L]``, ``entities`` and the context fields ``[U, E]``,
    ``entity_neighbors [U, E, M]`` → news ``[U, news_dim]``; users ``[B_u, news_dim]``.
    """

    history_is_candidate = False
    base_defaults = {"lr": 2e-5, "warmup_fraction": 0.0, "lr_schedule": "constant"}

    def __init__(
        self,
        entity_dim: int = 100,
        num_entity_neighbors: int = 20,
        news_dim: int = 100,
        layer_dim: int = 128,
        predictor: str = "mlp",
        score_scale: float = 10.0,
        user_news_encoder: bool = True,
        freeze_entities: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters()
        if predictor not in PREDICTORS:
            raise ValueError(f"predictor must be one of {PREDICTORS}, got {predictor!r}")
        self.num_entity_neighbors, self.predictor_kind, self.score_scale = num_entity_neighbors, predictor, score_scale
        self.user_is_vector = predictor == "dot"
        self.news_encoder = self.text_encoder()
        self.entity_embedding = nn.Embedding(self.num_entity_ids, entity_dim, padding_idx=0)
        self.entity_embedding.weight.requires_grad_(not freeze_entities)
        self.candidate_encoder = KREDNewsEncoder(self.dim, entity_dim, news_dim, layer_dim)
        self.user_news_encoder = None
        if user_news_encoder:
            self.user_news_encoder = KREDNewsEncoder(self.dim, entity_dim, news_dim, layer_dim)
        self.user_attention = _mlp_score(news_dim, layer_dim)
        self.predictor = (
            nn.Sequential(nn.Linear(2 * news_dim, layer_dim), nn.ReLU(), nn.Linear(layer_dim, 1))
            if predictor == "mlp"
            else None
        )

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

    def _encode(self, encoder: KREDNewsEncoder, news: dict[str, Tensor]) -> Tensor:
        ids, neighbors = news["entities"], news["entity_neighbors"]
        return encoder(
            self.news_encoder(news[self.text_field("title")]),
            self.entity_embedding(ids),
            self.entity_embedding(neighbors),
            neighbors > 0,
            {f: news[f] for f in CONTEXT_FIELDS},
            ids > 0,
        )

    def encode_news(self, news: dict[str, Tensor], history_news: Tensor | None = None) -> Tensor:
        return self._encode(self.candidate_encoder, news)

    def encode_history_news(self, news: dict[str, Tensor]) -> Tensor:
        return self._encode(self.user_news_encoder or self.candidate_encoder, news)

    def encode_users(self, batch: dict, history_news: Tensor) -> Tensor:
        clicked = gather_rows(history_news, batch["history"])  # [B_u, H, news_dim]
        weights = masked_softmax(self.user_attention(clicked).squeeze(-1), batch["history_mask"])
        return torch.einsum("bh,bhd->bd", weights, clicked)

    def score(self, users: Tensor, candidates: Tensor) -> Tensor:
        """``users [B, d]``, ``candidates [B, C, d]`` → ``[B, C]``: the MLP's ``λ σ(·)``, or dot products."""
        if self.predictor is None:
            return super().score(users, candidates)
        pairs = torch.cat([users.unsqueeze(1).expand_as(candidates), candidates], -1)
        return self.score_scale * torch.sigmoid(self.predictor(pairs).squeeze(-1))
