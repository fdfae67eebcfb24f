"""NewsCorpus: every news of a MIND root as fixed-size integer arrays."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from newsrec.data.mind import read_news
from newsrec.data.text import PAD, Vocabulary, tokenize
from newsrec.errors import DataFormatError
from newsrec.utils import progress

__all__ = ["CorpusConfig", "NewsCorpus", "parse_entities"]

ARRAY_FIELDS = ("title", "abstract", "category", "subcategory", "entities", "entity_text")


@dataclass
class CorpusConfig:
    """Sizes and sources of the corpus arrays.

    Attributes:
        title_length: tokens kept per title (L_title = 30 in GLORY and FUM).
        abstract_length: tokens kept per abstract (FUM: 50).
        num_entities: entities kept per news (L_entity = 5).
        entity_text_length: tokens of the concatenated entity labels kept per news (for FUM).
        entity_sources: where entities come from: ``("title",)`` as the official GLORY code, or
            ``("title", "abstract")``.
        min_word_count: words seen fewer times in training news map to ``<unk>``.
        max_vocab_size: at most this many words (besides pad/unk), most frequent first.
    """

    title_length: int = 30
    abstract_length: int = 50
    num_entities: int = 5
    entity_text_length: int = 20
    entity_sources: tuple[str, ...] = ("title", "abstract")
    min_word_count: int = 1
    max_vocab_size: int | None = None

    def __post_init__(self) -> None:
        self.entity_sources = tuple(self.entity_sources)
        for s in self.entity_sources:
            if s not in ("title", "abstract"):
                raise ValueError(f"entity source must be 'title' or 'abstract', got {s!r}")


def parse_entities(text: str, source_rank: int = 0) -> list[tuple[float, int, int, str, str]]:
    """Parse a MIND entity JSON list into ``(-confidence, source_rank, first_offset, id, label)``
    tuples (so that sorting orders them by confidence, then source, then position)."""
    if not text or text == "[]":
        return []
    items = json.loads(text)
    if not isinstance(items, list):
        raise ValueError("entity field is not a JSON list")
    out = []
    for k, it in enumerate(items):
        if not isinstance(it, dict) or "WikidataId" not in it:
            raise ValueError(f"entity {k} has no WikidataId")
        wid = it["WikidataId"]
        if not isinstance(wid, str) or not wid:
            raise ValueError(f"entity {k}: WikidataId must be a non-empty string, got {wid!r}")
        conf = it.get("Confidence", 0.0)
        if isinstance(conf, bool) or not isinstance(conf, (int, float)) or not math.isfinite(conf):
            raise ValueError(f"entity {k} ({wid}): Confidence must be a finite number, got {conf!r}")
        offsets = it.get("OccurrenceOffsets") or [0]
        if not isinstance(offsets, list) or not all(
            isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in offsets
        ):
            raise ValueError(f"entity {k} ({wid}): OccurrenceOffsets must be a list of offsets >= 0, got {offsets!r}")
        label = it.get("Label", "")
        if not isinstance(label, str):
            raise ValueError(f"entity {k} ({wid}): Label must be a string, got {label!r}")
        out.append((-float(conf), source_rank, int(min(offsets)), wid, label))
    return out


def _pad_rows(rows: list[list[int]], length: int) -> np.ndarray:
    out = np.zeros((len(rows), length), dtype=np.int32)
    for i, r in enumerate(rows):
        r = r[:length]
        out[i, : len(r)] = r
    return out


def _pick_entities(found: list, limit: int, entity_id) -> tuple[list[int], list[str]]:
    """The first ``limit`` distinct entities of sorted ``found`` tuples that ``entity_id`` maps to
    an id (``None`` = skip), and their labels."""
    ids, labels, used = [], [], set()
    for _, _, _, wid, label in found:
        if wid in used:
            continue
        used.add(wid)
        eid = entity_id(wid)
        if eid is None:
            continue
        ids.append(eid)
        labels.append(label)
        if len(ids) == limit:
            break
    return ids, labels


class NewsCorpus:
    """All news as fixed-size integer arrays; row 0 is the padding news (all zeros).

    Arrays (``N`` = number of news + 1):
        ``title [N, title_length]``, ``abstract [N, abstract_length]`` (word ids, 0 = pad),
        ``category [N]``, ``subcategory [N]`` (ids, 0 = pad, 1 = unknown),
        ``entities [N, num_entities]`` (entity ids, ordered by confidence then position),
        ``entity_text [N, entity_text_length]`` (word ids of the entity labels).

    News of the first table (training news) are numbered first; news that only later tables
    (dev/test) hold extend the index without renumbering. Vocabularies (words, categories) are
    built from the training news only (``vocab``, ``category_vocab``, ``subcategory_vocab``);
    entity ids (``entity_vocab``, WikidataId → id) cover all news (their pretrained TransE
    vectors come with every split).
    """

    def __init__(
        self,
        news_ids: list[str],
        arrays: dict[str, np.ndarray],
        vocab: Vocabulary,
        categories: Vocabulary,
        subcategories: Vocabulary,
        entities: Vocabulary,
        config: CorpusConfig,
        num_train_news: int,
    ) -> None:
        self.news_ids = news_ids
        self.news_index = {n: i for i, n in enumerate(news_ids)}
        self.arrays = arrays
        self.vocab = vocab
        self.category_vocab = categories
        self.subcategory_vocab = subcategories
        self.entity_vocab = entities
        self.config = config
        self.num_train_news = num_train_news
        self._tensors: dict[str, torch.Tensor] = {}
        self._id_set: pa.Array | None = None

    def __len__(self) -> int:
        return len(self.news_ids)

    def __getattr__(self, name: str):
        if name in ARRAY_FIELDS and "arrays" in self.__dict__:
            return self.__dict__["arrays"][name]
        raise AttributeError(name)

    def tensor(self, field: str) -> torch.Tensor:
        """The array ``field`` as an int64 tensor (cached)."""
        if field not in self._tensors:
            self._tensors[field] = torch.from_numpy(np.asarray(self.arrays[field]).astype(np.int64))
        return self._tensors[field]

    def lookup(self, ids: Sequence[str] | pa.Array) -> np.ndarray:
        """Map news ids to corpus rows (int32); unknown ids map to ``-1``."""
        if not isinstance(ids, (pa.Array, pa.ChunkedArray)):
            ids = pa.array(ids, pa.string())
        if self._id_set is None:
            self._id_set = pa.array(self.news_ids, pa.string())
        idx = pc.index_in(ids, value_set=self._id_set)
        return idx.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int32)

    @classmethod
    def from_files(
        cls, paths: Sequence[str | os.PathLike], config: CorpusConfig | None = None, *, show_progress: bool = False
    ) -> NewsCorpus:
        """Build from ``news.tsv`` files, the training split's first."""
        tables = [read_news(p) for p in paths]
        return cls.build(tables, config, names=[str(p) for p in paths], show_progress=show_progress)

    @classmethod
    def build(
        cls,
        tables: Sequence[pa.Table],
        config: CorpusConfig | None = None,
        *,
        names: Sequence[str] | None = None,
        show_progress: bool = False,
    ) -> NewsCorpus:
        """Build from news tables (:func:`newsrec.data.read_news`), the training split's first."""
        config = config or CorpusConfig()
        names = list(names) if names is not None else [f"news table {i}" for i in range(len(tables))]
        news_ids: list[str] = ["<pad>"]
        rows: list[tuple[int, int]] = []  # (table, row) of each corpus row after the pad
        seen: dict[str, int] = {}
        for t, table in enumerate(tables):
            for r, nid in enumerate(table.column("news_id").to_pylist()):
                if nid not in seen:
                    seen[nid] = len(news_ids)
                    news_ids.append(nid)
                    rows.append((t, r))
        num_train = (tables[0].num_rows if tables else 0) + 1
        cols = {
            c: [tb.column(c).to_pylist() for tb in tables]
            for c in ("title", "abstract", "category", "subcategory", "title_entities", "abstract_entities")
        }
        titles = [tokenize(cols["title"][t][r]) for t, r in rows]
        abstracts = [tokenize(cols["abstract"][t][r]) for t, r in rows]
        train_rows = num_train - 1
        vocab = Vocabulary.build(
            (titles[i] + abstracts[i] for i in range(train_rows)),
            min_count=config.min_word_count,
            max_size=config.max_vocab_size,
        )
        categories = Vocabulary.build([[cols["category"][t][r]] for t, r in rows[:train_rows]])
        subcategories = Vocabulary.build([[cols["subcategory"][t][r]] for t, r in rows[:train_rows]])
        entity_vocab = Vocabulary()
        entity_rows: list[list[int]] = []
        entity_text_rows: list[list[int]] = []
        iterator = progress(rows, desc="entities", disable=not show_progress)
        for t, r in iterator:
            found = []
            for rank, src in enumerate(config.entity_sources):
                text = cols[f"{src}_entities"][t][r]
                try:
                    found += parse_entities(text, rank)
                except (ValueError, TypeError) as e:
                    raise DataFormatError(names[t], r + 1, f"malformed {src} entity JSON ({e})") from None
            found.sort()
            ids, labels = _pick_entities(found, config.num_entities, entity_vocab.add)
            entity_rows.append(ids)
            entity_text_rows.append(vocab.encode([w for lb in labels for w in tokenize(lb)]))
        arrays = {
            "title": _pad_rows([[]] + [vocab.encode(x) for x in titles], config.title_length),
            "abstract": _pad_rows([[]] + [vocab.encode(x) for x in abstracts], config.abstract_length),
            "category": np.array([PAD] + [categories[cols["category"][t][r]] for t, r in rows], dtype=np.int32),
            "subcategory": np.array(
                [PAD] + [subcategories[cols["subcategory"][t][r]] for t, r in rows], dtype=np.int32
            ),
            "entities": _pad_rows([[]] + entity_rows, config.num_entities),
            "entity_text": _pad_rows([[]] + entity_text_rows, config.entity_text_length),
        }
        return cls(news_ids, arrays, vocab, categories, subcategories, entity_vocab, config, num_train)

    def encode_rows(self, rows: Sequence[dict], *, name: str = "news rows") -> dict[str, np.ndarray]:
        """Arrays of new news (one dict per article with MIND's news.tsv fields: ``title``,
        ``abstract``, ``category``, ``subcategory``, ``title_entities``, ``abstract_entities``;
        missing text fields count as empty), tokenised with this corpus's vocabularies exactly as
        :meth:`build` does: unknown words are ``<unk>``, unknown categories ``1``, and entities
        without an id here are left out (they have no vector). Used by serving to add fresh
        articles without retraining. Returns ``{field: [len(rows), ...]}`` in the corpus dtypes."""
        cfg = self.config
        known = self.entity_vocab.stoi
        titles, abstracts, cats, subcats, ents, ent_text = [], [], [], [], [], []
        for i, row in enumerate(rows):
            found = []
            for rank, src in enumerate(cfg.entity_sources):
                try:
                    found += parse_entities(row.get(f"{src}_entities") or "", rank)
                except (ValueError, TypeError) as e:
                    raise DataFormatError(name, i + 1, f"malformed {src} entity JSON ({e})") from None
            found.sort()
            ids, labels = _pick_entities(found, cfg.num_entities, known.get)
            titles.append(self.vocab.encode(tokenize(row.get("title") or "")))
            abstracts.append(self.vocab.encode(tokenize(row.get("abstract") or "")))
            cats.append(self.category_vocab[row.get("category") or ""])
            subcats.append(self.subcategory_vocab[row.get("subcategory") or ""])
            ents.append(ids)
            ent_text.append(self.vocab.encode([w for lb in labels for w in tokenize(lb)]))
        return {
            "title": _pad_rows(titles, cfg.title_length),
            "abstract": _pad_rows(abstracts, cfg.abstract_length),
            "category": np.array(cats, dtype=np.int32).reshape(-1),
            "subcategory": np.array(subcats, dtype=np.int32).reshape(-1),
            "entities": _pad_rows(ents, cfg.num_entities),
            "entity_text": _pad_rows(ent_text, cfg.entity_text_length),
        }

    # -- persistence -------------------------------------------------------------------------
    def to_cache(self) -> tuple[dict[str, np.ndarray], dict]:
        meta = {
            "news_ids": self.news_ids,
            "vocab": self.vocab.itos,
            "categories": self.category_vocab.itos,
            "subcategories": self.subcategory_vocab.itos,
            "entities": self.entity_vocab.itos,
            "config": asdict(self.config),
            "num_train_news": self.num_train_news,
        }
        return dict(self.arrays), meta

    @classmethod
    def from_cache(cls, arrays: dict[str, np.ndarray], meta: dict) -> NewsCorpus:
        def voc(itos: list[str]) -> Vocabulary:
            return Vocabulary(itos[2:])

        config = CorpusConfig(**{**meta["config"], "entity_sources": tuple(meta["config"]["entity_sources"])})
        return cls(
            meta["news_ids"],
            {k: np.asarray(arrays[k]) for k in ARRAY_FIELDS},
            voc(meta["vocab"]),
            voc(meta["categories"]),
            voc(meta["subcategories"]),
            voc(meta["entities"]),
            config,
            meta["num_train_news"],
        )

    def save(self, directory: str | os.PathLike) -> None:
        from newsrec.core.cache import ArrayCache

        arrays, meta = self.to_cache()
        ArrayCache(Path(directory).parent).save(Path(directory).name, arrays, meta)

    @classmethod
    def load(cls, directory: str | os.PathLike) -> NewsCorpus:
        from newsrec.core.cache import ArrayCache

        got = ArrayCache(Path(directory).parent).load(Path(directory).name)
        if got is None:
            raise FileNotFoundError(f"no valid corpus cache at {directory}")
        return cls.from_cache(*got)

    def __repr__(self) -> str:
        return (
            f"NewsCorpus(news={len(self) - 1}, words={len(self.vocab)}, "
            f"entities={len(self.entity_vocab)}, categories={len(self.category_vocab)})"
        )
