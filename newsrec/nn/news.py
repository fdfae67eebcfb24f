"""News encoders: a text (title) encoder, an entity encoder and a multi-view combiner."""

from __future__ import annotations

from torch import Tensor, nn

from newsrec.nn.attention import AdditiveAttention, MultiHeadSelfAttention

__all__ = ["TextEncoder", "EntityEncoder", "MultiViewCombiner"]


class TextEncoder(nn.Module):
    r"""The NRMS / GLORY title encoder: word embedding → dropout → multi-head self-attention →
    dropout → additive attention pooling.

    .. math::
        \mathbf{h} = \operatorname{Att}\big(\operatorname{MHSA}(\mathbf{E}[t_1], \dots, \mathbf{E}[t_L])\big)

    Args:
        embedding: the word embedding table (its ``padding_idx`` row is the pad token, id 0).
        num_heads, head_dim: self-attention size (GLORY/FUM: 20 × 20 = 400).
        attention_hidden: additive-attention hidden size (200).
        dropout: dropout after the embedding and after the self-attention (0.2).

    Shapes:
        - **tokens**: long ``[..., L]``, 0 = padding.
        - **output**: ``[..., num_heads * head_dim]``; an all-padding text gives zeros.
    """

    def __init__(
        self,
        embedding: nn.Embedding,
        num_heads: int = 20,
        head_dim: int = 20,
        attention_hidden: int = 200,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self.embedding = embedding
        self.dropout = nn.Dropout(dropout)
        self.attention = MultiHeadSelfAttention(embedding.embedding_dim, num_heads, head_dim)
        self.pooling = AdditiveAttention(num_heads * head_dim, attention_hidden)
        self.out_dim = num_heads * head_dim

    def reset_parameters(self) -> None:
        self.attention.reset_parameters()
        self.pooling.reset_parameters()

    def forward(self, tokens: Tensor) -> Tensor:
        mask = tokens != 0
        x = self.dropout(self.embedding(tokens))
        x = self.dropout(self.attention(x, mask))
        return self.pooling(x, mask)


class EntityEncoder(nn.Module):
    r"""GLORY's local entity encoder: entity embedding → dropout → multi-head self-attention →
    additive attention pooling → linear projection → LeakyReLU.

    Args:
        embedding: entity embedding table (id 0 = padding), e.g. TransE vectors.
        out_dim: output size (400 in GLORY).
        num_heads, head_dim: self-attention size (5 × 20 in the official GLORY code).
        attention_hidden: pooling hidden size.
        dropout: dropout after the embedding.

    Shapes:
        - **entities**: long ``[..., E]``, 0 = padding.
        - **output**: ``[..., out_dim]``. A news with no entity gives ``LeakyReLU(bias)`` — a
          constant, so it never depends on other news of a batch.
    """

    def __init__(
        self,
        embedding: nn.Embedding,
        out_dim: int = 400,
        num_heads: int = 5,
        head_dim: int = 20,
        attention_hidden: int = 200,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self.embedding = embedding
        self.dropout = nn.Dropout(dropout)
        self.attention = MultiHeadSelfAttention(embedding.embedding_dim, num_heads, head_dim)
        self.pooling = AdditiveAttention(num_heads * head_dim, attention_hidden)
        self.proj = nn.Linear(num_heads * head_dim, out_dim)
        self.act = nn.LeakyReLU(0.2)
        self.out_dim = out_dim

    def reset_parameters(self) -> None:
        self.attention.reset_parameters()
        self.pooling.reset_parameters()
        self.proj.reset_parameters()

    def forward(self, entities: Tensor, mask: Tensor | None = None) -> Tensor:
        if mask is None:
            mask = entities != 0
        x = self.dropout(self.embedding(entities))
        x = self.attention(x, mask)
        return self.act(self.proj(self.pooling(x, mask)))


class MultiViewCombiner(nn.Module):
    r"""Attention over several views of one item (GLORY's historical-news and candidate
    aggregators): :math:`\mathbf{n} = \sum_v a_v \mathbf{h}_v` with
    :math:`a = \operatorname{softmax}(\mathbf{q}^\top \tanh(\mathbf{W}\mathbf{h}_v + \mathbf{b}))`.

    Shapes:
        - **views**: ``[..., V, dim]`` (stack the views on dimension -2).
        - **mask**: bool ``[..., V]`` or ``None`` (e.g. to drop a view that is absent).
        - **output**: ``[..., dim]``.
    """

    def __init__(self, dim: int, attention_hidden: int = 200) -> None:
        super().__init__()
        self.pooling = AdditiveAttention(dim, attention_hidden)

    def reset_parameters(self) -> None:
        self.pooling.reset_parameters()

    def forward(self, views: Tensor, mask: Tensor | None = None) -> Tensor:
        return self.pooling(views, mask)
