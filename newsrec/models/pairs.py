"""Scoring (impression, candidate) pairs in bounded chunks, for the models whose score needs the
pair itself (FIM, DIGAT): at most one chunk's pair tensors exist at a time."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["score_pairs"]


def score_pairs(
    candidates: Tensor, candidate_mask: Tensor, chunk: int, score: Callable[[Tensor, Tensor], Tensor]
) -> Tensor:
    """Scores ``[B, C]`` of every real pair of ``candidates [B, C]`` (``candidate_mask``: which are
    real; padded pairs score 0), ``chunk`` pairs at a time: ``score(rows [P], news [P]) -> [P]``,
    ``rows`` the pairs' impressions and ``news`` their candidates (positions in the batch)."""
    B, C = candidates.shape
    rows = torch.arange(B, device=candidates.device).repeat_interleave(C)
    news = candidates.reshape(-1)
    todo = torch.nonzero(candidate_mask.reshape(-1)).flatten()
    parts = [(pairs, score(rows[pairs], news[pairs])) for pairs in todo.split(max(int(chunk), 1))]
    dtype = parts[0][1].dtype if parts else torch.get_default_dtype()
    scores = torch.zeros(B * C, dtype=dtype, device=candidates.device)
    for pairs, values in parts:
        scores[pairs] = values
    return scores.view(B, C)
