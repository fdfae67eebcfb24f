"""Embedding tables initialised from pretrained vectors."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

__all__ = ["pretrained_embedding"]


def pretrained_embedding(
    vectors: np.ndarray | torch.Tensor, *, freeze: bool = False, padding_idx: int | None = 0
) -> nn.Embedding:
    """An ``nn.Embedding`` initialised from a ``[num_embeddings, dim]`` matrix (e.g. from
    :func:`newsrec.data.load_word_vectors`). The padding row is zeroed and, as always with
    ``padding_idx``, receives no gradient; ``freeze=True`` makes the whole table fixed."""
    weight = torch.as_tensor(np.asarray(vectors), dtype=torch.float32).clone()
    if weight.dim() != 2:
        raise ValueError(f"vectors must be a [num_embeddings, dim] matrix, got shape {tuple(weight.shape)}")
    if padding_idx is not None:
        weight[padding_idx] = 0.0
    return nn.Embedding.from_pretrained(weight, freeze=freeze, padding_idx=padding_idx)
