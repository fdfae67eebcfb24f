"""The NRMS user encoder (used by NRMS, GLORY and FUM's coarse user model)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from newsrec.nn.attention import AdditiveAttention, MultiHeadSelfAttention
from newsrec.utils import renamed_arguments

__all__ = ["UserEncoder", "last_states"]


class UserEncoder(nn.Module):
    r"""Multi-head self-attention over the clicked news vectors, then additive attention pooling:

    .. math::
        \mathbf{u} = \operatorname{Att}\big(\operatorname{MHSA}(\mathbf{n}_1, \dots, \mathbf{n}_H)\big)

    Args:
        in_dim: news vector size (also the output size when ``num_heads * head_dim == in_dim``).
        num_heads, head_dim: self-attention size (20 × 20).
        hidden_dim: pooling hidden size (200).
        dropout: dropout on the news vectors before the self-attention.
        recency_positions: ``R > 0`` adds a learned embedding of each click's recency (0 = the
            most recent click, clamped at ``R − 1``) to its news vector before the
            self-attention, so the user vector can tell the last click from the first (beyond
            the paper: NRMS's user encoder is order-free). 0 (default) = off.
        key_bias, score_bias: the self-attention's key bias and the pooling's score bias
            (neither changes a result; GLORY's official code: no key bias, a score bias).

    Shapes:
        - **news**: ``[B, H, in_dim]`` clicked news vectors (oldest first).
        - **mask**: bool ``[B, H]`` (True = a real click); padding never changes the result and
          an empty history gives the zero vector.
        - **output**: ``[B, num_heads * head_dim]``.
    """

    @renamed_arguments(dim="in_dim", attention_hidden="hidden_dim")
    def __init__(
        self,
        in_dim: int,
        num_heads: int = 20,
        head_dim: int = 20,
        hidden_dim: int = 200,
        dropout: float = 0.0,
        recency_positions: int = 0,
        key_bias: bool | None = None,
        score_bias: bool = False,
    ) -> None:
        super().__init__()
        self.recency = nn.Embedding(recency_positions, in_dim) if recency_positions > 0 else None
        self.dropout = nn.Dropout(dropout)
        self.attention = MultiHeadSelfAttention(in_dim, num_heads, head_dim, key_bias=key_bias)
        self.pooling = AdditiveAttention(num_heads * head_dim, hidden_dim, score_bias=score_bias)
        self.out_dim = num_heads * head_dim
        if self.recency is not None:
            nn.init.zeros_(self.recency.weight)  # starts as the order-free paper encoder

    def reset_parameters(self) -> None:
        if self.recency is not None:
            nn.init.zeros_(self.recency.weight)
        self.attention.reset_parameters()
        self.pooling.reset_parameters()

    def forward(self, news: Tensor, mask: Tensor | None = None) -> Tensor:
        if self.recency is not None:
            if mask is None:
                mask = torch.ones(news.shape[:2], dtype=torch.bool, device=news.device)
            n = mask.sum(1, keepdim=True)
            pos = torch.arange(news.shape[1], device=news.device)[None, :]
            age = (n - 1 - pos).clamp(0, self.recency.num_embeddings - 1)
            news = news + self.recency(age) * mask.unsqueeze(-1).to(news.dtype)
        x = self.attention(self.dropout(news), mask)
        return self.pooling(x, mask)


def last_states(states: Tensor, lengths: Tensor) -> Tensor:
    """Each row's state after its last real step (GRU, LSTUR): ``states [B, H, d]`` of a
    recurrent layer run over histories padded at the end, ``lengths [B]`` → ``[B, d]`` (row 0's
    state for an empty history: mask it)."""
    index = (lengths - 1).clamp_min(0).view(-1, 1, 1).expand(-1, 1, states.shape[-1])
    return states.gather(1, index)[:, 0]
