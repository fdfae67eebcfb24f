"""GLORY (Yang et al., RecSys 2023): global graph-enhanced personalised news recommendation."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from newsrec.data.batching import DataRequirements
from newsrec.graphs.transitions import NUM_TRANSITION_FEATURES
from newsrec.models.base import NewsRecModel, gather_rows
from newsrec.nn import (
    EntityEncoder,
    GatedGraphEncoder,
    MultiViewCombiner,
    TextEncoder,
    TransitionScorer,
    UserEncoder,
)

__all__ = ["GLORY"]


_EDGE_WEIGHTINGS = {False: "none", True: "count", "none": "none", "count": "count", "mean": "mean"}


class GLORY(NewsRecModel):
    r"""GLORY: local news and entity encoders, a GGNN over each user's sampled subgraph of the
    global news graph, the global entity graph on the candidate side, attention aggregators and
    an NRMS user encoder.

    History side, for every clicked news :math:`k` (views combined by attention):
    :math:`\mathbf{n}_k = \operatorname{Att}([\mathbf{h}_{ln}; \mathbf{h}_{le}; \mathbf{h}_{gn}])`
    with :math:`\mathbf{h}_{ln}` the title encoder, :math:`\mathbf{h}_{le}` the entity encoder and
    :math:`\mathbf{h}_{gn}` the GGNN output at the news' node in the user's k-hop subgraph (nodes
    initialised with :math:`\mathbf{h}_{ln}`);
    :math:`\mathbf{u} = \operatorname{Att}(\operatorname{MHSA}(\mathbf{n}_1..\mathbf{n}_H))`.

    Candidate side: :math:`\mathbf{c} = \operatorname{Att}([\mathbf{h}^l_{nc}; \mathbf{h}^l_{ec}; \mathbf{h}^g_{ec}])`,
    :math:`\mathbf{h}^g_{ec}` encoding the top-:math:`M_e` entity-graph neighbours of the
    candidate's entities. Score :math:`s = \mathbf{u}^\top\mathbf{c}`.

    Args:
        num_words, num_entity_ids: vocabulary sizes (from the datamodule; ``num_categories`` and
            ``num_subcategories`` are accepted and unused).
        word_dim, entity_dim: embedding sizes (300 GloVe, 100 TransE).
        num_heads, head_dim: news/user self-attention (20 × 20 = 400 = the model size).
        entity_heads, entity_head_dim: entity self-attention (5 × 20).
        attention_hidden: additive attention hidden size (200).
        dropout: 0.2.
        length_buckets: texts are encoded in up to this many groups of similar length, each
            cut to its longest text, so padding is not computed (:class:`TextEncoder`; exact;
            default: 8 on the CPU, 1 on a GPU).
        use_news_graph: the global news graph view (ablation: False).
        use_entity_graph: the global entity graph view (ablation: False).
        graph_method: ``"dir_seq"`` | ``"undir_seq"`` | ``"co_occurrence"``.
        graph_self_loops: keep self-loops in the news graph (GLORY: yes).
        graph_direction: ``"in"``: each news gathers the news clicked just before it (official
            code); ``"out"``: the news clicked just after it (messages flow against the clicks).
        graph_edges: ``"induced"`` (paper) or ``"sampled"`` subgraph edges.
        num_graph_neighbors, num_graph_hops: M_n = 8, K_n = 2.
        ggnn_layers: 3.
        ggnn_edge_weights: how GGNN messages are weighted: ``False`` / ``"none"`` (official
            code: every neighbour counts alike), ``True`` / ``"count"`` (by click counts), or
            ``"mean"`` (by click counts divided by the counts of all the subgraph's edges into
            the same node, a weighted mean: a news' main transition is not outvoted by its
            one-off ones).
        entity_graph_method: ``"inter_news"`` (GLORY) or ``"intra_news"``.
        entity_graph_self_loops: keep ``e — e`` edges (GLORY: yes).
        num_entity_neighbors: M_e = 10.
        neighbor_cache_every: 0 (default) is the exact mode: every distinct news of a training
            batch is encoded with gradients. ``N > 0`` is the approximate mode: sampled neighbour
            nodes that are neither history nor candidate news take their vectors from a cache of
            every news, refreshed every ``N`` training steps, with no gradient through them
            (much cheaper when subgraphs are large).
        graph_score: **beyond the paper** (opt-in): add a learned, candidate-aware click-graph
            term to the score, :math:`s = \mathbf{u}^\top\mathbf{c} + g(u, c)`, a function of the
            transition counts between the user's ``graph_score_clicks`` most recent clicks and the
            candidate (:class:`~newsrec.nn.TransitionScorer`; sparse look-ups in the training
            click graph, made by the data side; a candidate with no edge gets
            :math:`g = 0`). The paper's score is the dot product alone.
        graph_score_clicks: ``m``, recent clicks the term looks at (50 = the history length).
        graph_score_hidden: hidden size of the term's MLP (16).
        user_recency: **beyond the paper** (opt-in): a learned recency embedding added to each
            clicked news before the user encoder (:class:`~newsrec.nn.UserEncoder`'s
            ``recency_positions``), so the user vector can weigh the last clicks more.
        pretrained_words, pretrained_entities: initialise embeddings from GloVe / TransE.
        lr: 2e-4 (paper); other :class:`NewsRecModel` arguments as there.
    """

    history_is_candidate = False

    def __init__(
        self,
        num_words: int = 2,
        num_entity_ids: int = 2,
        num_categories: int = 2,
        num_subcategories: int = 2,
        word_dim: int = 300,
        entity_dim: int = 100,
        num_heads: int = 20,
        head_dim: int = 20,
        entity_heads: int = 5,
        entity_head_dim: int = 20,
        attention_hidden: int = 200,
        dropout: float = 0.2,
        length_buckets: int | None = None,
        use_news_graph: bool = True,
        use_entity_graph: bool = True,
        graph_method: str = "dir_seq",
        graph_self_loops: bool = True,
        graph_direction: str = "in",
        graph_edges: str = "induced",
        num_graph_neighbors: int = 8,
        num_graph_hops: int = 2,
        ggnn_layers: int = 3,
        ggnn_edge_weights: bool | str = False,
        entity_graph_method: str = "inter_news",
        entity_graph_self_loops: bool = True,
        num_entity_neighbors: int = 10,
        neighbor_cache_every: int = 0,
        graph_score: bool = False,
        graph_score_clicks: int = 50,
        graph_score_hidden: int = 16,
        user_recency: bool = False,
        pretrained_words: bool = True,
        pretrained_entities: bool = True,
        freeze_words: bool = False,
        lr: float = 2e-4,
        warmup_fraction: float = 0.1,
        lr_schedule: str = "linear",
        weight_decay: float = 0.0,
        news_batch_size: int = 1024,
        beyond_accuracy: str = "test",
        beyond_accuracy_k: int = 10,
    ) -> None:
        super().__init__(
            lr=lr,
            warmup_fraction=warmup_fraction,
            lr_schedule=lr_schedule,
            weight_decay=weight_decay,
            news_batch_size=news_batch_size,
            beyond_accuracy=beyond_accuracy,
            beyond_accuracy_k=beyond_accuracy_k,
        )
        self.save_hyperparameters()
        self.pretrained_words, self.pretrained_entities = pretrained_words, pretrained_entities
        self.use_news_graph, self.use_entity_graph = use_news_graph, use_entity_graph
        dim = num_heads * head_dim
        self.dim = dim
        self.word_embedding = nn.Embedding(num_words, word_dim, padding_idx=0)
        self.word_embedding.weight.requires_grad_(not freeze_words)
        self.entity_embedding = nn.Embedding(num_entity_ids, entity_dim, padding_idx=0)
        self.title_encoder = TextEncoder(
            self.word_embedding, num_heads, head_dim, attention_hidden, dropout, length_buckets
        )
        self.entity_encoder = EntityEncoder(
            self.entity_embedding, dim, entity_heads, entity_head_dim, attention_hidden, dropout
        )
        weighting = _EDGE_WEIGHTINGS.get(ggnn_edge_weights) if isinstance(ggnn_edge_weights, (bool, str)) else None
        if weighting is None:
            raise ValueError(
                f"ggnn_edge_weights must be one of False, True, 'none', 'count', 'mean'; got {ggnn_edge_weights!r}"
            )
        self.graph_encoder = (
            GatedGraphEncoder(
                dim,
                dim,
                ggnn_layers,
                use_edge_weight=weighting != "none",
                normalize_edge_weight=weighting == "mean",
            )
            if use_news_graph
            else None
        )
        self.global_entity_encoder = (
            EntityEncoder(self.entity_embedding, dim, entity_heads, entity_head_dim, attention_hidden, dropout)
            if use_entity_graph
            else None
        )
        self.history_aggregator = MultiViewCombiner(dim, attention_hidden)
        self.candidate_aggregator = MultiViewCombiner(dim, attention_hidden)
        self.user_encoder = UserEncoder(
            dim, num_heads, head_dim, attention_hidden, recency_positions=graph_score_clicks if user_recency else 0
        )
        if graph_score_clicks < 1:
            raise ValueError(f"graph_score_clicks must be >= 1, got {graph_score_clicks}")
        if graph_score:
            self.transition_scorer = TransitionScorer(NUM_TRANSITION_FEATURES, graph_score_clicks, graph_score_hidden)
        self.neighbor_cache_every = neighbor_cache_every
        self._neighbor_cache: Tensor | None = None
        self._neighbor_cache_step = -1

    def data_requirements(self) -> DataRequirements:
        h = self.hparams
        news_graph = None
        if self.use_news_graph:
            news_graph = {
                "method": h.graph_method,
                "self_loops": h.graph_self_loops,
                "num_neighbors": h.num_graph_neighbors,
                "num_hops": h.num_graph_hops,
                "direction": h.graph_direction,
                "edges": h.graph_edges,
            }
        return DataRequirements(
            news_fields=("title", "entities"),
            news_graph=news_graph,
            entity_neighbors=h.num_entity_neighbors if self.use_entity_graph else None,
            entity_graph={"method": h.entity_graph_method, "self_loops": h.entity_graph_self_loops},
            transitions=h.graph_score_clicks if h.graph_score else None,
        )

    # -- approximate mode: cached neighbour vectors -------------------------------------------------
    def on_train_batch_start(self, batch: dict, batch_idx: int) -> None:
        super().on_train_batch_start(batch, batch_idx)
        every = self.neighbor_cache_every
        if every > 0 and (self._neighbor_cache is None or self.global_step - self._neighbor_cache_step >= every):
            dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
            if dm is not None and hasattr(dm, "news_dataloader"):
                was = self.training
                self.eval()
                _, self._neighbor_cache = self.encode_all_news(dm.news_dataloader(self.news_batch_size))
                self.train(was)
                self._neighbor_cache_step = self.global_step

    def encode_batch_news(self, batch: dict) -> Tensor:
        if not (self.training and self.neighbor_cache_every > 0 and self._neighbor_cache is not None):
            return super().encode_batch_news(batch)
        news, rows = batch["news"], batch["news_rows"]
        exact = torch.zeros(len(rows), dtype=torch.bool, device=rows.device)
        exact[batch["history"][batch["history_mask"]]] = True
        exact[batch["candidates"][batch["candidate_mask"]]] = True
        idx = torch.nonzero(exact).flatten()
        fresh = self.encode_history_news({k: v.index_select(0, idx) for k, v in news.items()})
        cached = self._neighbor_cache.index_select(0, rows).to(fresh.dtype)
        return cached.index_copy(0, idx, fresh)

    # -- protocol -----------------------------------------------------------------------------------
    def encode_history_news(self, news: dict[str, Tensor]) -> Tensor:
        """``[U, 2·dim]``: local title and local entity vectors, side by side."""
        return torch.cat([self.title_encoder(news["title"]), self.entity_encoder(news["entities"])], dim=-1)

    def encode_news(self, news: dict[str, Tensor], history_news: Tensor | None = None) -> Tensor:
        if history_news is None:
            history_news = self.encode_history_news(news)
        views = [history_news[:, : self.dim], history_news[:, self.dim :]]
        if self.global_entity_encoder is not None:
            nbr = news["entity_neighbors"]  # [U, E, M]
            views.append(self.global_entity_encoder(nbr.reshape(len(nbr), -1)))
        return self.candidate_aggregator(torch.stack(views, dim=1))

    def encode_users(self, batch: dict, history_news: Tensor) -> Tensor:
        hist = batch["history"]
        local = history_news[:, : self.dim]
        views = [gather_rows(local, hist), gather_rows(history_news[:, self.dim :], hist)]
        if self.graph_encoder is not None:
            views.append(self._graph_view(batch["subgraph"], local, hist.shape))
        news = self.history_aggregator(torch.stack(views, dim=2))  # [B_u, L, dim]
        return self.user_encoder(news, batch["history_mask"])

    def _graph_view(self, subgraph, local: Tensor, shape: torch.Size) -> Tensor:
        """GGNN over the batch's disjoint subgraphs; the output at each history entry's node."""
        num_nodes = int(subgraph.n_id.numel())
        if num_nodes == 0:
            return local.new_zeros(*shape, self.dim)
        x = local.index_select(0, subgraph.node_index)
        pos = subgraph.history_position
        # only the history nodes' outputs are used: the GGNN updates just what they depend on
        out = self.graph_encoder(x, subgraph.edge_index, subgraph.edge_weight.to(x.dtype), output_nodes=pos[pos >= 0])
        return gather_rows(out, pos.clamp_min(0)) * (pos >= 0).unsqueeze(-1).to(out.dtype)
