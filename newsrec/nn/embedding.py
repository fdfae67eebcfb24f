"""Embedding tables: initialised from pretrained vectors, or ID tables that start near zero."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

__all__ = [
    "TABLE_INITS",
    "LearnedEmbedding",
    "copy_pretrained_",
    "id_embedding",
    "learned_embedding",
    "pretrained_embedding",
]

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


#: how a learned table's rows start, one name per official code's initialiser
TABLE_INITS = ("uniform", "zeros", "xavier_uniform", "normal")


class LearnedEmbedding(nn.Embedding):
    r"""A learned lookup table ``[num_embeddings, embedding_dim]`` (IDs, categories, topics,
    context features) that starts the way the papers' official code starts it, row
    ``padding_idx`` zero and never trained.

    ``init``:

    - ``"uniform"``: :math:`\mathcal{U}(-b, b)` with ``bound`` :math:`b` (0.05: Keras' default
      ``Embedding`` initialiser, the NPA / NAML / LSTUR / FUM / HieRec code);
    - ``"zeros"``: all zero (HieRec's topic and subtopic tables);
    - ``"xavier_uniform"``: Glorot uniform times ``gain`` (KRED: gain 0.01);
    - ``"normal"``: :math:`\mathcal{N}(0, \sigma^2)` with ``std`` (PyTorch's default is
      :math:`\sigma = 1`, whose rows have norm :math:`\approx\sqrt{d}`; keep it only where the
      official code does).

    :meth:`reset_parameters` re-applies the same rule, so ``model.apply(reset)`` keeps it.
    """

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        *,
        init: str = "uniform",
        bound: float = 0.05,
        gain: float = 1.0,
        std: float = 1.0,
        padding_idx: int | None = 0,
    ) -> None:
        if init not in TABLE_INITS:
            raise ValueError(f"init must be one of {TABLE_INITS}, got {init!r}")
        self.init, self.bound, self.gain, self.std = init, bound, gain, std
        super().__init__(max(num_embeddings, 1), embedding_dim, padding_idx=padding_idx)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        init = getattr(self, "init", "normal")  # nn.Embedding.__init__ calls this before ours is set
        if init == "uniform":
            self.weight.uniform_(-self.bound, self.bound)
        elif init == "zeros":
            self.weight.zero_()
        elif init == "xavier_uniform":
            nn.init.xavier_uniform_(self.weight, gain=self.gain)
        else:
            self.weight.normal_(0.0, getattr(self, "std", 1.0))
        if self.padding_idx is not None:
            self.weight[self.padding_idx].zero_()

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, init={self.init}"


def learned_embedding(num_ids: int, dim: int, init: str = "uniform", **kwargs) -> LearnedEmbedding:
    """Shorthand for :class:`LearnedEmbedding` ``(num_ids, dim, init=init, **kwargs)``."""
    return LearnedEmbedding(num_ids, dim, init=init, **kwargs)


def id_embedding(num_ids: int, dim: int, *, bound: float = ID_INIT_BOUND) -> LearnedEmbedding:
    """A learned lookup table ``[max(num_ids, 1), dim]`` of IDs without pretrained vectors
    (users, news, categories) whose rows start uniform in ``(-bound, bound)``, row 0 (the
    unknown ID, the padding) zero and never trained (:class:`LearnedEmbedding` with
    ``init="uniform"``).

    PyTorch's default ``N(0, 1)`` rows have a norm of about ``sqrt(dim)``: where such a vector
    is added to or concatenated with a text vector, that noise drowns the text until each ID
    has seen enough clicks to be learnt, which a sparse ID rarely does within a few epochs.
    Small rows add nothing until the clicks of the ID teach them something, as with the
    papers' Keras code (``uniform(-0.05, 0.05)``).
    """
    return LearnedEmbedding(num_ids, dim, init="uniform", bound=bound)
