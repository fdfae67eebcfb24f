"""Non-neural reference points: popularity and the synthetic world's oracle."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from newsrec.data.behaviors import Behaviors
from newsrec.metrics import ImpressionMetrics

__all__ = ["popularity_scores", "evaluate_scores", "read_oracle"]


def popularity_scores(train: Behaviors, num_news: int) -> np.ndarray:
    """Click counts of every news in the training impressions and histories (+1 smoothing,
    log-scaled), a float64 ``[num_news]`` array."""
    clicks = np.bincount(train.candidates[train.labels == 1], minlength=num_news)
    clicks = clicks + np.bincount(train.history, minlength=num_news)
    return np.log1p(clicks.astype(np.float64))


def evaluate_scores(behaviors: Behaviors, scores: list[np.ndarray] | np.ndarray) -> dict[str, float]:
    """Impression metrics of per-candidate scores: either a per-news score array (looked up by
    candidate) or a list of per-impression score arrays in file order."""
    if isinstance(scores, np.ndarray):
        flat = scores[behaviors.candidates]
    else:
        flat = np.concatenate(scores) if len(scores) else np.zeros(0)
    index = np.repeat(np.arange(len(behaviors)), behaviors.num_candidates)
    m = ImpressionMetrics()
    m.update(
        torch.from_numpy(flat.astype(np.float64)),
        torch.from_numpy(behaviors.labels.astype(np.int64)),
        torch.from_numpy(index),
    )
    return {k: float(v) for k, v in m.compute().items()}


def read_oracle(path: str | os.PathLike) -> list[np.ndarray]:
    """The click probabilities a synthetic world wrote (``oracle.tsv``), per impression."""
    out = []
    for line in Path(path).read_text().splitlines():
        _, values = line.split("\t")
        out.append(np.array(values.split(), dtype=np.float64))
    return out
