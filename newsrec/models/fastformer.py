"""Fastformer as a news recommender (Wu et al., 2021); the class is ``FastformerNR``."""

from __future__ import annotations

from torch import Tensor, nn

from newsrec.core import DataRequirements
from newsrec.models.base import NewsRecModel, gather_rows
from newsrec.nn import AdditiveAttention, Fastformer

__all__ = ["FastformerNR"]


class FastformerNR(NewsRecModel):
    r"""Fastformer for news recommendation: a Fastformer over the title's word vectors, then
    attention pooling, gives the news vector; a Fastformer over the clicked news vectors, then
    attention pooling, gives the user vector; the score is the inner product. Named
    ``FastformerNR`` so that it does not clash with the layer :class:`newsrec.nn.Fastformer`.

    .. math::
        \mathbf{n} = \operatorname{Att}\big(\operatorname{Fastformer}(\mathbf{W}_0\mathbf{E}[t_1..t_L])\big),
        \qquad \mathbf{u} = \operatorname{Att}\big(\operatorname{Fastformer}(\mathbf{n}_1..\mathbf{n}_H)\big),
        \qquad s = \mathbf{u}^\top \mathbf{c}

    The model size is the base ``num_heads × head_dim`` (20 × 20 = 400), the Fastformer's heads
    ``num_heads``. With ``news_encoder="plm"`` the news side is the PLM encoder (as the paper's
    PLM-empowered form) and the user side stays a Fastformer. Cacheable.

    Args:
        num_layers: Fastformer layers on each side (1).
        **kwargs: the :class:`NewsRecModel` arguments.

    Shapes: ``title [U, L]`` → ``[U, dim]``; clicked news ``[B, H, dim]`` + mask → ``[B, dim]``.
    """

    def __init__(self, num_layers: int = 1, **kwargs) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters()
        dim, hidden, dropout = self.dim, self.attention_hidden, self.dropout_rate
        self.plm_news = self.text_encoder() if self.text_encoders.kind == "plm" else None
        if self.plm_news is None:
            self.word_projection = nn.Linear(self.word_dim, dim)
            self.news_fastformer = Fastformer(dim, self.num_heads, num_layers, dropout)
            self.news_pooling = AdditiveAttention(dim, hidden)
            self.word_dropout = nn.Dropout(dropout)
        self.user_fastformer = Fastformer(dim, self.num_heads, num_layers, dropout)
        self.user_pooling = AdditiveAttention(dim, hidden)

    def data_requirements(self) -> DataRequirements:
        return DataRequirements(news_fields=(self.text_field("title"),), text_tokenizer=self.text_tokenizer())

    def encode_news(self, news: dict[str, Tensor], history_news: Tensor | None = None) -> Tensor:
        tokens = news[self.text_field("title")]
        if self.plm_news is not None:
            return self.plm_news(tokens)
        mask = tokens != 0
        x = self.word_projection(self.word_dropout(self.word_embedding(tokens)))
        return self.news_pooling(self.news_fastformer(x, mask), mask)

    def encode_users(self, batch: dict, history_news: Tensor) -> Tensor:
        mask = batch["history_mask"]
        x = self.user_fastformer(gather_rows(history_news, batch["history"]), mask)
        return self.user_pooling(x, mask)
