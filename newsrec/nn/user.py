"""The NRMS user encoder (used by NRMS, GLORY and FUM's coarse user model)."""

from __future__ import annotations

from torch import Tensor, nn

from newsrec.nn.attention import AdditiveAttention, MultiHeadSelfAttention

__all__ = ["UserEncoder"]


class UserEncoder(nn.Module):
    r"""Multi-head self-attention over the clicked news vectors, then additive attention pooling:

    .. math::
        \mathbf{u} = \operatorname{Att}\big(\operatorname{MHSA}(\mathbf{n}_1, \dots, \mathbf{n}_H)\big)

    Args:
        dim: news vector size (also the output size when ``num_heads * head_dim == dim``).
        num_heads, head_dim: self-attention size (20 × 20).
        attention_hidden: pooling hidden size (200).
        dropout: dropout on the news vectors before the self-attention.

    Shapes:
        - **news**: ``[B, H, dim]`` clicked news vectors (oldest first).
        - **mask**: bool ``[B, H]`` (True = a real click); padding never changes the result and
          an empty history gives the zero vector.
        - **output**: ``[B, num_heads * head_dim]``.
    """

    def __init__(
        self, dim: int, num_heads: int = 20, head_dim: int = 20, attention_hidden: int = 200, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.attention = MultiHeadSelfAttention(dim, num_heads, head_dim)
        self.pooling = AdditiveAttention(num_heads * head_dim, attention_hidden)
        self.out_dim = num_heads * head_dim

    def reset_parameters(self) -> None:
        self.attention.reset_parameters()
        self.pooling.reset_parameters()

    def forward(self, news: Tensor, mask: Tensor | None = None) -> Tensor:
        x = self.attention(self.dropout(news), mask)
        return self.pooling(x, mask)
