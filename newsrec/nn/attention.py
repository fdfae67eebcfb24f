"""Multi-head self-attention and additive attention pooling (NRMS / GLORY / FUM building blocks)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from newsrec.utils import renamed_arguments

__all__ = ["MultiHeadSelfAttention", "AdditiveAttention", "masked_softmax"]

# cuDNN's fused attention (chosen for bf16/fp16 on recent GPUs) builds an execution plan for every
# new input shape, ~15 ms of CPU time per call on an H100; news batches change shape every step
# (distinct news per batch, texts cut to their longest), so it is left out.
_CUDA_BACKENDS = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


def masked_softmax(logits: Tensor, mask: Tensor | None, dim: int = -1) -> Tensor:
    """Softmax over ``dim`` that gives exactly 0 to masked positions and an all-zero row when
    every position is masked (never NaN, never NaN gradients).

    Args:
        logits: ``[..., L, ...]`` scores.
        mask: bool tensor broadcastable to ``logits``, True = keep; ``None`` = no mask.
    """
    if mask is None:
        return torch.softmax(logits, dim=dim)
    mask = mask.bool()
    filled = logits.masked_fill(~mask, torch.finfo(logits.dtype).min)
    weights = torch.softmax(filled, dim=dim)
    return weights * mask.to(weights.dtype)


class MultiHeadSelfAttention(nn.Module):
    r"""Multi-head self-attention of NRMS (Wu et al., 2019), as used by GLORY and FUM.

    For every head :math:`k`,

    .. math::
        \mathbf{h}^k_i = \sum_j \alpha^k_{i,j} \mathbf{V}^k \mathbf{x}_j,\qquad
        \alpha^k_{i,j} = \operatorname{softmax}_j\!\left(
            \frac{(\mathbf{Q}^k \mathbf{x}_i)^\top (\mathbf{K}^k \mathbf{x}_j)}{\sqrt{d_h}}\right)

    and the heads are concatenated: :math:`\mathbf{h}_i = [\mathbf{h}^1_i; \dots; \mathbf{h}^H_i]`.
    Built on :func:`torch.nn.functional.scaled_dot_product_attention`.

    Args:
        in_dim: input feature size :math:`d`.
        num_heads: number of heads :math:`H`.
        head_dim: size of each head :math:`d_h`; the output size is ``num_heads * head_dim``.
        dropout: dropout on the attention weights (training only).
        bias: whether the Q/K/V projections have a bias.
        key_bias: whether the key projection has one (``None``: as ``bias``). A key bias adds
            the same amount to every logit of a query, so it never changes the weights; the
            official GLORY code leaves it out (``key_bias=False``).

    Shapes:
        - **x**: ``[B, L, in_dim]`` (any number of leading batch dimensions).
        - **mask**: bool ``[B, L]``, True for real positions (``None`` = all real).
        - **output**: ``[B, L, num_heads * head_dim]``; padded positions are zero, and a fully
          masked row is all zeros (no NaN, no NaN gradients).
    """

    @renamed_arguments(dim_in="in_dim")
    def __init__(
        self,
        in_dim: int,
        num_heads: int = 20,
        head_dim: int = 20,
        dropout: float = 0.0,
        bias: bool = True,
        key_bias: bool | None = None,
    ) -> None:
        super().__init__()
        self.in_dim, self.num_heads, self.head_dim, self.dropout = in_dim, num_heads, head_dim, dropout
        self.out_dim = num_heads * head_dim
        self.query = nn.Linear(in_dim, self.out_dim, bias=bias)
        self.key = nn.Linear(in_dim, self.out_dim, bias=bias if key_bias is None else key_bias)
        self.value = nn.Linear(in_dim, self.out_dim, bias=bias)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for lin in (self.query, self.key, self.value):
            nn.init.xavier_uniform_(lin.weight)
            if lin.bias is not None:
                nn.init.zeros_(lin.bias)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        lead, (L, _) = x.shape[:-2], x.shape[-2:]
        x = x.reshape(-1, L, self.in_dim)
        B = x.shape[0]

        def heads(t: Tensor) -> Tensor:
            return t.view(B, L, self.num_heads, self.head_dim).transpose(1, 2)

        q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
        attn_mask = None
        if mask is not None:
            mask = mask.reshape(B, L).bool()
            attn_mask = mask[:, None, None, :]
        dropout_p = self.dropout if self.training else 0.0
        if q.is_cuda:
            with sdpa_kernel(_CUDA_BACKENDS):
                out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p)
        out = out.transpose(1, 2).reshape(B, L, self.out_dim)
        if mask is not None:
            out = out * mask[..., None].to(out.dtype)
        return out.reshape(*lead, L, self.out_dim)

    def extra_repr(self) -> str:
        return f"{self.in_dim}, num_heads={self.num_heads}, head_dim={self.head_dim}, dropout={self.dropout}"


class AdditiveAttention(nn.Module):
    r"""Additive attention pooling:

    .. math::
        a_i = \operatorname{softmax}_i\!\left(\mathbf{q}^\top \tanh(\mathbf{W}\mathbf{x}_i + \mathbf{b})\right),
        \qquad \mathbf{h} = \sum_i a_i \mathbf{x}_i

    The softmax is max-subtracted and masked: padded positions get weight exactly 0, and a
    fully masked input pools to the zero vector.

    Args:
        in_dim: input feature size (the output has the same size).
        hidden_dim: size of the attention hidden layer (200 in NRMS/GLORY/FUM).
        score_bias: a bias on the score :math:`\mathbf{q}^\top(\cdot) + c` (the official GLORY
            code's ``Linear(hidden, 1)``); it adds the same to every logit, so it never changes
            the weights, only the parameter count.

    Shapes:
        - **x**: ``[..., L, in_dim]``.
        - **mask**: bool ``[..., L]`` (True = real), or ``None``.
        - **output**: ``[..., in_dim]``, and with ``return_weights=True`` also the weights
          ``[..., L]``.
    """

    @renamed_arguments(dim="in_dim")
    def __init__(self, in_dim: int, hidden_dim: int = 200, score_bias: bool = False) -> None:
        super().__init__()
        self.in_dim, self.hidden_dim = in_dim, hidden_dim
        self.proj = nn.Linear(in_dim, hidden_dim)
        self.query = nn.Linear(hidden_dim, 1, bias=score_bias)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)
        nn.init.xavier_uniform_(self.query.weight)
        if self.query.bias is not None:
            nn.init.zeros_(self.query.bias)

    def forward(self, x: Tensor, mask: Tensor | None = None, return_weights: bool = False):
        logits = self.query(torch.tanh(self.proj(x))).squeeze(-1)
        weights = masked_softmax(logits, mask, dim=-1)
        out = torch.einsum("...l,...ld->...d", weights, x)
        return (out, weights) if return_weights else out

    def extra_repr(self) -> str:
        return f"{self.in_dim}, hidden_dim={self.hidden_dim}"
