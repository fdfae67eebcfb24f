"""The model-independent description of every news that beyond-accuracy metrics read."""

from __future__ import annotations

import numpy as np
import torch

from newsrec.data.behaviors import Behaviors
from newsrec.data.corpus import NewsCorpus

__all__ = ["beyond_accuracy_inputs"]


def beyond_accuracy_inputs(
    corpus: NewsCorpus, train: Behaviors, word_vectors: np.ndarray | None, *, dim: int = 64, chunk: int = 4096
) -> dict:
    """What :class:`~newsrec.metrics.BeyondAccuracyMetrics` needs about every news (corpus rows):
    ``item_categories [N]``, ``click_counts [N]`` (training impression clicks and history
    clicks, as popularity counts them) and ``item_vectors [N, d]``, a model-independent space so
    that models are comparable: the mean of the title's word vectors from ``word_vectors``
    (``[num_words, d]``, GloVe) or, without them, of fixed random word vectors (seed 0, ``dim``
    wide: cosines of bag-of-words under a random projection). Memory is bounded by ``chunk``
    titles at a time."""
    words = word_vectors
    if words is None:
        words = np.random.default_rng(0).standard_normal((len(corpus.vocab), dim)).astype(np.float32)
    words = torch.as_tensor(np.asarray(words, dtype=np.float32))
    titles = torch.from_numpy(np.asarray(corpus.arrays["title"]).astype(np.int64))
    vectors = torch.zeros(len(corpus), words.shape[1])
    for start in range(0, len(corpus), chunk):
        t = titles[start : start + chunk]
        m = (t > 0).unsqueeze(-1).float()
        vectors[start : start + chunk] = (words[t] * m).sum(1) / m.sum(1).clamp_min(1)
    return {
        "item_categories": torch.from_numpy(np.asarray(corpus.arrays["category"]).astype(np.int64)),
        "item_vectors": vectors,
        "click_counts": torch.from_numpy(train.click_counts(len(corpus)).astype(np.int64)),
        "num_categories": len(corpus.category_vocab),
        "catalogue_start": 1,
    }
