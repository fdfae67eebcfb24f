"""A news text encoder over a pre-trained language model (Hugging Face ``transformers``)."""

from __future__ import annotations

import contextlib
import os

import torch
from torch import Tensor, nn

from newsrec.core.pretrained import PretrainedModelError, hub_hint, require_transformers, resolve_pretrained
from newsrec.nn.attention import AdditiveAttention
from newsrec.nn.news import encode_by_length
from newsrec.utils import renamed_arguments

__all__ = ["PretrainedTextEncoder", "load_pretrained_model", "freeze_layers", "PLM_POOLINGS"]

#: how the token states become one text vector
PLM_POOLINGS = ("cls", "mean", "attention")


def load_pretrained_model(spec: str | os.PathLike) -> nn.Module:
    """``transformers.AutoModel`` from a local folder, a ``package:`` folder or a hub name
    (:func:`newsrec.core.pretrained.resolve_pretrained`), without its pooler head (newsrec pools
    the token states itself, and an unused head would have parameters without gradients).

    Raises :class:`~newsrec.core.pretrained.PretrainedModelError` with what to do when it cannot
    be loaded (a hub name without internet, a folder without weights)."""
    transformers = require_transformers()
    path = resolve_pretrained(spec)
    try:
        model = transformers.AutoModel.from_pretrained(path)
    except (OSError, ValueError) as e:
        hint = "" if os.path.exists(path) else " " + hub_hint(path)
        raise PretrainedModelError(f"could not load the pre-trained model {os.fspath(spec)!r}: {e}.{hint}") from None
    if getattr(model, "pooler", None) is not None:
        model.pooler = None
    return model


def _layer_stack(model: nn.Module) -> nn.ModuleList:
    """The transformer's list of layers (the longest ``nn.ModuleList`` in it: ``encoder.layer``
    in BERT / RoBERTa / XLM-R / MiniLM, ``transformer.layer`` in DistilBERT, …)."""
    stacks = [m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m) > 0]
    if not stacks:
        raise ValueError(f"{type(model).__name__} has no list of layers: plm_trainable_layers must be -1 or 0")
    return max(stacks, key=len)


def freeze_layers(model: nn.Module, trainable_layers: int) -> None:
    """Freeze ``model`` but for its last ``trainable_layers`` transformer layers: ``-1`` trains
    everything, ``0`` nothing, ``N > 0`` the last ``N`` layers (embeddings and earlier layers
    frozen; PLM-NR fine-tunes the last layers this way)."""
    if trainable_layers < -1:
        raise ValueError(
            f"plm_trainable_layers must be -1 (all), 0 (none) or a number of layers, got {trainable_layers}"
        )
    if trainable_layers == -1:
        model.requires_grad_(True)
        return
    model.requires_grad_(False)
    if trainable_layers > 0:
        layers = _layer_stack(model)
        if trainable_layers > len(layers):
            raise ValueError(f"plm_trainable_layers={trainable_layers}, but the model has {len(layers)} layers")
        for layer in list(layers)[len(layers) - trainable_layers :]:
            layer.requires_grad_(True)


