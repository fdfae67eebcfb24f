"""User-as-Graph (Wu et al., IJCAI 2021): each user a personal heterogeneous graph, pooled."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from newsrec.core import DataRequirements
from newsrec.models.base import NewsRecModel, gather_rows
from newsrec.nn import learned_embedding
from newsrec.nn.hetero_pool import HeteroDenseConv, hetero_dense_pool

__all__ = ["UserAsGraph", "personal_graphs"]

#: node types of a personal graph, in the order of their slots
NODE_TYPES = ("news", "topic", "entity")
#: relations (each an adjacency of its own): consecutive clicks, news–topic, news–entity
RELATIONS = ("next", "topic", "entity")


def personal_graphs(
    history: Tensor, history_mask: Tensor, categories: Tensor, entities: Tensor, num_categories: int
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Each user's graph as dense blocks (vectorised over the batch).

    Slots per user: ``H`` clicked news (in click order), ``num_categories`` topics (present
    where a click has that category), then the user's distinct entities (``E_max``: the most any
    user of the batch has). Edges, symmetric, one adjacency per relation: consecutive clicks,
    news–topic, news–entity.

    Args:
        history, history_mask: ``[B, H]``.
        categories: ``[B, H]`` the clicks' categories; ``entities``: ``[B, H, E]`` (0 = none).
        num_categories: ``T``.

    Returns:
        ``(adjacency [3, B, N, N], node_mask [B, N], node_type [B, N] (0 news, 1 topic, 2 entity),
        topic_ids [T], entity_ids [B, E_max])`` with ``N = H + T + E_max``.
    """
    B, H = history.shape
    T, device = num_categories, history.device
    real = history_mask
    # distinct entities per user: sorted (user, entity) keys, ranked within the user
    ent = torch.where(real.unsqueeze(-1), entities, torch.zeros_like(entities))
    width = int(ent.max()) + 1 if ent.numel() else 1
    keys = torch.arange(B, device=device).view(B, 1, 1) * width + ent
    valid = ent > 0
    uniq, inverse = torch.unique(keys[valid], return_inverse=True)
    owner = uniq // width
    first = torch.searchsorted(uniq, owner * width)
    rank = torch.arange(len(uniq), device=device) - first
    e_max = int(rank.max()) + 1 if len(uniq) else 0
    entity_ids = torch.zeros(B, e_max, dtype=torch.long, device=device)
    entity_ids[owner, rank] = uniq % width
    N = H + T + e_max
    adjacency = torch.zeros(3, B, N, N, device=device)
    # consecutive clicks
    pair = real[:, 1:] & real[:, :-1]
    bb, hh = torch.nonzero(pair, as_tuple=True)
    adjacency[0, bb, hh, hh + 1] = adjacency[0, bb, hh + 1, hh] = 1.0
    # news - topic
    bb, hh = torch.nonzero(real, as_tuple=True)
    tt = H + categories[bb, hh].clamp(0, T - 1)
    adjacency[1, bb, hh, tt] = adjacency[1, bb, tt, hh] = 1.0
    # news - entity
    bb, hh, _ = torch.nonzero(valid, as_tuple=True)
    slot = H + T + rank[inverse]
    adjacency[2, bb, hh, slot] = adjacency[2, bb, slot, hh] = 1.0
    topic_present = adjacency[1, :, H : H + T].sum(-1) > 0
    entity_present = entity_ids > 0
    node_mask = torch.cat([real, topic_present, entity_present], 1)
    node_type = torch.cat([torch.zeros(H), torch.ones(T), torch.full((e_max,), 2.0)]).to(device).long()
    return adjacency, node_mask, node_type.expand(B, N), torch.arange(T, device=device), entity_ids


