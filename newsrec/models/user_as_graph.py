"""User-as-Graph (Wu et al., IJCAI 2021): each user a personal heterogeneous graph, pooled."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.nn import DenseGraphConv, dense_diff_pool

from newsrec.core import DataRequirements
from newsrec.models.base import NewsRecModel, gather_rows

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
    news–entity edges). A heterogeneous GNN (one PyG :class:`~torch_geometric.nn.DenseGraphConv`
    per relation, summed, over type-specific input projections) updates the nodes; a type-aware
    DiffPool (:func:`~torch_geometric.nn.dense_diff_pool`, the cluster assignment computed by a
    linear layer per node type) pools them into ``num_clusters`` nodes, a second GNN layer runs on
    the pooled graph, and a last pooling to one node (the mean of the clusters, weighted by the
    nodes they hold) gives the user vector; the score is the inner product with the news vector.

    .. math::
        \mathbf{h}'_i = \sum_{r} \Big(\mathbf{W}^r_1 \mathbf{h}_i
        + \mathbf{W}^r_2 \sum_{j \in N_r(i)} \mathbf{h}_j\Big), \qquad
        \mathbf{S} = \operatorname{softmax}\big(\mathbf{W}_{type(i)} \mathbf{h}'_i\big), \qquad
        \mathbf{X}' = \mathbf{S}^\top\mathbf{H}', \quad \mathbf{A}' = \mathbf{S}^\top\mathbf{A}\mathbf{S}

    News are encoded by newsrec's title encoder (GloVe words with self-attention, or a PLM);
    topics are MIND's categories; entity vectors start from the data's TransE vectors.
    Padding slots (missing clicks, absent topics, the batch's spare entity slots) are masked out
    of every step, so a user's vector never depends on the other users of the batch. An empty
    history gives the zero user vector. Cacheable. (DiffPool's auxiliary link and entropy losses
    are not used.)

    Args:
        num_clusters: nodes after the first pooling (4).
        entity_dim: entity vector size (100, TransE's on MIND).
        **kwargs: the :class:`NewsRecModel` arguments.

    Shapes: ``title [U, L]``, ``category [U]``, ``entities [U, E]`` → news ``[U, dim]``; users
    ``[B_u, dim]``.
    """

    def __init__(self, num_clusters: int = 4, entity_dim: int = 100, **kwargs) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters()
        dim = self.dim
        self.news_encoder = self.text_encoder()
        self.topic_embedding = nn.Embedding(self.num_categories, dim)
        self.entity_embedding = nn.Embedding(self.num_entity_ids, entity_dim, padding_idx=0)
        self.entity_projection = nn.Linear(entity_dim, dim)
        self.type_projection = nn.ModuleList(nn.Linear(dim, dim) for _ in NODE_TYPES)
        self.convs = nn.ModuleList(DenseGraphConv(dim, dim) for _ in RELATIONS)
        self.assignment = nn.ModuleList(nn.Linear(dim, num_clusters) for _ in NODE_TYPES)
        self.pooled_conv = DenseGraphConv(dim, dim)

    def data_requirements(self) -> DataRequirements:
        fields = (self.text_field("title"), "category", "entities")
        return DataRequirements(news_fields=fields, text_tokenizer=self.text_tokenizer())

    def pretrained_embeddings(self) -> dict[str, list[nn.Embedding]]:
        return {**super().pretrained_embeddings(), "entities": [self.entity_embedding]}

    def encode_news(self, news: dict[str, Tensor], history_news: Tensor | None = None) -> Tensor:
        return self.news_encoder(news[self.text_field("title")])

    @staticmethod
    def _by_type(modules: nn.ModuleList, x: Tensor, node_type: Tensor) -> Tensor:
        """``modules[t](x)`` at the nodes of type ``t``: ``x [B, N, d]``, ``node_type [B, N]``."""
        out = torch.stack([m(x) for m in modules], 0)  # [types, B, N, out]
        return out.gather(0, node_type.unsqueeze(0).unsqueeze(-1).expand(1, *out.shape[1:]))[0]

    def encode_users(self, batch: dict, history_news: Tensor) -> Tensor:
        history, mask = batch["history"], batch["history_mask"]
        categories = gather_rows(batch["news"]["category"], history)
        entities = gather_rows(batch["news"]["entities"], history)
        adjacency, node_mask, node_type, topics, entity_ids = personal_graphs(
            history, mask, categories, entities, self.num_categories
        )
        news = gather_rows(history_news, history)  # [B, H, d]
        x = torch.cat(
            [
                news,
                self.topic_embedding(topics).expand(len(history), -1, -1),
                self.entity_projection(self.entity_embedding(entity_ids)),
            ],
            1,
        )
        x = nn.functional.elu(self._by_type(self.type_projection, x, node_type))
        keep = node_mask.unsqueeze(-1).to(x.dtype)
        h = sum(conv(x, adj, node_mask) for conv, adj in zip(self.convs, adjacency)) * keep
        h = nn.functional.elu(h)
        assignment = self._by_type(self.assignment, h, node_type)
        pooled, pooled_adj, _, _ = dense_diff_pool(h, adjacency.sum(0), assignment, node_mask)
        mass = torch.softmax(assignment, -1).mul(keep).sum(1)  # [B, K]: the nodes each cluster holds
        pooled = self.pooled_conv(pooled, pooled_adj)  # linear: a ReLU here could zero every user vector
        total = mass.sum(-1, keepdim=True)
        return (pooled * mass.unsqueeze(-1)).sum(1) / total.clamp_min(1.0) * (total > 0).to(x.dtype)
