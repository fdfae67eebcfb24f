"""NRMS (Wu et al., EMNLP 2019): the baseline and GLORY's local part."""

from __future__ import annotations

from torch import Tensor, nn

from newsrec.data.batching import DataRequirements
from newsrec.models.base import NewsRecModel, gather_rows
from newsrec.nn import TextEncoder, UserEncoder

__all__ = ["NRMS"]


class NRMS(NewsRecModel):
    """Title multi-head self-attention news encoder + NRMS user encoder, dot-product scores.

    Args:
        num_words: vocabulary size (``MINDDataModule.num_words``); ``num_entity_ids``,
            ``num_categories`` and ``num_subcategories`` are accepted and unused (the CLI links
            every size from the datamodule).
        word_dim: word embedding size (300 for GloVe; must match the pretrained vectors).
        num_heads, head_dim: self-attention size of news and user encoders (20 × 20 = 400).
        attention_hidden: additive attention hidden size (200).
        dropout: dropout on word embeddings and attention outputs (0.2).
        length_buckets: texts are encoded in up to this many groups of similar length, each
            cut to its longest text, so padding is not computed (:class:`TextEncoder`; exact;
            default: 8 on the CPU, 1 on a GPU).
        pretrained_words: initialise the word embedding from the datamodule's GloVe file.
        freeze_words: keep the word embedding fixed.
        **kwargs: :class:`NewsRecModel` arguments (``lr``, ``warmup_fraction``, …).
    """

    def __init__(
        self,
        num_words: int = 2,
        num_entity_ids: int = 2,
        num_categories: int = 2,
        num_subcategories: int = 2,
        word_dim: int = 300,
        num_heads: int = 20,
        head_dim: int = 20,
        attention_hidden: int = 200,
        dropout: float = 0.2,
        length_buckets: int | None = None,
        pretrained_words: bool = True,
        freeze_words: bool = False,
        lr: float = 1e-4,
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
        self.pretrained_words = pretrained_words
        self.word_embedding = nn.Embedding(num_words, word_dim, padding_idx=0)
        self.word_embedding.weight.requires_grad_(not freeze_words)
        self.news_encoder = TextEncoder(
            self.word_embedding, num_heads, head_dim, attention_hidden, dropout, length_buckets
        )
        self.user_encoder = UserEncoder(self.news_encoder.out_dim, num_heads, head_dim, attention_hidden)

    def data_requirements(self) -> DataRequirements:
        return DataRequirements(news_fields=("title",))

    def encode_news(self, news: dict[str, Tensor], history_news: Tensor | None = None) -> Tensor:
        return self.news_encoder(news["title"])

    def encode_users(self, batch: dict, history_news: Tensor) -> Tensor:
        return self.user_encoder(gather_rows(history_news, batch["history"]), batch["history_mask"])
