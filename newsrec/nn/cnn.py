"""The CNN text encoder of NPA, NAML and LSTUR: word vectors → CNN → word attention."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from newsrec.nn.attention import AdditiveAttention
from newsrec.nn.news import encode_by_length

__all__ = ["CNNTextEncoder"]


class CNNTextEncoder(nn.Module):
    r"""Word embedding → dropout → a 1-D convolution (``window`` words, same padding) → ReLU →
    dropout → additive attention over the words (Wu et al., NAML / NPA; An et al., LSTUR):

    .. math::
        \mathbf{c}_i = \operatorname{ReLU}\big(\mathbf{F}\,
        [\mathbf{e}_{i-w}; \dots; \mathbf{e}_{i+w}] + \mathbf{b}\big),
        \qquad \mathbf{h} = \operatorname{Att}(\mathbf{c}_1, \dots, \mathbf{c}_L)

    Padding never changes a vector: the padding word's embedding is zero (as the zero padding
    of the convolution is), and padded positions are masked out of the attention.

    Args:
        embedding: the word table (``padding_idx`` 0).
        out_dim: filters, the output size (400 in NAML and NPA, 300 in LSTUR).
        window: the convolution's window (3).
        hidden_dim: the attention's hidden size (200).
        dropout: after the embedding and after the convolution (0.2).
        length_buckets: groups of similar length (:func:`~newsrec.nn.news.encode_by_length`).
        pooling: with the attention pooling (False: :meth:`word_features` only, for a model that
            pools with its own query, as NPA).

    Shapes: **tokens** long ``[..., L]`` (0 = padding) → ``[..., out_dim]``; an all-padding text
    gives zeros.
    """

    def __init__(
        self,
        embedding: nn.Embedding,
        out_dim: int = 400,
        window: int = 3,
        hidden_dim: int = 200,
        dropout: float = 0.2,
        length_buckets: int | None = None,
        pooling: bool = True,
    ) -> None:
        super().__init__()
        if window % 2 == 0:
            raise ValueError(f"window must be odd (same padding), got {window}")
        self.embedding, self.out_dim, self.length_buckets = embedding, out_dim, length_buckets
        self.dropout = nn.Dropout(dropout)
        self.conv = nn.Conv1d(embedding.embedding_dim, out_dim, window, padding=window // 2)
        self.pooling = AdditiveAttention(out_dim, hidden_dim) if pooling else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Keras' Conv1D start (glorot uniform, zero bias), as the papers' and Microsoft's code
        nn.init.xavier_uniform_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)
        if self.pooling is not None:
            self.pooling.reset_parameters()

    def word_features(self, tokens: Tensor) -> Tensor:
        """The convolution's output per word, ``[U, L] → [U, L, out_dim]`` (before pooling; NPA
        pools it with a personalised query). Padded positions are zero."""
        mask = tokens != 0
        x = self.dropout(self.embedding(tokens) * mask.unsqueeze(-1).to(self.embedding.weight.dtype))
        x = self.dropout(torch.relu(self.conv(x.transpose(1, 2)).transpose(1, 2)))
        return x * mask.unsqueeze(-1).to(x.dtype)

    def _encode(self, tokens: Tensor, mask: Tensor) -> Tensor:
        return self.pooling(self.word_features(tokens), mask)

    def forward(self, tokens: Tensor) -> Tensor:
        if self.pooling is None:
            raise RuntimeError("this CNNTextEncoder has no pooling (pooling=False): call word_features")
        return encode_by_length(self._encode, tokens, self.length_buckets)
