"""The served news index: every news' ids, model inputs and vectors, as one typed value.

A :class:`NewsIndex` is never changed in place: an update builds a new index and swaps it in
whole, so a request always reads one consistent index and a failing update never leaves a
half-updated one. :class:`IndexStore` persists an index beside the data
(``.npy`` arrays and a checksummed manifest through :class:`~newsrec.core.ArrayCache`, never
pickle): the corpus part is rebuilt from the data root, only vectors and the changed rows are
stored.
"""

from __future__ import annotations

import operator
import os
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from newsrec.core import ArrayCache
from newsrec.core.requirements import ROW_FIELD
from newsrec.data.batching import BatchBuilder
from newsrec.models.base import NewsCache

__all__ = [
    "NEWS_FIELDS",
    "IndexStore",
    "NewsIndex",
    "Recommendations",
    "UserKey",
    "check_k",
    "check_text",
    "checked_news_rows",
    "index_fields",
]

#: the fields of MIND's news.tsv that :meth:`Recommender.add_news` reads (``news_id`` required)
NEWS_FIELDS = ("news_id", "category", "subcategory", "title", "abstract", "title_entities", "abstract_entities")


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
    #: user states computed over this index, LRU (the recommender's ``user_cache_size``)
    users: OrderedDict = field(init=False, default_factory=OrderedDict)

    def __post_init__(self) -> None:
        self.position = {n: i for i, n in enumerate(self.ids)}

    def __len__(self) -> int:
        return len(self.ids)

    def row(self, news_id: str) -> int | None:
        """The row of a rankable news (``None`` for an unknown id and the padding news)."""
        row = self.position.get(news_id)
        return row if row else None

    def with_rows(self, ids: list[str], encoded: dict[str, np.ndarray]) -> tuple[list[str], np.ndarray, dict]:
        """For articles ``ids`` (known ones updated, new ones appended in order) with their
        ``encoded`` fields: ``(new ids, the row of every id, the new field arrays)``."""
        new_ids = [i for i in ids if i not in self.position]
        fresh = {n: len(self.ids) + k for k, n in enumerate(new_ids)}
        target = np.asarray([self.position.get(i, fresh.get(i)) for i in ids], np.int64)
        arrays = {}
        for f, a in self.arrays.items():
            a = np.concatenate([a, np.zeros((len(new_ids), *a.shape[1:]), a.dtype)]) if new_ids else a.copy()
            a[target] = target if f == ROW_FIELD else encoded[f]
            arrays[f] = a
        return new_ids, target, arrays

    def with_vectors(self, fresh: NewsCache, rows: Tensor, grow: int) -> NewsCache:
        """The vectors with ``grow`` rows appended and ``rows`` set to ``fresh``."""

        def put(base: Tensor, new: Tensor) -> Tensor:
            base = torch.cat([base, base.new_zeros(grow, base.shape[1])]) if grow else base.clone()
            return base.index_copy(0, rows, new.to(base.dtype))

        return NewsCache(put(self.vectors.candidate, fresh.candidate), put(self.vectors.history, fresh.history))

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
        if any(f"changed_{f}" not in saved for f in self.fields):
            return None  # saved with other fields (an older newsrec): built again
        for f in self.fields:
            base = np.asarray(corpus_arrays[f])
            full = np.zeros((len(ids), *base.shape[1:]), base.dtype)
            full[: len(base)] = base
            full[changed] = np.asarray(saved[f"changed_{f}"])
            arrays[f] = full
        vectors = NewsCache(*(torch.from_numpy(np.array(saved[k])).to(device) for k in ("candidate", "history")))
        return ids, arrays, vectors, tuple(changed.tolist())


def checked_news_rows(rows, reserved: tuple[str, ...] = ()) -> list[dict]:
    """Articles for :meth:`Recommender.add_news`, checked: a list of objects with MIND's news
    fields (:data:`NEWS_FIELDS`, strings; ``news_id`` and ``title`` required), no id twice, no
    ``reserved`` id. Every problem is one error naming the article."""
    if isinstance(rows, (Mapping, str, bytes)) or not isinstance(rows, Sequence):
        raise TypeError(
            f"expected a list of articles (objects with MIND's news fields), got {type(rows).__name__}: "
            "pass [article, ...] even for one"
        )
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise TypeError(f"news {i}: expected an object with MIND's news fields, got {type(row).__name__}")
        unknown = sorted(set(row) - set(NEWS_FIELDS))
        if unknown:
            raise ValueError(f"news {i}: unknown field(s) {unknown}; the fields are {list(NEWS_FIELDS)}")
        for f in NEWS_FIELDS:
            if row.get(f) is not None:
                check_text(row[f], f"news {i}: {f}")
        if not row.get("news_id") or not row["news_id"].strip():
            raise ValueError(f"news {i}: news_id is required")
        if row["news_id"] in reserved:
            raise ValueError(f"news {i}: {row['news_id']!r} is a reserved id (the padding news)")
        if not (row.get("title") or "").strip():
            raise ValueError(f"news {i} ({row['news_id']}): a title is required")
        out.append(dict(row))
    ids = [r["news_id"] for r in out]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ValueError(f"news id(s) given more than once: {dup[:5]}")
    return out


def check_k(k, what: str = "k") -> int:
    """``k`` as an ``int`` if it is a whole number >= 1 (a Python or numpy integer, not a bool);
    else one ``ValueError`` naming ``what``."""
    if isinstance(k, (bool, np.bool_)) or not hasattr(type(k), "__index__") or operator.index(k) < 1:
        raise ValueError(f"{what} must be a whole number >= 1, got {k!r}")
    return operator.index(k)


def index_fields(requirements) -> tuple[str, ...]:
    """The news fields a served index keeps: the model's, and ``entities`` where the model reads
    the entity graph (the live graph links the entities of consecutive clicks, whichever entity
    field the model reads: DKN reads ``title_entity_words``)."""
    fields = tuple(requirements.news_fields)
    return fields + ("entities",) if requirements.entity_neighbors is not None and "entities" not in fields else fields


def check_text(value, what: str) -> str:
    """``value`` if it is a string that is valid UTF-8 text; else one error naming ``what`` (a
    lone surrogate such as ``"\\ud800"``, which JSON can carry, could be stored but never sent)."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string, got {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what} {value!r} is not valid UTF-8 text (a lone surrogate)") from None
    return value


#: a request's user: its history (index rows, oldest first) and user-vocabulary row (0: unknown)
UserKey = tuple[tuple[int, ...], int]


class Recommendations(list):
    """A list of ``(news_id, score)``, best first, with ``unknown_history``: the history ids
    that are not in the news index (ignored)."""

    def __init__(self, items: Sequence[tuple[str, float]], unknown_history: Sequence[str] = ()) -> None:
        super().__init__(items)
        self.unknown_history = list(unknown_history)
