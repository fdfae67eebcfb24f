"""FUM (Qi et al., SIGIR 2022): fine-grained and fast user modelling with Fastformer."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from newsrec.core import DataRequirements
from newsrec.models.base import NewsRecModel, gather_rows
from newsrec.nn import (
    AdditiveAttention,
    Fastformer,
    MultiHeadSelfAttention,
    PretrainedTextEncoder,
    UserEncoder,
    learned_embedding,
)

__all__ = ["FUM", "FUM_GENRES"]

#: text genres the fine-grained user model can read, per clicked news
FUM_GENRES = ("title", "abstract", "category", "subcategory", "entity_text")
#: the genres that are one token per news (the others are token sequences)
TOKEN_GENRES = ("category", "subcategory")
#: how the fine-grained model pools a clicked news' tokens
FINE_NEWS_POOLINGS = ("official", "tokens")


def _category_tower(num_categories: int, category_dim: int, dropout: float) -> nn.Sequential:
    """Category id → embedding (Keras' ±0.05 start) → Dense (linear, as the official code) →
    dropout (``[U]`` → ``[U, category_dim]``)."""
    return nn.Sequential(
        learned_embedding(num_categories, category_dim),
        nn.Linear(category_dim, category_dim),
        nn.Dropout(dropout),
    )


class FUMNewsEncoder(nn.Module):
    """FUM's news encoder: title and abstract text encoders (MHSA + pooling, separate weights,
    shared word embedding), category and subcategory embeddings (→ Dense → dropout), an entity
    encoder (MHSA + pooling), all concatenated → Dense(``dim``) → ReLU (the official code;
    ``activation="none"`` leaves the vector linear, as NRMS's and GLORY's news vectors are).

    Args:
        text_encoder: a factory of word-level text encoders (``[U, L] → [U, d_t]``), called
            once for the title and once for the abstract (:meth:`NewsRecModel.text_encoder`).
        entity_embedding: the entity table.
        num_categories, num_subcategories: vocabulary sizes.
        category_dim: category and subcategory embedding size.
        entity_heads, entity_head_dim: entity self-attention.
        attention_hidden, dropout: additive attention hidden size and dropout rate.
        dim: output size.
        views: what it reads, from ``title``, ``abstract``, ``category``, ``subcategory``,
            ``entities``.
        activation: ``"relu"`` or ``"none"``.
        text_fields: the news field each text encoder reads (default ``title`` and
            ``abstract``; ``plm_title`` and ``plm_abstract`` with a PLM).

    Shapes: ``news`` dict of ``title [U, Lt]``, ``abstract [U, La]``, ``category [U]``,
    ``subcategory [U]``, ``entities [U, E]`` → ``[U, dim]``.
    """

    def __init__(
        self,
        text_encoder,
        entity_embedding: nn.Embedding,
        num_categories: int,
        num_subcategories: int,
        category_dim: int,
        entity_heads: int,
        entity_head_dim: int,
        attention_hidden: int,
        dropout: float,
        dim: int,
        views: tuple[str, ...],
        activation: str = "relu",
        text_fields: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.text_fields = {"title": "title", "abstract": "abstract", **(text_fields or {})}
        if activation not in ("relu", "none"):
            raise ValueError(f"news_activation must be 'relu' or 'none', got {activation!r}")
        self.views = views
        size = 0
        if "title" in views:
            self.title = text_encoder()
            size += self.title.out_dim
        if "abstract" in views:
            self.abstract = text_encoder()
            size += self.abstract.out_dim
        if "category" in views:
            self.category = _category_tower(num_categories, category_dim, dropout)
            size += category_dim
        if "subcategory" in views:
            self.subcategory = _category_tower(num_subcategories, category_dim, dropout)
            size += category_dim
        if "entities" in views:
            self.entity_embedding = entity_embedding
            self.entity_dropout = nn.Dropout(dropout)
            self.entity_attention = MultiHeadSelfAttention(
                entity_embedding.embedding_dim, entity_heads, entity_head_dim
            )
            self.entity_pooling = AdditiveAttention(entity_heads * entity_head_dim, attention_hidden)
            size += entity_heads * entity_head_dim
        self.output = nn.Sequential(nn.Linear(size, dim), nn.ReLU() if activation == "relu" else nn.Identity())

    def forward(self, news: dict[str, Tensor]) -> Tensor:
        parts = []
        if "title" in self.views:
            parts.append(self.title(news[self.text_fields["title"]]))
        if "abstract" in self.views:
            parts.append(self.abstract(news[self.text_fields["abstract"]]))
        if "category" in self.views:
            parts.append(self.category(news["category"]))
        if "subcategory" in self.views:
            parts.append(self.subcategory(news["subcategory"]))
        if "entities" in self.views:
            ents = news["entities"]
            mask = ents != 0
            x = self.entity_attention(self.entity_dropout(self.entity_embedding(ents)), mask)
            parts.append(self.entity_pooling(x, mask))
        return self.output(torch.cat(parts, dim=-1))


class FUM(NewsRecModel):
    r"""FUM: a coarse user model over clicked news vectors, fused with a fine-grained user model
    that reads the concatenated word sequences of all clicked news with Fastformer.

    Fine-grained model (eqs. 1–5): for the ``H`` clicked news, the tokens of every genre are
    concatenated into one sequence :math:`T` of ``H × (tokens per news)`` embeddings, projected
    to ``fine_dim`` and encoded by Fastformer; :math:`f_i` pools the outputs of news :math:`i`'s
    tokens, :math:`u^f = \operatorname{Att}(f_1..f_H)`. Coarse model:
    :math:`u^c = \operatorname{Att}(\operatorname{MHSA}(c_1..c_H))` over news-encoder vectors.
    Fusion: ``"sum"`` (the paper, :math:`u = W_f u^f + u^c`) or ``"concat"`` (the official code,
    :math:`u = [W_c u^c; W_f u^f]` with sizes ``dim - fine_user_dim`` and ``fine_user_dim``).
    Score :math:`r = u^\top n`. Padding (short titles, short histories) is masked everywhere, and
    a user vector never depends on the candidates (cacheable).

    Per clicked news the fine-grained model pools as the official code (``fine_news_pooling=
    "official"``): attention pooling over the text genres' tokens, concatenated with the outputs
    at the category and subcategory tokens, then a linear Dense(``fine_news_dim`` = 40) and
    dropout; the users' pooling runs over these, then Dense(``fine_user_dim``) and dropout.
    ``"tokens"`` is the paper's eq. 5, :math:`f_i` = attention pooling over all of news
    :math:`i`'s tokens. The category / subcategory tables (news encoder and fine-grained tokens)
    start uniform ±0.05 (Keras' default, the official code's); the category towers are linear
    (Embedding → Dense → dropout) as the official code's.

    Differences from the official code, kept deliberately: padding is masked everywhere (the
    official code passes no masks); the tokens are projected to ``fine_dim`` by a Linear before
    Fastformer's query and key layers (the official Keras layer projects the 300-d tokens to
    120 directly, with no biases): 80,400 parameters against 87,120 at FUM's sizes.

    FUM's own arguments follow; the shared ones (vocabulary sizes, ``word_dim`` = 300,
    ``num_heads`` × ``head_dim`` = 20 × 20 = ``dim``, ``attention_hidden`` = 200, ``dropout`` =
    0.2, ``length_buckets``, ``pretrained_words`` (both word tables: the news encoder's and the
    fine-grained model's), ``freeze_words``, the optimiser's) are :class:`NewsRecModel`'s and
    arrive through ``**kwargs``.

    With ``news_encoder="plm"`` the title and abstract encoders are heads over one shared PLM
    (:class:`~newsrec.nn.PretrainedTextEncoder`), and the fine-grained model's ``title`` and
    ``abstract`` genres read the PLM's **token states** instead of word embeddings: each clicked
    news is run through the PLM on its own (at most ``plm_max_length`` tokens, so no sequence
    ever exceeds the PLM's position limit), its real tokens' states are projected to
    ``word_dim`` and concatenated with the other genres' embeddings, and Fastformer reads the
    ``H × T`` concatenation as before (linear in its length). In training the PLM thus runs twice
    over the history news of a batch (pooled vectors for the coarse model, token states for the
    fine one); in evaluation the news vectors come from the encode-all-news cache and only the
    token states are computed, per batch of distinct histories.

    Args:
        entity_dim: entity embedding size (TransE 100).
        category_dim: category/subcategory embedding size (128).
        entity_heads, entity_head_dim: entity self-attention (5 × 40).
        news_views: what the news encoder reads (default: title, abstract, category,
            subcategory, entities).
        news_activation: the news vector's activation, ``"relu"`` (the official code) or
            ``"none"`` (linear, as NRMS's news vectors; see ``benchmarks/RESULTS.md`` for what
            the ReLU costs on small models).
        genres: what the fine-grained model reads per clicked news, from
            :data:`FUM_GENRES` (default, as the official code: title, category, subcategory).
        fine_encoder: ``"fastformer"`` (default) or ``"mhsa"`` (standard self-attention, for the
            paper's Figure 4 comparison).
        fine_dim, fine_heads, fine_layers: fine-grained encoder size (120 = 3 × 40, 1 layer).
        fine_news_pooling: ``"official"`` (default) or ``"tokens"`` (the paper's eq. 5).
        fine_news_dim: the per-click Dense's size for ``"official"`` (40).
        use_fine, use_coarse: the paper's Figure 3 ablations.
        fusion: ``"sum"`` or ``"concat"``; ``fine_user_dim``: the fine part's size for concat (30).
        pretrained_entities: initialise the entity table from TransE.
        **kwargs: the :class:`NewsRecModel` arguments (FUM defaults to a constant learning
            rate, as the official code; ``gradient_check``, ``beyond_accuracy``, …).
    """

    base_defaults = {"lr": 1e-4, "warmup_fraction": 0.0, "lr_schedule": "constant"}

    def __init__(
        self,
        news_views: tuple[str, ...] = ("title", "abstract", "category", "subcategory", "entities"),
        news_activation: str = "relu",
        entity_dim: int = 100,
        category_dim: int = 128,
        entity_heads: int = 5,
        entity_head_dim: int = 40,
        pretrained_entities: bool = True,
        genres: tuple[str, ...] = ("title", "category", "subcategory"),
        fine_encoder: str = "fastformer",
        fine_dim: int = 120,
        fine_heads: int = 3,
        fine_layers: int = 1,
        fine_news_pooling: str = "official",
        fine_news_dim: int = 40,
        use_fine: bool = True,
        use_coarse: bool = True,
        fusion: str = "sum",
        fine_user_dim: int = 30,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters()
        genres, news_views = tuple(genres), tuple(news_views)
        bad = [g for g in genres if g not in FUM_GENRES]
        if bad:
            raise ValueError(f"unknown genres {bad}; choose from {FUM_GENRES}")
        if not (use_fine or use_coarse):
            raise ValueError("at least one of use_fine and use_coarse must be True")
        if fusion not in ("sum", "concat"):
            raise ValueError(f"fusion must be 'sum' or 'concat', got {fusion!r}")
        if fine_encoder not in ("fastformer", "mhsa"):
            raise ValueError(f"fine_encoder must be 'fastformer' or 'mhsa', got {fine_encoder!r}")
        if use_fine and not genres:
            raise ValueError("the fine-grained model needs at least one genre")
        if fine_news_pooling not in FINE_NEWS_POOLINGS:
            raise ValueError(f"fine_news_pooling must be one of {FINE_NEWS_POOLINGS}, got {fine_news_pooling!r}")
        self.fine_news_pooling_kind = fine_news_pooling
        self.pretrained_entities = pretrained_entities
        self.genres, self.use_fine, self.use_coarse, self.fusion = genres, use_fine, use_coarse, fusion
        dim, hidden, dropout, word_dim = self.dim, self.attention_hidden, self.dropout_rate, self.word_dim
        self.entity_embedding = nn.Embedding(self.num_entity_ids, entity_dim, padding_idx=0)
        self.news_encoder = FUMNewsEncoder(
            self.text_encoder,
            self.entity_embedding,
            self.num_categories,
            self.num_subcategories,
            category_dim,
            entity_heads,
            entity_head_dim,
            hidden,
            dropout,
            dim,
            news_views,
            news_activation,
            {t: self.text_field(t) for t in ("title", "abstract")},
        )
        coarse_out = dim if (fusion == "sum" or not use_fine) else dim - fine_user_dim
        fine_out = dim if (fusion == "sum" or not use_coarse) else fine_user_dim
        if use_coarse:
            self.coarse_user = UserEncoder(dim, self.num_heads, self.head_dim, hidden, dropout)
            self.coarse_proj = nn.Linear(dim, coarse_out) if coarse_out != dim or fusion == "concat" else None
        if use_fine:
            # the fine-grained model has its own embedding tables (as the official code)
            plm_genres = {"title", "abstract"} & set(genres) if self.text_encoders.kind == "plm" else set()
            word_genres = {"title", "abstract", "entity_text"} & set(genres) - plm_genres
            self.fine_word_embedding = nn.Embedding(self.num_words, word_dim, padding_idx=0) if word_genres else None
            self.fine_plm = self.fine_plm_input = None
            if plm_genres:
                # token states of the shared PLM (no pooling, no projection of its own)
                self.fine_plm = PretrainedTextEncoder(
                    self.text_encoders.backbone, None, "cls", trainable_layers=self.text_encoders.plm_trainable_layers
                )
                self.fine_plm_input = nn.Linear(self.fine_plm.hidden_size, word_dim)
            self.fine_category_embedding = learned_embedding(self.num_categories, word_dim)
            self.fine_subcategory_embedding = learned_embedding(self.num_subcategories, word_dim)
            self.fine_dropout = nn.Dropout(dropout)
            self.fine_input = nn.Linear(word_dim, fine_dim)
            if fine_encoder == "fastformer":
                self.fine_encoder = Fastformer(fine_dim, fine_heads, fine_layers)
            else:
                self.fine_encoder = _StackedSelfAttention(fine_dim, fine_heads, fine_layers)
            self.fine_news_pooling = AdditiveAttention(fine_dim, hidden)
            news_dim, self.fine_news_dense = fine_dim, None
            if fine_news_pooling == "official":
                pooled = 1 if set(genres) - set(TOKEN_GENRES) else 0
                parts = pooled + sum(g in TOKEN_GENRES for g in genres)
                self.fine_news_dense, news_dim = nn.Linear(parts * fine_dim, fine_news_dim), fine_news_dim
                if not pooled:
                    self.fine_news_pooling = None
            self.fine_user_pooling = AdditiveAttention(news_dim, hidden)
            self.fine_proj = nn.Linear(news_dim, fine_out)

    def data_requirements(self) -> DataRequirements:
        fields = {"title", "abstract", "category", "subcategory", "entities"}
        fields |= set(self.genres)
        fields = {self.text_field(f) if f in ("title", "abstract") else f for f in fields}
        return DataRequirements(news_fields=tuple(sorted(fields)), text_tokenizer=self.text_tokenizer())

    def pretrained_embeddings(self) -> dict[str, list[nn.Embedding]]:
        """The fine-grained word table starts from GloVe too (as the official code)."""
        tables = super().pretrained_embeddings()
        if self.pretrained_words and self.use_fine and self.fine_word_embedding is not None:
            tables["words"].append(self.fine_word_embedding)
        if self.pretrained_entities:
            tables["entities"] = [self.entity_embedding]
        return tables

    # -- protocol ------------------------------------------------------------------------------------
    def encode_news(self, news: dict[str, Tensor], history_news: Tensor | None = None) -> Tensor:
        return self.news_encoder(news)

    def fine_tokens(
        self, news: dict[str, Tensor], history: Tensor, return_widths: bool = False
    ) -> tuple[Tensor, Tensor] | tuple[Tensor, Tensor, list[int]]:
        """Embedded tokens of every genre of the clicked news, ``[B, H, T, word_dim]``, and their
        mask ``[B, H, T]`` (``T`` = tokens per news over all genres; 0 ids are padding), and with
        ``return_widths`` each genre's number of tokens (in :attr:`genres` order). With a PLM,
        the text genres' rows are projected PLM token states of the distinct clicked news."""
        parts, masks = [], []
        for g in self.genres:
            if self.fine_plm is not None and g in ("title", "abstract"):
                tokens = news[self.text_field(g)]  # [U, l]
                used, inverse = torch.unique(history, return_inverse=True)
                sub = tokens.index_select(0, used)
                sub = sub[:, : max(int((sub != 0).sum(-1).max()), 1)] if len(sub) else sub  # right-padded
                states = self.fine_plm_input(self.fine_plm.token_states(sub))  # [u, l', word_dim]
                submask = sub[:, : states.shape[1]] != 0
                flat = gather_rows(states.reshape(len(used), -1), inverse)
                parts.append(flat.reshape(*history.shape, *states.shape[1:]))
                masks.append(gather_rows(submask, inverse))
                continue
            ids = gather_rows(news[g].reshape(len(news[g]), -1), history)  # [B, H, l_g]
            table = {"category": self.fine_category_embedding, "subcategory": self.fine_subcategory_embedding}.get(
                g, self.fine_word_embedding
            )
            parts.append(table(ids))
            masks.append(ids != 0)
        x = torch.cat(parts, dim=2)  # [B, H, T, D]
        mask = torch.cat(masks, dim=2)  # [B, H, T]
        return (x, mask, [m.shape[2] for m in masks]) if return_widths else (x, mask)

    def encode_users(self, batch: dict, history_news: Tensor) -> Tensor:
        hist, hmask = batch["history"], batch["history_mask"]
        out = []
        if self.use_coarse:
            u = self.coarse_user(gather_rows(history_news, hist), hmask)
            out.append(self.coarse_proj(u) if self.coarse_proj is not None else u)
        if self.use_fine:
            out.append(self.fine_user(batch["news"], hist, hmask))
        if len(out) == 1:
            return out[0]
        return out[0] + out[1] if self.fusion == "sum" else torch.cat(out, dim=-1)

    def fine_user(self, news: dict[str, Tensor], hist: Tensor, hmask: Tensor) -> Tensor:
        """The fine-grained user vector ``[B, fine_out]`` of the histories ``hist [B, H]``."""
        x, mask, widths = self.fine_tokens(news, hist, return_widths=True)
        mask = mask & hmask.unsqueeze(-1)
        B, H, T, D = x.shape
        h = self.fine_input(self.fine_dropout(x)).reshape(B, H * T, -1)
        h = self.fine_encoder(h, mask.reshape(B, H * T))
        h = self.fine_dropout(h).reshape(B, H, T, -1)
        if self.fine_news_dense is None:  # the paper's eq. 5: pooling over all the news' tokens
            per_news = self.fine_news_pooling(h, mask)  # [B, H, fine_dim]
        else:  # the official code: pooled text tokens; the category tokens; Dense
            token = [g in TOKEN_GENRES for g, w in zip(self.genres, widths) for _ in range(w)]
            token = torch.tensor(token, device=h.device)
            parts = (
                [] if self.fine_news_pooling is None else [self.fine_news_pooling(h[:, :, ~token], mask[:, :, ~token])]
            )
            parts.append(h[:, :, token].flatten(2))  # [B, H, n_tokens * fine_dim], zero where padded
            per_news = self.fine_dropout(self.fine_news_dense(torch.cat(parts, -1)))  # [B, H, fine_news_dim]
        u = self.fine_proj(self.fine_user_pooling(per_news, mask.any(-1)))
        return u if self.fine_news_dense is None else self.fine_dropout(u)


class _StackedSelfAttention(nn.Module):
    """Standard multi-head self-attention layers (quadratic), for the Figure 4 comparison."""

    def __init__(self, dim: int, num_heads: int, num_layers: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"fine_dim ({dim}) must be divisible by fine_heads ({num_heads})")
        self.layers = nn.ModuleList(MultiHeadSelfAttention(dim, num_heads, dim // num_heads) for _ in range(num_layers))

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        for layer in self.layers:
            x = layer(x, mask)
        return x