class PretrainedTextEncoder(nn.Module):
    r"""A text encoder over a pre-trained transformer (PLM-NR, Wu et al., SIGIR 2021):
    token states of the PLM, pooled, then projected to the model size.

    .. math::
        \mathbf{H} = \operatorname{PLM}(t_1, \dots, t_L), \qquad
        \mathbf{h} = \mathbf{W}\,\operatorname{pool}(\mathbf{H}) + \mathbf{b}

    with ``pool`` one of ``"cls"`` (the first token's state), ``"mean"`` (the mean over real
    tokens) or ``"attention"`` (:class:`~newsrec.nn.AdditiveAttention` over real tokens).

    Token ids follow newsrec's convention, **0 = padding**: a text's ids are the tokenizer's ids
    plus one (what :func:`newsrec.data.plm_text.tokenize_texts` writes), so that padding is
    masked (and cut away, as :class:`~newsrec.nn.TextEncoder` does, ``length_buckets``) exactly
    as for word ids. A text's vector depends only on its own tokens, never on the padding or on
    the other rows of a batch.

    Args:
        backbone: a ``transformers`` model (shared by several encoders if given to each) or what
            :func:`load_pretrained_model` loads (a folder, ``package:NAME/SUB``, a hub name).
        out_dim: output size (the model size; ``None`` = the PLM's hidden size, no projection).
        pooling: ``"cls"``, ``"mean"`` or ``"attention"``.
        hidden_dim: hidden size of the attention pooling.
        trainable_layers: ``-1`` (all), ``0`` (frozen: run without gradients) or the last ``N``
            layers (:func:`freeze_layers`).
        dropout: dropout on the pooled vector, before the projection.
        length_buckets: groups of similar length (see :func:`~newsrec.nn.news.encode_by_length`).
        gradient_checkpointing: recompute the PLM's activations in the backward pass (less
            memory, ~30% more time).
        autocast: run the PLM in bfloat16 autocast on CUDA devices that support it.

    Shapes:
        - **tokens**: long ``[..., L]``, the tokenizer's ids + 1, 0 = padding.
        - **output**: ``[..., out_dim]``; an all-padding text (the padding news) gives zeros.
    """

    @renamed_arguments(attention_hidden="hidden_dim")
    def __init__(
        self,
        backbone: nn.Module | str | os.PathLike,
        out_dim: int | None = None,
        pooling: str = "cls",
        hidden_dim: int = 200,
        trainable_layers: int = -1,
        dropout: float = 0.2,
        length_buckets: int | None = None,
        gradient_checkpointing: bool = False,
        autocast: bool = True,
    ) -> None:
        super().__init__()
        if pooling not in PLM_POOLINGS:
            raise ValueError(f"plm_pooling must be one of {PLM_POOLINGS}, got {pooling!r}")
        if not isinstance(backbone, nn.Module):
            backbone = load_pretrained_model(backbone)
        freeze_layers(backbone, trainable_layers)
        if gradient_checkpointing:
            if not getattr(backbone, "supports_gradient_checkpointing", False):
                raise ValueError(f"{type(backbone).__name__} does not support gradient checkpointing")
            # transformers >= 5 renamed gradient_checkpointing_enable
            enable = getattr(backbone, "activation_checkpointing_enable", None)
            (enable or backbone.gradient_checkpointing_enable)()
        backbone.train()  # from_pretrained returns eval mode; the encoder follows its parent's mode
        self.backbone = backbone
        self.hidden_size = int(backbone.config.hidden_size)
        self.pad_token_id = int(getattr(backbone.config, "pad_token_id", None) or 0)
        self.pooling_kind, self.trainable_layers = pooling, trainable_layers
        self.length_buckets, self.autocast = length_buckets, autocast
        self.pooling = AdditiveAttention(self.hidden_size, hidden_dim) if pooling == "attention" else None
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(self.hidden_size, out_dim) if out_dim is not None else None
        self.out_dim = out_dim if out_dim is not None else self.hidden_size

    def reset_parameters(self) -> None:
        """Resets the pooling and the projection (the PLM keeps its pre-trained weights)."""
        if self.pooling is not None:
            self.pooling.reset_parameters()
        if self.proj is not None:
            self.proj.reset_parameters()

    def _context(self, device: torch.device):
        if self.autocast and device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def token_states(self, tokens: Tensor, mask: Tensor | None = None) -> Tensor:
        """The PLM's last hidden states ``[n, l, hidden]`` of ``tokens [n, l]`` (ids + 1, 0 =
        padding; padded positions give zeros). Rows without any token are not computed."""
        if mask is None:
            mask = tokens != 0
        out = tokens.new_zeros(*tokens.shape, self.hidden_size, dtype=self.proj_dtype)
        real = mask.any(-1)
        if not bool(real.any()):
            return out
        rows = torch.nonzero(real).flatten()
        ids = (tokens.index_select(0, rows) - 1).clamp_min(0)
        m = mask.index_select(0, rows)
        ids = ids.masked_fill(~m, self.pad_token_id)
        grad = torch.is_grad_enabled() and self.trainable_layers != 0
        with torch.set_grad_enabled(grad), self._context(tokens.device):
            states = self.backbone(input_ids=ids, attention_mask=m.long()).last_hidden_state
        states = states.to(out.dtype) * m.unsqueeze(-1).to(out.dtype)
        return out.index_copy(0, rows, states)

    @property
    def proj_dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def pool(self, states: Tensor, mask: Tensor) -> Tensor:
        """``states [n, l, hidden]``, ``mask [n, l]`` → ``[n, out_dim]`` (zeros for empty rows)."""
        if self.pooling_kind == "cls":
            pooled = states[:, 0]
        elif self.pooling_kind == "mean":
            weight = mask.to(states.dtype)
            pooled = (states * weight.unsqueeze(-1)).sum(1) / weight.sum(1, keepdim=True).clamp_min(1)
        else:
            pooled = self.pooling(states, mask)
        pooled = self.dropout(pooled)
        out = self.proj(pooled) if self.proj is not None else pooled
        return out * mask.any(-1, keepdim=True).to(out.dtype)

    def _encode(self, tokens: Tensor, mask: Tensor) -> Tensor:
        return self.pool(self.token_states(tokens, mask), mask)

    def forward(self, tokens: Tensor) -> Tensor:
        return encode_by_length(self._encode, tokens, self.length_buckets)
