"""Embedding tables initialised from pretrained vectors."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

__all__ = ["pretrained_embedding", "copy_pretrained_"]


def _as_matrix(vectors: np.ndarray | torch.Tensor) -> torch.Tensor:
    weight = torch.as_tensor(np.asarray(vectors), dtype=torch.float32)
    if weight.dim() != 2:
        raise ValueError(f"vectors must be a [num_embeddings, dim] matrix, got shape {tuple(weight.shape)}")
    return weight


def pretrained_embedding(
    vectors: np.ndarray | torch.Tensor, *, freeze: bool = False, padding_idx: int | None = 0
) -> nn.Embedding:
    """A new ``nn.Embedding`` initialised from a ``[num_embeddings, dim]`` matrix (e.g. from
    :func:`newsrec.data.load_word_vectors`). The padding row is zeroed and, as always with
    ``padding_idx``, receives no gradient; ``freeze=True`` makes the whole table fixed."""
    weight = _as_matrix(vectors).clone()
    if padding_idx is not None:
        weight[padding_idx] = 0.0
    return nn.Embedding.from_pretrained(weight, freeze=freeze, padding_idx=padding_idx)


@torch.no_grad()
def copy_pretrained_(embedding: nn.Embedding, vectors: np.ndarray | torch.Tensor, *, name: str = "vectors") -> None:
    """Copy a ``[num_embeddings, dim]`` matrix into an existing table, in place (its
    ``requires_grad`` is kept); the padding row is zeroed. A shape mismatch is one clear error
    naming both shapes."""
    weight = _as_matrix(vectors)
    if tuple(weight.shape) != tuple(embedding.weight.shape):
        raise ValueError(
            f"{name} have shape {tuple(weight.shape)} but the embedding table is {tuple(embedding.weight.shape)}: "
            f"set the model's dimension to {weight.shape[1]} (or turn the pretrained initialisation off)"
        )
    embedding.weight.copy_(weight.to(embedding.weight.device))
    if embedding.padding_idx is not None:
        embedding.weight[embedding.padding_idx].zero_()
