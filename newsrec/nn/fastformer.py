"""Fastformer (Wu et al., 2021): additive attention with linear cost in sequence length."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from newsrec.nn.attention import masked_softmax
from newsrec.nn.embedding import LearnedEmbedding
from newsrec.utils import renamed_arguments

__all__ = ["FastformerAttention", "FastformerLayer", "Fastformer"]


class FastformerAttention(nn.Module):
    r"""The Fastformer attention layer, as FUM (eqs. 2–4) and the official code define it.

    With hidden states :math:`\mathbf{h}_i \in \mathbb{R}^d`, :math:`H` heads of size :math:`d_h`:

    .. math::
        \mathbf{q}_i &= \mathbf{W}_q \mathbf{h}_i,\quad \mathbf{k}_i = \mathbf{W}_k \mathbf{h}_i \\
        \alpha_{h,i} &= \operatorname{softmax}_i\big(\mathbf{w}_{\alpha,h}^\top \mathbf{q}_i / \sqrt{d_h}\big),
        \quad \mathbf{q}^{(h)} = \textstyle\sum_i \alpha_{h,i} \mathbf{q}^{(h)}_i \\
        \mathbf{p}_i &= \mathbf{q} \odot \mathbf{k}_i,\quad
        \beta_{h,i} = \operatorname{softmax}_i\big(\mathbf{w}_{\beta,h}^\top \mathbf{p}_i / \sqrt{d_h}\big),
        \quad \mathbf{k}^{(h)} = \textstyle\sum_i \beta_{h,i} \mathbf{p}^{(h)}_i \\
        \mathbf{u}_i &= \mathbf{k} \odot \mathbf{v}_i,\qquad
        \hat{\mathbf{h}}_i = \mathbf{W}_o \mathbf{u}_i + \mathbf{q}_i

    The score layers :math:`\mathbf{w}_\alpha, \mathbf{w}_\beta` map the whole :math:`d`-dim
    vector to :math:`H` scores; the softmaxes run over tokens (never heads) and ignore padding;
    the global key is pooled from :math:`\mathbf{p}` (not from :math:`\mathbf{k}`).

    Args:
        in_dim: model size :math:`d = H \cdot d_h`.
        num_heads: :math:`H`.
        value_from_query: the official code's parameter sharing: :math:`\mathbf{v}_i = \mathbf{q}_i`
            (default). With False, a separate :math:`\mathbf{W}_v` is learnt.
        share_query_key: the Fastformer paper's query-key sharing: :math:`\mathbf{W}_k = \mathbf{W}_q`.
        query_residual: add :math:`\mathbf{q}_i` to the output (official code; default True).
        score_bias: a bias on the score layers :math:`\mathbf{w}_\alpha, \mathbf{w}_\beta` (the
            official PyTorch code's ``nn.Linear``; FUM's Keras code has none). A per-head constant
            cancels in the softmax over tokens: it changes only the parameter count.

    Shapes:
        - **x**: ``[B, L, in_dim]``; **mask**: bool ``[B, L]`` (True = real) or ``None``.
        - **output**: ``[B, L, in_dim]``; padded positions are zero. Cost is O(L · d).
    """

    @renamed_arguments(dim="in_dim")
    def __init__(
        self,
        in_dim: int,
        num_heads: int = 3,
        *,
        value_from_query: bool = True,
        share_query_key: bool = False,
        query_residual: bool = True,
        score_bias: bool = False,
    ) -> None:
        super().__init__()
        if in_dim % num_heads:
            raise ValueError(f"in_dim ({in_dim}) must be divisible by num_heads ({num_heads})")
        self.in_dim, self.num_heads, self.head_dim = in_dim, num_heads, in_dim // num_heads
        self.value_from_query, self.share_query_key, self.query_residual = (
            value_from_query,
            share_query_key,
            query_residual,
        )
        self.query = nn.Linear(in_dim, in_dim)
        self.key = None if share_query_key else nn.Linear(in_dim, in_dim)
        self.value = None if value_from_query else nn.Linear(in_dim, in_dim)
        # a per-head bias cancels in the softmax over tokens (it gets no gradient): off unless asked
        self.query_score = nn.Linear(in_dim, num_heads, bias=score_bias)
        self.key_score = nn.Linear(in_dim, num_heads, bias=score_bias)
        self.output = nn.Linear(in_dim, in_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def _pool(self, x: Tensor, scores: Tensor, mask: Tensor | None) -> Tensor:
        # scores [B, L, H] -> weights over tokens -> pooled per head [B, H, d_h]
        weights = masked_softmax(scores / math.sqrt(self.head_dim), None if mask is None else mask[..., None], dim=1)
        B, L, _ = x.shape
        return torch.einsum("blh,blhd->bhd", weights, x.view(B, L, self.num_heads, self.head_dim))

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        B, L, d = x.shape
        if mask is not None:
            mask = mask.bool()
        q = self.query(x)
        k = q if self.key is None else self.key(x)
        global_q = self._pool(q, self.query_score(q), mask).reshape(B, 1, d)
        p = k * global_q
        global_k = self._pool(p, self.key_score(p), mask).reshape(B, 1, d)
        v = q if self.value is None else self.value(x)
        out = self.output(global_k * v)
        if self.query_residual:
            out = out + q
        if mask is not None:
            out = out * mask[..., None].to(out.dtype)
        return out

    def extra_repr(self) -> str:
        return (
            f"{self.in_dim}, num_heads={self.num_heads}, value_from_query={self.value_from_query}, "
            f"share_query_key={self.share_query_key}, query_residual={self.query_residual}"
        )


class FastformerLayer(nn.Module):
    r"""One Fastformer block: :class:`FastformerAttention`, optionally followed by the BERT-style
    self-output (``output_dense``: a dense layer :math:`\mathbf{W}_s`, dropout, residual and
    ``layer_norm``) and feed-forward sub-layer (``feed_forward``: dense → GELU → dense, dropout,
    residual and ``layer_norm``), as the official PyTorch ``FastformerLayer`` (``FastAttention``
    = ``FastSelfAttention`` + ``BertSelfOutput``, then ``BertIntermediate`` + ``BertOutput``):

    .. math::
        \mathbf{a} = \operatorname{LN}\big(\mathbf{x} + \operatorname{drop}(\mathbf{W}_s\,
        \operatorname{Fastformer}(\mathbf{x}))\big), \qquad
        \mathbf{y} = \operatorname{LN}\big(\mathbf{a} + \operatorname{drop}(\mathbf{W}_2
        \operatorname{GELU}(\mathbf{W}_1\mathbf{a}))\big)

    FUM's official (Keras) code uses the bare attention (all three off, the default). The
    official repository's README (``wuch15/Fastformer``) notes that for news recommendation the
    authors found Fastformer better without LayerNorm and position embeddings, while its PyTorch
    code builds the full block; :class:`~newsrec.models.FastformerNR` follows the code.

    Args:
        in_dim, num_heads: as :class:`FastformerAttention`; ``dropout``: the block's dropout.
        layer_norm: the residual LayerNorms (eps ``1e-12``, BERT's).
        feed_forward: the feed-forward sub-layer, ``hidden_dim`` wide (default ``4 × in_dim``).
        output_dense: the self-output dense layer after the attention.
        **attention_kwargs: passed to :class:`FastformerAttention`.

    Shapes: ``x [B, L, in_dim]``, ``mask [B, L]`` → ``[B, L, in_dim]`` (padded positions zero).
    """

    @renamed_arguments(dim="in_dim", ffn_dim="hidden_dim")
    def __init__(
        self,
        in_dim: int,
        num_heads: int = 3,
        dropout: float = 0.0,
        *,
        layer_norm: bool = False,
        feed_forward: bool = False,
        hidden_dim: int | None = None,
        output_dense: bool = False,
        **attention_kwargs,
    ) -> None:
        super().__init__()
        self.attention = FastformerAttention(in_dim, num_heads, **attention_kwargs)
        self.dense = nn.Linear(in_dim, in_dim) if output_dense else None
        self.dropout = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(in_dim, eps=1e-12) if layer_norm else None
        self.ffn = None
        if feed_forward:
            self.ffn = nn.Sequential(
                nn.Linear(in_dim, hidden_dim or 4 * in_dim), nn.GELU(), nn.Linear(hidden_dim or 4 * in_dim, in_dim)
            )
            self.norm2 = nn.LayerNorm(in_dim, eps=1e-12) if layer_norm else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.attention.reset_parameters()
        for m in self.modules():
            if isinstance(m, nn.LayerNorm):
                m.reset_parameters()
        dense = [] if self.dense is None else [self.dense]
        for m in [*dense, *(self.ffn or ())]:
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        h = self.attention(x, mask)
        if self.dense is not None:
            h = self.dense(h)
            h = self.norm1(x + self.dropout(h)) if self.norm1 is not None else x + self.dropout(h)
        elif self.norm1 is not None:
            h = self.norm1(x + self.dropout(h))
        if self.ffn is not None:
            f = self.dropout(self.ffn(h))
            h = self.norm2(h + f) if self.norm2 is not None else h + f
        if mask is not None:
            h = h * mask[..., None].to(h.dtype)
        return h


class Fastformer(nn.Module):
    r"""A stack of :class:`FastformerLayer` (optionally one layer's weights shared by all, as in
    the Fastformer paper's cross-layer sharing), optionally after the official
    ``FastformerEncoder``'s input embedding: learned position embeddings added to the input, a
    LayerNorm and dropout, :math:`\mathbf{x}'_i = \operatorname{drop}(\operatorname{LN}(\mathbf{x}_i + \mathbf{p}_i))`.

    Args:
        in_dim, num_heads, dropout: as :class:`FastformerLayer`.
        num_layers: how many layers.
        share_layers: reuse one layer's parameters for all layers.
        max_positions: the position table's size (``None``: no position embeddings, FUM's code);
            rows start :math:`\mathcal{N}(0, 0.02^2)` as the official code's. Longer inputs are an error.
        input_norm: the LayerNorm (and dropout) over the input (+ positions).
        **layer_kwargs: passed to every :class:`FastformerLayer`.

    Shapes: ``x [B, L, in_dim]``, ``mask [B, L]`` → ``[B, L, in_dim]``.
    """

    @renamed_arguments(dim="in_dim")
    def __init__(
        self,
        in_dim: int,
        num_heads: int = 3,
        num_layers: int = 1,
        dropout: float = 0.0,
        *,
        share_layers: bool = False,
        max_positions: int | None = None,
        input_norm: bool = False,
        **layer_kwargs,
    ) -> None:
        super().__init__()
        self.num_layers = num_layers
        n = 1 if share_layers else num_layers
        self.positions = None
        if max_positions:
            self.positions = LearnedEmbedding(max_positions, in_dim, init="normal", std=0.02, padding_idx=None)
        self.input_norm = nn.LayerNorm(in_dim, eps=1e-12) if input_norm else None
        self.input_dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(FastformerLayer(in_dim, num_heads, dropout, **layer_kwargs) for _ in range(n))

    def reset_parameters(self) -> None:
        for m in (self.positions, self.input_norm, *self.layers):
            if m is not None:
                m.reset_parameters()

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        if self.positions is not None:
            if x.shape[1] > self.positions.num_embeddings:
                raise ValueError(
                    f"Fastformer got a sequence of {x.shape[1]} positions but its position table has "
                    f"{self.positions.num_embeddings}: raise max_positions or shorten the input"
                )
            x = x + self.positions.weight[: x.shape[1]]
        if self.input_norm is not None:
            x = self.input_dropout(self.input_norm(x))
        for i in range(self.num_layers):
            x = self.layers[i % len(self.layers)](x, mask)
        return x