class UserAsGraph(NewsRecModel):
    r"""User-as-Graph: each user is a personal heterogeneous graph (:func:`personal_graphs`: the
    clicked news, their topics and their entities; consecutive-click, news–topic and
    news–entity edges), encoded by a heterogeneous graph convolution and pooled hierarchically,
    with assignments computed by graph convolutions whose weights depend on the node type,
    level after level down to one node: the user vector. The score is its inner product with the
    candidate's news vector.

    Level 0, the personal graph (``N`` nodes of 3 types, ``R = 3`` relations,
    :class:`~newsrec.nn.hetero_pool.HeteroDenseConv`, mean aggregation per relation)::

    .. math::
        \mathbf{H}^{(0)} = [\mathbf{t}_{clicks};\ \mathbf{e}_{topics};\ \mathbf{P}\mathbf{e}_{entities}],
        \qquad \mathbf{H} = \operatorname{ReLU}(\operatorname{HGC}(\mathbf{H}^{(0)}, \{\mathbf{A}_r\})),

    then, for every level :math:`l` with :math:`K_l` clusters (``cluster_sizes``, the last 1):

    .. math::
        \mathbf{Z}_l = \operatorname{ReLU}(\operatorname{HGC}^{emb}_l(\mathbf{H}_l, \mathbf{A}_l)), \qquad
        \mathbf{S}_l = \operatorname{softmax}(\operatorname{HGC}^{assign}_l(\mathbf{H}_l, \mathbf{A}_l)), \qquad
        \mathbf{H}_{l+1} = \operatorname{diag}(\mathbf{S}_l^\top\mathbf{1})^{-1}\mathbf{S}_l^\top\mathbf{Z}_l, \quad
        \mathbf{A}_{l+1} = \mathbf{S}_l^\top\mathbf{A}_l\mathbf{S}_l

    (:func:`~newsrec.nn.hetero_pool.hetero_dense_pool`). At level 0 both convolutions are
    heterogeneous (a weight per relation, a self weight per node type: the type-aware
    assignment); the pooled graphs have one node type and one (weighted) relation. The user is
    :math:`\mathbf{H}_L` ``[B, 1, dim]``.

    News are encoded by the title encoder; topic nodes are MIND's categories, their table
    starting small (±0.05); entity vectors start from the data's TransE vectors, projected to
    ``dim``. Every user's graph is dense, padded to the batch's largest and masked (missing
    clicks, absent topics, spare entity slots hold no mass at any level), so a user's vector never
    depends on the other users of the batch; an empty history gives the zero vector. Cacheable.
    (DiffPool's auxiliary link and entropy losses are not used.)

    Args:
        cluster_sizes: clusters per pooling level, ending with 1 (``(4, 1)``).
        entity_dim: entity vector size (100, TransE's on MIND).
        **kwargs: the :class:`NewsRecModel` arguments.

    Shapes: ``title [U, L]``, ``category [U]``, ``entities [U, E]`` → news ``[U, dim]``;
    ``history [B_u, H]`` → graphs of ``N = H + T + E_max`` nodes → users ``[B_u, dim]``.
    """

    def __init__(self, cluster_sizes: tuple[int, ...] | list[int] = (4, 1), entity_dim: int = 100, **kwargs) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters()
        cluster_sizes = tuple(int(k) for k in cluster_sizes)
        if not cluster_sizes or cluster_sizes[-1] != 1 or min(cluster_sizes) < 1:
            raise ValueError(f"cluster_sizes must be positive and end with 1 (one user node), got {cluster_sizes}")
        self.cluster_sizes = cluster_sizes
        dim, R, T = self.dim, len(RELATIONS), len(NODE_TYPES)
        self.news_encoder = self.text_encoder()
        self.topic_embedding = learned_embedding(self.num_categories, dim)
        self.entity_embedding = nn.Embedding(self.num_entity_ids, entity_dim, padding_idx=0)
        self.entity_projection = nn.Linear(entity_dim, dim)
        self.graph_conv = HeteroDenseConv(dim, dim, R, T)
        levels = [(R, T)] + [(1, 1)] * (len(cluster_sizes) - 1)
        self.pool_embed = nn.ModuleList(HeteroDenseConv(dim, dim, r, t) for r, t in levels)
        self.pool_assign = nn.ModuleList(HeteroDenseConv(dim, k, r, t) for (r, t), k in zip(levels, cluster_sizes))

    def data_requirements(self) -> DataRequirements:
        fields = (self.text_field("title"), "category", "entities")
        return DataRequirements(news_fields=fields, text_tokenizer=self.text_tokenizer())

    def pretrained_embeddings(self) -> dict[str, list[nn.Embedding]]:
        return {**super().pretrained_embeddings(), "entities": [self.entity_embedding]}

    def encode_news(self, news: dict[str, Tensor], history_news: Tensor | None = None) -> Tensor:
        return self.news_encoder(news[self.text_field("title")])

    def encode_users(self, batch: dict, history_news: Tensor) -> Tensor:
        history, mask = batch["history"], batch["history_mask"]
        categories = gather_rows(batch["news"]["category"], history)
        entities = gather_rows(batch["news"]["entities"], history)
        adjacency, node_mask, node_type, topics, entity_ids = personal_graphs(
            history, mask, categories, entities, self.num_categories
        )
        news = gather_rows(history_news, history)  # [B, H, d]
        topic_vectors = self.topic_embedding(topics).to(news.dtype).expand(len(history), -1, -1)
        entity_vectors = self.entity_projection(self.entity_embedding(entity_ids)).to(news.dtype)
        x = torch.cat([news, topic_vectors, entity_vectors], 1)  # [B, N, d]
        h = torch.relu(self.graph_conv(x, adjacency, node_mask, node_type))
        types = node_type
        for embed, assign in zip(self.pool_embed, self.pool_assign):
            z = torch.relu(embed(h, adjacency, node_mask, types))
            logits = assign(h, adjacency, node_mask, types)
            h, adjacency, node_mask = hetero_dense_pool(z, logits, adjacency, node_mask)
            types = None
        return h[:, 0] * node_mask[:, :1].to(h.dtype)
