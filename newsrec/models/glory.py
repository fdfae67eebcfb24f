"""GLORY (Yang et al., RecSys 2023): global graph-enhanced personalised news recommendation."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from newsrec.core import DataRequirements, NewsGraphBuild, NewsGraphSampling
from newsrec.graphs.transitions import NUM_PAIR_FEATURES
from newsrec.models.base import NewsRecModel, gather_rows
from newsrec.nn import (
    EntityEncoder,
    MultiViewCombiner,
    TransitionScorer,
    UserEncoder,
    build_graph_encoder,
    check_graph_encoder,
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

    GLORY's own arguments follow; the shared ones (vocabulary sizes, ``word_dim`` = 300,
    ``num_heads`` × ``head_dim`` = 20 × 20 = the model size, ``attention_hidden`` = 200,
    ``dropout`` = 0.2, ``length_buckets``, ``pretrained_words``, ``freeze_words``, the optimiser's)
    are :class:`NewsRecModel`'s and arrive through ``**kwargs``.

    Args:
        entity_dim: entity embedding size (100, TransE).
        entity_heads, entity_head_dim: the local entity encoder's self-attention (5 × 20, the
            official ``int(entity_dim / head_dim)`` heads); the global entity encoder uses the
            model's ``num_heads × head_dim`` (20 × 20), as the official code.
        use_news_graph: the global news graph view (ablation: False).
        use_entity_graph: the global entity graph view (ablation: False).
        graph_method: ``"dir_seq"`` | ``"undir_seq"`` | ``"co_occurrence"``.
        graph_self_loops: keep self-loops in the news graph (GLORY: yes).
        graph_direction: ``"in"``: each news gathers the news clicked just before it (official
            code); ``"out"``: the news clicked just after it (messages flow against the clicks).
        graph_edges: ``"induced"`` (paper) or ``"sampled"`` subgraph edges.
        num_graph_neighbors, num_graph_hops: M_n = 8, K_n = 2.
        graph_encoder: the encoder over each user's subgraph: ``"ggnn"`` (the paper's gated
            graph network, default), or ``"gcn"``, ``"gat"``, ``"sage"``, ``"gin"`` from
            :mod:`torch_geometric.nn` with the same layer count and size
            (:func:`~newsrec.nn.build_graph_encoder`; the paper's comparison of graph encoders).
        ggnn_layers: layers of the graph encoder (3), whichever it is.
        ggnn_edge_weights: how graph messages are weighted (``ggnn``; ``gcn`` takes ``"count"``):
            ``False`` / ``"none"`` (official code: every neighbour counts alike), ``True`` /
            ``"count"`` (by click counts), or
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
        graph_score_fresh: **opt-in, experimental** (#49): the term knows what the graph has not
            seen (:class:`~newsrec.nn.TransitionScorer`'s ``fresh_aware``): the candidate's
            exposure beside the pair counts, and a learned constant for a candidate without any
            transition, so that "no edge yet" is not read as "nobody wants this". Measured: it
            lifts fresh-news AUC well above NRMS where the first form fell below it, but costs
            overall AUC on some worlds (old news without transitions get the constant too), so
            the first form (False) stays the default.
        graph_score_fresh_dropout: share of training candidates whose graph features are hidden
            as if fresh, which teaches that constant (0.2).
        user_recency: **beyond the paper** (opt-in): a learned recency embedding added to each
            clicked news before the user encoder (:class:`~newsrec.nn.UserEncoder`'s
            ``recency_positions``), so the user vector can weigh the last clicks more.
        pretrained_entities: initialise the entity table from TransE.
        **kwargs: the :class:`NewsRecModel` arguments (``lr`` defaults to 2e-4 and
            ``lr_schedule`` to ``"warmup_constant"`` with 10 % warm-up: the official code's Adam).
    """

    history_is_candidate = False
    base_defaults = {"lr": 2e-4, "lr_schedule": "warmup_constant"}

    def __init__(
        self,
        entity_dim: int = 100,
        entity_heads: int = 5,
        entity_head_dim: int = 20,
        pretrained_entities: bool = True,
        use_news_graph: bool = True,
        use_entity_graph: bool = True,
        graph_method: str = "dir_seq",
        graph_self_loops: bool = True,
        graph_direction: str = "in",
        graph_edges: str = "induced",
        num_graph_neighbors: int = 8,
        num_graph_hops: int = 2,
        graph_encoder: str = "ggnn",
        ggnn_layers: int = 3,
        ggnn_edge_weights: bool | str = False,
        entity_graph_method: str = "inter_news",
        entity_graph_self_loops: bool = True,
        num_entity_neighbors: int = 10,
        neighbor_cache_every: int = 0,
        graph_score: bool = False,
        graph_score_clicks: int = 50,
        graph_score_hidden: int = 16,
        graph_score_fresh: bool = False,
        graph_score_fresh_dropout: float = 0.2,
        user_recency: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters()
        self.pretrained_entities = pretrained_entities
        self.use_news_graph, self.use_entity_graph = use_news_graph, use_entity_graph
        dim, hidden, dropout = self.dim, self.attention_hidden, self.dropout_rate
        self.entity_embedding = nn.Embedding(self.num_entity_ids, entity_dim, padding_idx=0)
        # the official code's blocks: two LayerNorms in each text and entity encoder, no key
        # bias in the self-attention, a score bias in every attention pooling
        official = {"layer_norm": True, "key_bias": False, "score_bias": True}
        self.title_encoder = self.text_encoder(**official)
        self.entity_encoder = EntityEncoder(
            self.entity_embedding, dim, entity_heads, entity_head_dim, hidden, dropout, **official
        )
        weighting = _EDGE_WEIGHTINGS.get(ggnn_edge_weights) if isinstance(ggnn_edge_weights, (bool, str)) else None
        if weighting is None:
            raise ValueError(
                f"ggnn_edge_weights must be one of False, True, 'none', 'count', 'mean'; got {ggnn_edge_weights!r}"
            )
        check_graph_encoder(graph_encoder)
        self.graph_encoder = (
            build_graph_encoder(
                graph_encoder,
                dim,
                ggnn_layers,
                use_edge_weight=weighting != "none",
                normalize_edge_weight=weighting == "mean",
            )
            if use_news_graph
            else None
        )
        # the global entity encoder: the model's heads (20 x 20 = dim) over the neighbours, no projection
        self.global_entity_encoder = (
            EntityEncoder(
                self.entity_embedding, dim, self.num_heads, self.head_dim, hidden, dropout, project=False, **official
            )
            if use_entity_graph
            else None
        )
        self.history_aggregator = MultiViewCombiner(dim, hidden, score_bias=True)
        self.candidate_aggregator = MultiViewCombiner(dim, hidden, project=True, score_bias=True)
        self.user_encoder = UserEncoder(
            dim,
            self.num_heads,
            self.head_dim,
            hidden,
            recency_positions=graph_score_clicks if user_recency else 0,
            key_bias=False,
            score_bias=True,
        )
        if graph_score_clicks < 1:
            raise ValueError(f"graph_score_clicks must be >= 1, got {graph_score_clicks}")
        if graph_score:
            self.transition_scorer = TransitionScorer(
                NUM_PAIR_FEATURES, graph_score_clicks, graph_score_hidden, graph_score_fresh,
                graph_score_fresh_dropout if graph_score_fresh else 0.0,
            )  # fmt: skip
        self.neighbor_cache_every = neighbor_cache_every
        self._neighbor_cache: Tensor | None = None
        self._neighbor_cache_step = -1

    def data_requirements(self) -> DataRequirements:
        h = self.hparams
        build = sampling = None
        if self.use_news_graph:
            build = NewsGraphBuild(h.graph_method, h.graph_self_loops)
            sampling = NewsGraphSampling(h.num_graph_neighbors, h.num_graph_hops, h.graph_direction, h.graph_edges)
        return DataRequirements(
            news_fields=(self.text_field("title"), "entities"),
            news_graph=build,
            news_graph_sampling=sampling,
            entity_neighbors=h.num_entity_neighbors if self.use_entity_graph else None,
            entity_graph={"method": h.entity_graph_method, "self_loops": h.entity_graph_self_loops},
            transitions=h.graph_score_clicks if h.graph_score else None,
            text_tokenizer=self.text_tokenizer(),
        )

    def pretrained_embeddings(self) -> dict[str, list[nn.Embedding]]:
        tables = super().pretrained_embeddings()
        if self.pretrained_entities:
            tables["entities"] = [self.entity_embedding]
        return tables

    # -- approximate mode: cached neighbour vectors -------------------------------------------------
    def _neighbor_vectors(self) -> Tensor:
        """The approximate mode's cache of every news' history-side vectors, re-encoded when it
        is ``neighbor_cache_every`` training steps old."""
        if self._neighbor_cache is None or self.global_step - self._neighbor_cache_step >= self.neighbor_cache_every:
            chunks = self.news_chunks()
            if chunks is None:
                raise RuntimeError(
                    "GLORY's approximate mode (neighbor_cache_every > 0) encodes every news from the attached data: "
                    "call model.connect_data(dm) before training"
                )
            self._neighbor_cache = self.encode_all_news(chunks).history
            self._neighbor_cache_step = self.global_step
        return self._neighbor_cache

    def encode_batch_news(self, batch: dict) -> Tensor:
        if not (self.training and self.neighbor_cache_every > 0):
            return super().encode_batch_news(batch)
        neighbor_vectors = self._neighbor_vectors()
        news, rows = batch["news"], batch["news_rows"]
        exact = torch.zeros(len(rows), dtype=torch.bool, device=rows.device)
        exact[batch["history"][batch["history_mask"]]] = True
        exact[batch["candidates"][batch["candidate_mask"]]] = True
        idx = torch.nonzero(exact).flatten()
        fresh = self.encode_history_news({k: v.index_select(0, idx) for k, v in news.items()})
        cached = neighbor_vectors.index_select(0, rows).to(fresh.dtype)
        return cached.index_copy(0, idx, fresh)

    # -- protocol -----------------------------------------------------------------------------------
    #: the views packed side by side in the history-side vectors, ``dim`` wide each
    history_views = ("title", "entity")

    def encode_history_news(self, news: dict[str, Tensor]) -> Tensor:
        """``[U, 2·dim]``: the :attr:`history_views`, local title and local entity vectors,
        side by side (one tensor, so that the base class caches and gathers them as one;
        :meth:`split_history_views` takes them apart)."""
        title = self.title_encoder(news[self.text_field("title")])
        return torch.cat([title, self.entity_encoder(news["entities"])], dim=-1)

    def split_history_views(self, history_news: Tensor) -> tuple[Tensor, Tensor]:
        """``[U, 2·dim]`` → (title ``[U, dim]``, entity ``[U, dim]``)."""
        title, entity = torch.split(history_news, self.dim, dim=-1)
        return title, entity

    def encode_news(self, news: dict[str, Tensor], history_news: Tensor | None = None) -> Tensor:
        if history_news is None:
            history_news = self.encode_history_news(news)
        views = list(self.split_history_views(history_news))
        if self.global_entity_encoder is not None:
            nbr = news["entity_neighbors"]  # [U, E, M]
            views.append(self.global_entity_encoder(nbr.reshape(len(nbr), -1)))
        return self.candidate_aggregator(torch.stack(views, dim=1))

    def encode_users(self, batch: dict, history_news: Tensor) -> Tensor:
        hist = batch["history"]
        local, entity = self.split_history_views(history_news)
        views = [gather_rows(local, hist), gather_rows(entity, hist)]
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
