"""The served news index: every news' ids, model inputs and vectors, as one typed value.

A :class:`NewsIndex` is never changed in place: an update builds a new index and swaps it in
whole, so a request always reads one consistent index and a failing update never leaves a
half-updated one. :class:`IndexStore` persists an index beside the data
(``.npy`` arrays and a checksummed manifest through :class:`~newsrec.core.ArrayCache`, never
pickle): the corpus part is rebuilt from the data root, only vectors and the changed rows are
stored.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from newsrec.core import ArrayCache
from newsrec.data.batching import BatchBuilder
from newsrec.models.base import NewsCache

__all__ = ["IndexStore", "NewsIndex"]


@dataclass
class NewsIndex:
    """What serving ranks: ``N`` news (row 0 the padding news), the corpus's first.

    Attributes:
        ids: ``N`` news ids, in row order.
        arrays: the model's news fields, ``{field: [N, ...]}``.
        vectors: the model's candidate-side and history-side vectors of every row.
        changed: the corpus rows and added rows whose fields differ from the data root's.
        builder: the batch builder over ``arrays`` (GLORY: its news graph grown by the added
            news, isolated nodes).
        search: the vector search over ``vectors.candidate`` (``None`` for a model that is not
            cacheable).
    """

    ids: list[str]
    arrays: dict[str, np.ndarray]
    vectors: NewsCache | None
    changed: tuple[int, ...]
    builder: BatchBuilder
    search: object | None
    position: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.position = {n: i for i, n in enumerate(self.ids)}

    def __len__(self) -> int:
        return len(self.ids)

    def row(self, news_id: str) -> int | None:
        """The row of a rankable news (``None`` for an unknown id and the padding news)."""
        row = self.position.get(news_id)
        return row if row else None

    def allowed(self) -> Tensor:
        """``[N]`` bool: every row but the padding news."""
        allowed = torch.ones(len(self.ids), dtype=torch.bool)
        allowed[0] = False
        return allowed


class IndexStore:
    """Where a :class:`NewsIndex` persists: ``folder/index-<key>`` (vectors, the changed rows'
    fields, the added ids) under a key (the checkpoint's checksum) and the data's signature; an
    index saved under another key or signature is never used."""

    def __init__(self, folder: str | os.PathLike, key: str, signature: dict, fields: tuple[str, ...]) -> None:
        self.cache = ArrayCache(folder)
        self.name = f"index-{key or 'memory'}"
        self.key, self.fields = key, fields
        self.signature = {k: v for k, v in signature.items() if k != "root"}

    def save(self, index: NewsIndex, num_corpus_news: int) -> None:
        changed = np.asarray(sorted(index.changed), np.int64)
        arrays = {
            "candidate": index.vectors.candidate.float().cpu().numpy(),
            "history": index.vectors.history.float().cpu().numpy(),
            "changed_rows": changed,
        }
        for f in self.fields:
            arrays[f"changed_{f}"] = index.arrays[f][changed]
        meta = {"key": self.key, "ids": index.ids[num_corpus_news:], "num_corpus_news": num_corpus_news}
        self.cache.save(self.name, arrays, {**meta, "signature": self.signature})

    def load(self, corpus_ids: list[str], corpus_arrays: dict[str, np.ndarray], device: torch.device):
        """``(ids, arrays, vectors, changed)`` of the saved index over the corpus, or ``None``."""
        got = self.cache.load(self.name)
        if got is None:
            return None
        saved, meta = got
        if meta.get("key") != self.key or meta.get("signature") != self.signature:
            return None  # another checkpoint's or another corpus's index
        ids = list(corpus_ids) + list(meta["ids"])
        changed = np.asarray(saved["changed_rows"], np.int64)
        arrays = {}
        for f in self.fields:
            base = np.asarray(corpus_arrays[f])
            full = np.zeros((len(ids), *base.shape[1:]), base.dtype)
            full[: len(base)] = base
            full[changed] = np.asarray(saved[f"changed_{f}"])
            arrays[f] = full
        vectors = NewsCache(*(torch.from_numpy(np.array(saved[k])).to(device) for k in ("candidate", "history")))
        return ids, arrays, vectors, tuple(changed.tolist())
