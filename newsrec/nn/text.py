"""The text-encoder choice of every model: GloVe words or a pre-trained language model."""

from __future__ import annotations

from torch import nn

from newsrec.nn.news import TextEncoder
from newsrec.nn.plm import PLM_POOLINGS, PretrainedTextEncoder, load_pretrained_model

__all__ = ["NEWS_ENCODERS", "TextEncoderFactory"]

#: the text encoders a model can be built with
NEWS_ENCODERS = ("glove", "plm")


class TextEncoderFactory:
    """Builds a model's text encoders (``[U, L] → [U, out_dim]``), all of one kind.

    ``"glove"``: :class:`~newsrec.nn.TextEncoder` (MHSA + attention pooling) over one shared word
    table, which the factory creates (``word_embedding``; the model registers it). ``"plm"``:
    :class:`~newsrec.nn.PretrainedTextEncoder`; the language model is loaded once, on first use,
    and shared by every encoder the factory builds (each adds its own pooling and projection).

    A plain object, not a module: what it builds is registered where the model assigns it.

    Args:
        kind: ``"glove"`` or ``"plm"``.
        num_words, word_dim: the word table's size (``"glove"``).
        out_dim: the encoders' output size (the model size).
        num_heads, head_dim: the word-level self-attention (``"glove"``; ``out_dim`` =
            ``num_heads * head_dim``).
        hidden_dim: additive-attention hidden size.
        dropout: dropout rate.
        length_buckets: groups of similar length (:func:`~newsrec.nn.news.encode_by_length`).
        freeze_words: keep the word table fixed.
        plm_path: the PLM (a folder, ``package:NAME/SUB``, a hub name); required for ``"plm"``.
        plm_pooling: ``"cls"``, ``"mean"`` or ``"attention"``.
        plm_trainable_layers: ``-1`` all, ``0`` frozen, ``N`` the last ``N`` layers.
        plm_max_length: tokens kept per text, special tokens included.
        plm_gradient_checkpointing: recompute the PLM's activations in the backward pass.
    """

    def __init__(
        self,
        kind: str = "glove",
        *,
        num_words: int = 2,
        word_dim: int = 300,
        out_dim: int = 400,
        num_heads: int = 20,
        head_dim: int = 20,
        hidden_dim: int = 200,
        dropout: float = 0.2,
        length_buckets: int | None = None,
        freeze_words: bool = False,
        plm_path: str | None = None,
        plm_pooling: str = "cls",
        plm_trainable_layers: int = -1,
        plm_max_length: int = 32,
        plm_gradient_checkpointing: bool = False,
    ) -> None:
        if kind not in NEWS_ENCODERS:
            raise ValueError(f"news_encoder must be one of {NEWS_ENCODERS}, got {kind!r}")
        if kind == "plm" and not plm_path:
            raise ValueError(
                "news_encoder='plm' needs plm_path: a folder with the model's config.json, weights and tokenizer "
                "files, package:NAME/SUB, or a hub name"
            )
        if plm_pooling not in PLM_POOLINGS:
            raise ValueError(f"plm_pooling must be one of {PLM_POOLINGS}, got {plm_pooling!r}")
        self.kind, self.out_dim = kind, out_dim
        self.num_heads, self.head_dim, self.hidden_dim = num_heads, head_dim, hidden_dim
        self.dropout, self.length_buckets = dropout, length_buckets
        self.plm_path, self.plm_pooling, self.plm_trainable_layers = plm_path, plm_pooling, plm_trainable_layers
        self.plm_max_length, self.plm_gradient_checkpointing = plm_max_length, plm_gradient_checkpointing
        #: the shared word table (``None`` for ``"plm"``)
        self.word_embedding: nn.Embedding | None = None
        if kind == "glove":
            self.word_embedding = nn.Embedding(num_words, word_dim, padding_idx=0)
            self.word_embedding.weight.requires_grad_(not freeze_words)
        self._backbone: nn.Module | None = None

    @property
    def backbone(self) -> nn.Module | None:
        """The language model (``"plm"``: loaded on first use; ``None`` for ``"glove"``)."""
        if self.kind == "plm" and self._backbone is None:
            self._backbone = load_pretrained_model(self.plm_path)
        return self._backbone

    @property
    def loaded_backbone(self) -> nn.Module | None:
        """The language model if it was loaded already (never loads it)."""
        return self._backbone

    def __call__(self, **glove_options) -> TextEncoder | PretrainedTextEncoder:
        """A new text encoder over the shared word table or language model; ``glove_options``
        (``layer_norm``, ``key_bias``, ``score_bias``) go to the :class:`TextEncoder` of
        ``"glove"`` and are ignored by ``"plm"``."""
        if self.kind == "plm":
            return PretrainedTextEncoder(
                self.backbone,
                self.out_dim,
                self.plm_pooling,
                self.hidden_dim,
                self.plm_trainable_layers,
                self.dropout,
                self.length_buckets,
                self.plm_gradient_checkpointing,
            )
        return TextEncoder(
            self.word_embedding,
            self.num_heads,
            self.head_dim,
            self.hidden_dim,
            self.dropout,
            self.length_buckets,
            **glove_options,
        )

    def field(self, text: str) -> str:
        """The news field the encoders read for ``text`` (``"title"``, ``"abstract"``): the word
        ids ``text``, or ``plm_<text>`` (the PLM's token ids)."""
        return f"plm_{text}" if self.kind == "plm" else text

    def tokenizer(self) -> dict | None:
        """``DataRequirements.text_tokenizer`` for these encoders (``None`` for ``"glove"``)."""
        return {"path": self.plm_path, "max_length": self.plm_max_length} if self.kind == "plm" else None
