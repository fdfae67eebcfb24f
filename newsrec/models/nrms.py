"""NRMS (Wu et al., EMNLP 2019): the baseline and GLORY's local part."""

from __future__ import annotations

from torch import Tensor

from newsrec.core import DataRequirements
from newsrec.models.base import NewsRecModel, gather_rows
from newsrec.nn import UserEncoder

__all__ = ["NRMS"]


class NRMS(NewsRecModel):
    """Title multi-head self-attention news encoder + NRMS user encoder, dot-product scores.

    NRMS adds nothing to the base module's arguments (:class:`NewsRecModel`: ``num_words``,
    ``word_dim`` = 300, ``num_heads`` × ``head_dim`` = 20 × 20, ``attention_hidden`` = 200,
    ``dropout`` = 0.2, ``length_buckets``, ``pretrained_words``, ``freeze_words``, the
    optimiser's and the evaluation's, ``news_encoder`` = ``"glove"`` | ``"plm"`` and the
    ``plm_*`` options); they all arrive through ``**kwargs``.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters()
        self.news_encoder = self.text_encoder()
        self.user_encoder = UserEncoder(self.dim, self.num_heads, self.head_dim, self.attention_hidden)

    def data_requirements(self) -> DataRequirements:
        return DataRequirements(news_fields=(self.text_field("title"),), text_tokenizer=self.text_tokenizer())

    def encode_news(self, news: dict[str, Tensor], history_news: Tensor | None = None) -> Tensor:
        return self.news_encoder(news[self.text_field("title")])

    def encode_users(self, batch: dict, history_news: Tensor) -> Tensor:
        return self.user_encoder(gather_rows(history_news, batch["history"]), batch["history_mask"])
