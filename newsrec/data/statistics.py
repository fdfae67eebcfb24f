"""Statistics of the training split that models read as inputs (never from dev or test)."""

from __future__ import annotations

import numpy as np

from newsrec.data.behaviors import Behaviors

__all__ = ["training_news_rows", "word_idf"]


def training_news_rows(train: Behaviors) -> np.ndarray:
    """Sorted distinct corpus rows of the news the training split shows (histories and
    impressions), padding row 0 left out."""
    rows = np.unique(np.concatenate([np.asarray(train.history), np.asarray(train.candidates)]).astype(np.int64))
    return rows[rows > 0]


def word_idf(titles: np.ndarray, rows: np.ndarray, num_words: int) -> np.ndarray:
    r"""float32 ``[num_words]``: the smoothed inverse document frequency of every word over the
    titles of news ``rows``,

    .. math:: \operatorname{idf}(w) = \ln\frac{1 + n}{1 + \operatorname{df}(w)} + 1

    (``n`` documents; the form scikit-learn's ``TfidfTransformer`` uses). A word counts once per
    title; padding (id 0) gets 0. Vectorised: one sort of the ``[n, L]`` title block.

    Args:
        titles: int ``[N, L]`` word ids of every corpus news (0 = padding).
        rows: the documents (corpus rows).
        num_words: vocabulary size.
    """
    block = np.sort(np.asarray(titles)[np.asarray(rows, np.int64)].astype(np.int64), axis=1)
    first = np.ones(block.shape, bool)
    first[:, 1:] = block[:, 1:] != block[:, :-1]  # each word once per title
    df = np.bincount(block[first & (block > 0)], minlength=num_words)[:num_words]
    idf = np.log((1.0 + len(block)) / (1.0 + df)) + 1.0
    idf[0] = 0.0
    return idf.astype(np.float32)
