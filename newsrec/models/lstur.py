"""LSTUR (An et al., ACL 2019): long- and short-term user representations."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from newsrec.core import DataRequirements
from newsrec.models.base import NewsRecModel, gather_rows
from newsrec.nn.cnn import CNNTextEncoder
from newsrec.nn.embedding import id_embedding, learned_embedding
from newsrec.nn.user import last_states

__all__ = ["LSTUR"]

LSTUR_VARIANTS = ("ini", "con")


class LSTUR(NewsRecModel):
    r"""LSTUR: news = [title CNN (``num_filters`` = 300, window 3) + word attention; topic
    embedding; subtopic embedding] (``category_dim`` = 100 each, so 500-d); short-term user =
    a GRU over the clicked news in click order; long-term user = a user-ID embedding, set to
    zero for a whole user with probability ``long_term_mask`` (0.5) in training, so that users
    without an ID vector are served by the same model.

    .. math::
        \mathbf{e} = [\mathbf{e}_t; \mathbf{e}_v; \mathbf{e}_{sv}], \qquad
        \text{ini: } \mathbf{u} = \operatorname{GRU}(\mathbf{e}_1..\mathbf{e}_H;\ \mathbf{h}_0 = \mathbf{u}_l),
        \qquad \text{con: } \mathbf{u} = [\mathbf{u}_l; \operatorname{GRU}(\mathbf{e}_1..\mathbf{e}_H)],
        \qquad s = \mathbf{u}^\top\mathbf{e}_c

    ``variant="ini"`` (default, the paper's better one): the long-term vector initialises the
    GRU and the user is its state after the last click (the long-term vector itself for an
    empty history). ``variant="con"``: the long-term vector (``d/2``) is concatenated with the
    final GRU state (``d/2``), ``d`` the news size. Row 0 of the user table, every user the
    training split lacks, is the zero vector: an unseen user is served from the short-term
    interest alone, exactly as a masked user in training. Cacheable.

    Args:
        num_filters: the title CNN's filters (300).
        window: the CNN's window (3).
        category_dim: topic and subtopic embedding size (100 each).
        variant: ``"ini"`` or ``"con"``.
        long_term_mask: the probability that a user's long-term vector is zeroed in training (0.5).
        **kwargs: the :class:`NewsRecModel` arguments (``num_users`` among the data sizes).

    Shapes: ``title [U, L]``, ``category [U]``, ``subcategory [U]`` → news ``[U, d]``
    (``d = num_filters + 2 category_dim``); clicked ``[B_u, H, d]`` + mask and
    ``history_users [B_u]`` → users ``[B_u, d]``.
    """

    def __init__(
        self,
        num_filters: int = 300,
        window: int = 3,
        category_dim: int = 100,
        variant: str = "ini",
        long_term_mask: float = 0.5,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters()
        if variant not in LSTUR_VARIANTS:
            raise ValueError(f"variant must be one of {LSTUR_VARIANTS}, got {variant!r}")
        if not 0.0 <= long_term_mask <= 1.0:
            raise ValueError(f"long_term_mask is a probability, got {long_term_mask}")
        self.variant, self.long_term_mask = variant, long_term_mask
        self.news_dim = num_filters + 2 * category_dim
        if variant == "con" and self.news_dim % 2:
            raise ValueError(f"variant='con' halves the news size {self.news_dim} (long + short term): make it even")
        if self.text_encoders.kind == "plm":
            if num_filters != self.dim:
                raise ValueError(f"with news_encoder='plm' num_filters must equal num_heads*head_dim ({self.dim})")
            self.title_encoder = self.text_encoder()
        else:
            self.title_encoder = CNNTextEncoder(
                self.word_embedding, num_filters, window, self.attention_hidden, self.dropout_rate, self.length_buckets
            )
        # Keras' default Embedding start, uniform ±0.05, as the paper's and Microsoft's Keras code
        self.topic_embedding = learned_embedding(self.num_categories, category_dim)
        self.subtopic_embedding = learned_embedding(self.num_subcategories, category_dim)
        state = self.news_dim if variant == "ini" else self.news_dim // 2
        self.user_embedding = id_embedding(self.num_users, state)
        self.gru = nn.GRU(self.news_dim, state, batch_first=True)

    def data_requirements(self) -> DataRequirements:
        fields = (self.text_field("title"), "category", "subcategory")
        return DataRequirements(news_fields=fields, text_tokenizer=self.text_tokenizer(), user_ids=True)

    def encode_news(self, news: dict[str, Tensor], history_news: Tensor | None = None) -> Tensor:
        title = self.title_encoder(news[self.text_field("title")])
        topic, subtopic = self.topic_embedding(news["category"]), self.subtopic_embedding(news["subcategory"])
        return torch.cat([title, topic, subtopic], -1)

    def long_term(self, users: Tensor) -> Tensor:
        """``[B_u] → [B_u, state]``: the long-term vectors; in training each user's is zeroed with
        probability ``long_term_mask`` (the whole vector, unscaled, as the paper masks it)."""
        vectors = self.user_embedding(users.clamp(0, self.user_embedding.num_embeddings - 1))
        if self.training and self.long_term_mask > 0:
            keep = torch.rand(len(users), 1, device=vectors.device) >= self.long_term_mask
            vectors = vectors * keep.to(vectors.dtype)
        return vectors

    def encode_users(self, batch: dict, history_news: Tensor) -> Tensor:
        clicked = gather_rows(history_news, batch["history"])  # [B_u, H, d]
        lengths = batch["history_mask"].sum(1)
        long_term = self.long_term(batch["history_users"])
        initial = long_term if self.variant == "ini" else torch.zeros_like(long_term)
        states, _ = self.gru(clicked, initial.unsqueeze(0).contiguous())  # padding follows the clicks
        last = last_states(states, lengths)
        short_term = torch.where((lengths > 0).unsqueeze(-1), last, initial)
        return short_term if self.variant == "ini" else torch.cat([long_term, short_term], -1)
