"""News encoders: a text (title) encoder, an entity encoder and a multi-view combiner."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from newsrec.nn.attention import AdditiveAttention, MultiHeadSelfAttention
from newsrec.utils import renamed_arguments

__all__ = ["TextEncoder", "EntityEncoder", "MultiViewCombiner", "encode_by_length"]


class TextEncoder(nn.Module):
    r"""The NRMS / GLORY title encoder: word embedding → dropout → multi-head self-attention →
    dropout → additive attention pooling.

    .. math::
        \mathbf{h} = \operatorname{Att}\big(\operatorname{MHSA}(\mathbf{E}[t_1], \dots, \mathbf{E}[t_L])\big)

    With ``layer_norm=True`` (the official GLORY code's news encoder) a LayerNorm follows the
    self-attention and another the pooling:
    :math:`\mathbf{h} = \operatorname{LN}(\operatorname{Att}(\operatorname{LN}(\operatorname{MHSA}(\cdot))))`.

    Args:
        embedding: the word embedding table (its ``padding_idx`` row is the pad token, id 0).
        num_heads, head_dim: self-attention size (GLORY/FUM: 20 × 20 = 400).
        hidden_dim: additive-attention hidden size (200).
        dropout: dropout after the embedding and after the self-attention (0.2).
        length_buckets: padding is not computed: texts are sorted by length (up to their last
            real token) and encoded in up to this many groups, each cut to its longest text
            (1 = cut the whole batch to its longest text; 0 = compute every slot, as the papers'
            codes). ``None`` (default): 8 groups on the CPU, 1 on a GPU (where every group costs
            kernel launches that outweigh the saved work). Exact, since padding is masked
            everywhere: only the floating-point summation order can differ. Titles use ~11 of
            their 30 slots on MIND, so this cuts the encoder's work 2-4x on a CPU.
        layer_norm: the two LayerNorms of the official GLORY code (off: NRMS).
        key_bias, score_bias: the self-attention's key bias and the pooling's score bias
            (:class:`MultiHeadSelfAttention`, :class:`AdditiveAttention`; neither changes a
            result, both count as parameters: GLORY's official code has no key bias and a
            score bias).

    Shapes:
        - **tokens**: long ``[..., L]``, 0 = padding.
        - **output**: ``[..., num_heads * head_dim]``; an all-padding text gives zeros (with
          ``layer_norm``: the last LayerNorm's bias, a constant).
    """

    @renamed_arguments(attention_hidden="hidden_dim")
    def __init__(
        self,
        embedding: nn.Embedding,
        num_heads: int = 20,
        head_dim: int = 20,
        hidden_dim: int = 200,
        dropout: float = 0.2,
        length_buckets: int | None = None,
        layer_norm: bool = False,
        key_bias: bool | None = None,
        score_bias: bool = False,
    ) -> None:
        super().__init__()
        if length_buckets is not None and length_buckets < 0:
            raise ValueError(f"length_buckets must be >= 0, got {length_buckets}")
        self.length_buckets = length_buckets
        self.embedding = embedding
        self.dropout = nn.Dropout(dropout)
        self.out_dim = num_heads * head_dim
        self.attention = MultiHeadSelfAttention(embedding.embedding_dim, num_heads, head_dim, key_bias=key_bias)
        self.attention_norm = nn.LayerNorm(self.out_dim) if layer_norm else nn.Identity()
        self.pooling = AdditiveAttention(self.out_dim, hidden_dim, score_bias=score_bias)
        self.pooled_norm = nn.LayerNorm(self.out_dim) if layer_norm else nn.Identity()

    def reset_parameters(self) -> None:
        self.attention.reset_parameters()
        self.pooling.reset_parameters()
        for norm in (self.attention_norm, self.pooled_norm):
            if isinstance(norm, nn.LayerNorm):
                norm.reset_parameters()

    def _encode(self, tokens: Tensor, mask: Tensor) -> Tensor:
        x = self.dropout(self.embedding(tokens))
        x = self.dropout(self.attention_norm(self.attention(x, mask)))
        return self.pooled_norm(self.pooling(x, mask))

    def forward(self, tokens: Tensor) -> Tensor:
        return encode_by_length(self._encode, tokens, self.length_buckets)


def encode_by_length(encode, tokens: Tensor, length_buckets: int | None) -> Tensor:
    """``encode(tokens [n, l], mask [n, l]) -> [n, d]`` applied to ``tokens [..., L]`` (0 =
    padding) without computing most of the padding: texts are sorted by length (up to their
    last real token) and encoded in up to ``length_buckets`` groups of at least 64 texts, each
    cut to its longest text (``None``: 8 groups on the CPU, 1 on a GPU; 0: no cut). Exact when
    ``encode`` masks its padding: only the floating-point summation order can differ.
    Returns ``[..., d]`` in the input order."""
    lead, L = tokens.shape[:-1], tokens.shape[-1]
    tokens = tokens.reshape(-1, L)
    mask = tokens != 0
    n = len(tokens)
    groups = length_buckets
    if groups is None:
        groups = 8 if tokens.device.type == "cpu" else 1
    if L == 0 or n == 0 or groups == 0:
        return encode(tokens, mask).reshape(*lead, -1)
    # length up to the last real token (at least 1, so an all-padding text keeps one slot)
    lengths = (mask * torch.arange(1, L + 1, device=tokens.device)).amax(-1).clamp_(min=1)
    groups = min(groups, n // 64)  # groups of at least 64 texts
    if groups <= 1:
        cut = int(lengths.max())
        out = encode(tokens[:, :cut], mask[:, :cut])
    else:
        sorted_lengths, order = torch.sort(lengths)
        bounds = [n * (i + 1) // groups for i in range(groups)]
        cuts = sorted_lengths[torch.tensor(bounds, device=tokens.device) - 1].tolist()
        parts, start = [], 0
        for end, cut in zip(bounds, cuts):
            rows = order[start:end]
            parts.append(encode(tokens[rows, :cut], mask[rows, :cut]))
            start = end
        out = torch.cat(parts).index_select(0, torch.argsort(order))
    return out.reshape(*lead, -1)


class EntityEncoder(nn.Module):
    r"""GLORY's entity encoders: entity embedding → dropout → multi-head self-attention →
    additive attention pooling [→ linear projection → LeakyReLU].

    With ``layer_norm=True`` (the official GLORY code) the block is
    dropout → MHSA → LayerNorm → dropout → pooling → LayerNorm [→ linear → LeakyReLU(0.2)]:

    .. math::
        \mathbf{h} = \sigma\Big(\mathbf{W}\,\operatorname{LN}\big(\operatorname{Att}(
            \operatorname{LN}(\operatorname{MHSA}(\mathbf{E}[e_1], \dots, \mathbf{E}[e_n])))\big) + \mathbf{b}\Big)

    GLORY's local entity encoder projects (5 heads × 20 over 100-d TransE vectors, then
    ``Linear(100, 400)``); its global entity encoder does not (20 × 20 heads give 400 directly).

    Args:
        embedding: entity embedding table (id 0 = padding), e.g. TransE vectors.
        out_dim: output size (400 in GLORY); must equal ``num_heads * head_dim`` without
            ``project``.
        num_heads, head_dim: self-attention size (local: 5 × 20, global: 20 × 20).
        hidden_dim: pooling hidden size.
        dropout: dropout after the embedding (and after the first LayerNorm with ``layer_norm``).
        layer_norm: the official code's two LayerNorms (and second dropout).
        project: the final ``Linear(num_heads * head_dim, out_dim)`` + LeakyReLU(0.2).
        key_bias, score_bias: as :class:`TextEncoder`'s.

    Shapes:
        - **entities**: long ``[..., E]``, 0 = padding.
        - **output**: ``[..., out_dim]``. A news with no entity gives a constant (the pooled zero
          vector through the norms and projection), so it never depends on other news of a batch.
    """

    @renamed_arguments(attention_hidden="hidden_dim")
    def __init__(
        self,
        embedding: nn.Embedding,
        out_dim: int = 400,
        num_heads: int = 5,
        head_dim: int = 20,
        hidden_dim: int = 200,
        dropout: float = 0.2,
        layer_norm: bool = False,
        project: bool = True,
        key_bias: bool | None = None,
        score_bias: bool = False,
    ) -> None:
        super().__init__()
        inner = num_heads * head_dim
        if not project and inner != out_dim:
            raise ValueError(f"without project, num_heads * head_dim ({inner}) must equal out_dim ({out_dim})")
        self.embedding = embedding
        self.dropout = nn.Dropout(dropout)
        self.attention_dropout = nn.Dropout(dropout) if layer_norm else nn.Identity()
        self.attention = MultiHeadSelfAttention(embedding.embedding_dim, num_heads, head_dim, key_bias=key_bias)
        self.attention_norm = nn.LayerNorm(inner) if layer_norm else nn.Identity()
        self.pooling = AdditiveAttention(inner, hidden_dim, score_bias=score_bias)
        self.pooled_norm = nn.LayerNorm(inner) if layer_norm else nn.Identity()
        self.proj = nn.Linear(inner, out_dim) if project else None
        self.act = nn.LeakyReLU(0.2) if project else nn.Identity()
        self.out_dim = out_dim

    def reset_parameters(self) -> None:
        self.attention.reset_parameters()
        self.pooling.reset_parameters()
        for layer in (self.attention_norm, self.pooled_norm, self.proj):
            if isinstance(layer, (nn.LayerNorm, nn.Linear)):
                layer.reset_parameters()

    def forward(self, entities: Tensor, mask: Tensor | None = None) -> Tensor:
        if mask is None:
            mask = entities != 0
        x = self.dropout(self.embedding(entities))
        x = self.attention_dropout(self.attention_norm(self.attention(x, mask)))
        x = self.pooled_norm(self.pooling(x, mask))
        return self.act(self.proj(x)) if self.proj is not None else x


class MultiViewCombiner(nn.Module):
    r"""Attention over several views of one item (GLORY's historical-news and candidate
    aggregators): :math:`\mathbf{n} = \sum_v a_v \mathbf{h}_v` with
    :math:`a = \operatorname{softmax}(\mathbf{q}^\top \tanh(\mathbf{W}\mathbf{h}_v + \mathbf{b}))`;
    with ``project`` (GLORY's official candidate aggregator)
    :math:`\operatorname{LeakyReLU}_{0.2}(\mathbf{W}_o \mathbf{n} + \mathbf{b}_o)`.

    Args:
        in_dim: the views' size (the output's too).
        hidden_dim: attention hidden size (200).
        project: a final ``Linear(in_dim, in_dim)`` + LeakyReLU(0.2).
        score_bias: the pooling's score bias (:class:`AdditiveAttention`).

    Shapes:
        - **views**: ``[..., V, in_dim]`` (stack the views on dimension -2).
        - **mask**: bool ``[..., V]`` or ``None`` (e.g. to drop a view that is absent).
        - **output**: ``[..., in_dim]``.
    """

    @renamed_arguments(dim="in_dim", attention_hidden="hidden_dim")
    def __init__(self, in_dim: int, hidden_dim: int = 200, project: bool = False, score_bias: bool = False) -> None:
        super().__init__()
        self.pooling = AdditiveAttention(in_dim, hidden_dim, score_bias=score_bias)
        self.proj = nn.Linear(in_dim, in_dim) if project else None
        self.act = nn.LeakyReLU(0.2) if project else nn.Identity()

    def reset_parameters(self) -> None:
        self.pooling.reset_parameters()
        if self.proj is not None:
            self.proj.reset_parameters()

    def forward(self, views: Tensor, mask: Tensor | None = None) -> Tensor:
        out = self.pooling(views, mask)
        return self.act(self.proj(out)) if self.proj is not None else out
