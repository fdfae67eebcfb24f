"""GERL (Ge et al., WWW 2020): graph-enhanced user and news representations."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from newsrec.core import DataRequirements
from newsrec.models.base import NewsRecModel, gather_rows
from newsrec.nn import AdditiveAttention, learned_embedding

__all__ = ["GERL"]


class GERL(NewsRecModel):
    r"""GERL over the training split's user–news bipartite click graph
    (:func:`~newsrec.graphs.bipartite_click_graph`; neighbours sampled once at random, seeded:
    :func:`~newsrec.graphs.sample_bipartite_neighbors`), with the paper's views only, combined
    as the reference implementation ``zpqiu/GERL`` combines them (sums, then a dot product):

    - **News** ``n``: one hop, its own text view :math:`\mathbf{t}_n` (the title encoder's
      vector plus a topic embedding); two hops, the news co-clicked with it (clicked by its
      clickers), read twice: their ID embeddings and their text views, each attention pooled.
    - **User** ``u``: its ID embedding; one hop, its clicked news (their text views), attention
      pooled; two hops, its neighbour users (the other clickers of its clicked news), their ID
      embeddings attention pooled.

    .. math::
        \mathbf{u} = \operatorname{Att}_1(\mathbf{t}_{n \in N_1(u)}) + \mathbf{e}_u
        + \operatorname{Att}_2(\mathbf{e}_{v \in N_2(u)}), \qquad
        \mathbf{n} = \mathbf{t}_n + \operatorname{Att}_3(\mathbf{e}_{m \in N_2(n)})
        + \operatorname{Att}_4(\mathbf{t}_{m \in N_2(n)}), \qquad s = \mathbf{u}^\top\mathbf{n}

    with :math:`\operatorname{Att}(\mathbf{x}_{1..M}) = \sum_i \operatorname{softmax}_i(\mathbf{q}^\top
    \tanh(\mathbf{W}\mathbf{x}_i + \mathbf{b}))\,\mathbf{x}_i` over the present neighbours only.
    The ID tables have the model size ``dim`` and start :math:`\mathcal{N}(0, 1)` (PyTorch's
    default, as zpqiu's code; ``id_init`` changes it), and every ID vector is dropped out.

    The two-hop news' text views are encoded from the attached corpus (their titles and
    topics, read from :meth:`connect_data`'s data once, as the reference reads its title table,
    or given by :meth:`use_corpus`): connect the model to its data before encoding news. Rows the
    corpus lacks (news added later) and padding read as absent.

    **newsrec's option** ``clicker_view=True`` (off in the paper's config; newsrec's form before
    this round, whose checkpoints it loads with ``id_init="uniform"``): the candidate's one-hop
    clickers (their ID embeddings, attention pooled) join the news side, the two-hop news are
    read by ID only, and the ID views enter through projections without bias,
    :math:`\mathbf{n} = \mathbf{t}_n + \mathbf{W}_n[\operatorname{Att}(\mathbf{e}_{v \in N_1(n)});
    \operatorname{Att}_3(\cdot)]` and :math:`\mathbf{u} = \operatorname{Att}_1(\cdot) +
    \mathbf{W}_u[\mathbf{e}_u; \operatorname{Att}_2(\cdot)]`. It needs no attached corpus.

    Each side depends only on itself and the training graph: cacheable. A news outside the
    training graph (a fresh article) or a user outside it (ID row 0) keeps its text and history
    parts, so it gets a finite score through the text path.

    Args:
        num_neighbors: sampled neighbours per news (15).
        id_init: how the user and news ID tables start (``"normal"``: :math:`\mathcal{N}(0,1)`,
            the reference; ``"uniform"``: ±0.05).
        id_dropout: dropout on every ID vector looked up (the model's ``dropout`` by default).
        clicker_view: newsrec's candidate-clickers view and ID projections (above).
        **kwargs: the :class:`NewsRecModel` arguments (``num_users`` among the data sizes).

    Shapes: ``title [U, L]``, ``category [U]``, ``news_clickers [U, M]`` (user ids),
    ``news_coclicked [U, M]`` (corpus rows) → news ``[U, dim]``; ``history [B_u, H]``,
    ``history_users [B_u]`` → users ``[B_u, dim]``.
    """

    history_is_candidate = False

    def __init__(
        self,
        num_neighbors: int = 15,
        id_init: str = "normal",
        id_dropout: float | None = None,
        clicker_view: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters()
        dim, hidden = self.dim, self.attention_hidden
        self.num_neighbors, self.clicker_view = num_neighbors, clicker_view
        self.id_dropout = nn.Dropout(self.dropout_rate if id_dropout is None else id_dropout)
        self.news_encoder = self.text_encoder()
        self.topic_embedding = learned_embedding(self.num_categories, dim)
        self.user_embedding = learned_embedding(self.num_users, dim, init=id_init)
        self.news_id_embedding = learned_embedding(self.num_news, dim, init=id_init)
        self.clicked_pooling = AdditiveAttention(dim, hidden)  # Att_1
        self.neighbor_user_pooling = AdditiveAttention(dim, hidden)  # Att_2
        self.coclicked_pooling = AdditiveAttention(dim, hidden)  # Att_3 (IDs)
        if clicker_view:
            self.clicker_pooling = AdditiveAttention(dim, hidden)
            self.news_graph = nn.Linear(2 * dim, dim, bias=False)  # W_n
            self.user_graph = nn.Linear(2 * dim, dim, bias=False)  # W_u
        else:
            self.coclicked_text_pooling = AdditiveAttention(dim, hidden)  # Att_4 (text views)
        self._corpus: dict[str, Tensor] | None = None

    def data_requirements(self) -> DataRequirements:
        fields = (self.text_field("title"), "category", "news_clickers", "news_coclicked")
        return DataRequirements(
            news_fields=fields, text_tokenizer=self.text_tokenizer(), user_ids=True, user_news_graph=self.num_neighbors
        )

    def attach_data(self, inputs, *, init_pretrained: bool = False) -> None:
        super().attach_data(inputs, init_pretrained=init_pretrained)
        self._corpus = None  # read again from these data when first needed

    def use_corpus(self, news: dict[str, Tensor]) -> GERL:
        """Read the two-hop news' text views from ``news`` (``{field: [N, ...]}`` in corpus row
        order, with the title field and ``category``) instead of the attached data. Returns the
        model."""
        self._corpus = {f: torch.as_tensor(news[f]) for f in (self.text_field("title"), "category")}
        return self

    def _corpus_text(self, device: torch.device) -> dict[str, Tensor]:
        """Every corpus news' title tokens and topic (``{field: [N, ...]}``), read once from the
        attached data: what the two-hop news' text views are encoded from."""
        if self._corpus is None:
            if self._inputs is None:
                raise ValueError(
                    "GERL reads its two-hop neighbour news' titles from the corpus, but no data is attached: "
                    "call model.connect_data(dm) before encoding news"
                )
            fields = (self.text_field("title"), "category")
            parts: dict[str, list[Tensor]] = {f: [] for f in fields}
            for chunk in self._inputs.news_chunks(4096):
                for f in fields:
                    parts[f].append(torch.as_tensor(chunk["news"][f]))
            self._corpus = {f: torch.cat(v) for f, v in parts.items()}
        if next(iter(self._corpus.values())).device != device:
            self._corpus = {f: v.to(device) for f, v in self._corpus.items()}
        return self._corpus

    def _ids(self, table: nn.Embedding, ids: Tensor) -> Tensor:
        """Dropped-out ID vectors; ids the table lacks (added later) read as row 0."""
        return self.id_dropout(table(torch.where(ids < table.num_embeddings, ids, torch.zeros_like(ids))))

    def encode_history_news(self, news: dict[str, Tensor]) -> Tensor:
        """The text view ``t [U, dim]`` (title encoder + topic embedding)."""
        return self.news_encoder(news[self.text_field("title")]) + self.topic_embedding(news["category"])

    def encode_news(self, news: dict[str, Tensor], history_news: Tensor | None = None) -> Tensor:
        text = self.encode_history_news(news) if history_news is None else history_news  # [U, d]
        coclicked = news["news_coclicked"]  # [U, M] corpus rows, 0 = none
        two_hop_ids = self.coclicked_pooling(self._ids(self.news_id_embedding, coclicked), coclicked > 0)
        if self.clicker_view:
            clickers = news["news_clickers"]
            one_hop = self.clicker_pooling(self._ids(self.user_embedding, clickers), clickers > 0)
            return text + self.news_graph(torch.cat([one_hop, two_hop_ids], -1))
        corpus = self._corpus_text(coclicked.device)
        rows = torch.where(coclicked < len(corpus["category"]), coclicked, torch.zeros_like(coclicked))
        present = rows > 0
        where = present.reshape(-1).nonzero().squeeze(1)
        views = text.new_zeros(rows.numel(), text.shape[-1])
        if len(where):  # only the present neighbours are encoded
            keep = rows.reshape(-1).index_select(0, where)
            encoded = self.encode_history_news({f: v.index_select(0, keep) for f, v in corpus.items()})
            views = views.to(encoded.dtype).index_copy(0, where, encoded)
        two_hop_text = self.coclicked_text_pooling(views.view(*rows.shape, -1), present)
        return text + two_hop_ids + two_hop_text

    def encode_users(self, batch: dict, history_news: Tensor) -> Tensor:
        history, mask, users = batch["history"], batch["history_mask"], batch["history_users"]
        one_hop = self.clicked_pooling(gather_rows(history_news, history), mask)
        neighbors = gather_rows(batch["news"]["news_clickers"], history).flatten(1)  # [B_u, H * M]
        keep = mask.repeat_interleave(neighbors.shape[1] // mask.shape[1], 1)
        keep = keep & (neighbors > 0) & (neighbors != users.unsqueeze(1))
        two_hop = self.neighbor_user_pooling(self._ids(self.user_embedding, neighbors), keep)
        own = self._ids(self.user_embedding, users)
        if self.clicker_view:
            return one_hop + self.user_graph(torch.cat([own, two_hop], -1))
        return one_hop + own + two_hop
