"""Embedding tables: initialised from pretrained vectors, or ID tables that start near zero."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

__all__ = ["pretrained_embedding", "copy_pretrained_", "id_embedding"]

#: the spread of a fresh ID table: Keras' default ``uniform(-0.05, 0.05)`` (the papers' code)
ID_INIT_BOUND = 0.05


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


def id_embedding(num_ids: int, dim: int, *, bound: float = ID_INIT_BOUND) -> nn.Embedding:
    """A learned lookup table ``[max(num_ids, 1), dim]`` of IDs without pretrained vectors
    (users, news, categories) whose rows start uniform in ``(-bound, bound)``, row 0 (the
    unknown ID, the padding) zero and never trained.

    PyTorch's default ``N(0, 1)`` rows have a norm of about ``sqrt(dim)``: where such a vector
    is added to or concatenated with a text vector, that noise drowns the text until each ID
    has seen enough clicks to be learnt, which a sparse ID rarely does within a few epochs.
    Small rows add nothing until the clicks of the ID teach them something, as with the
    papers' Keras code (``uniform(-0.05, 0.05)``).
    """
    table = nn.Embedding(max(num_ids, 1), dim, padding_idx=0)
    with torch.no_grad():
        table.weight.uniform_(-bound, bound)
        table.weight[0] = 0.0
    return table
