"""Preparation of a MIND root: corpus and behaviors, cached under ``root/processed/``."""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np

from newsrec.core.cache import ArrayCache, cache_key, file_fingerprint
from newsrec.data.behaviors import Behaviors
from newsrec.data.corpus import CorpusConfig, NewsCorpus
from newsrec.errors import DataFormatError

__all__ = [
    "SPLITS",
    "data_signature",
    "drop_note",
    "load_behaviors",
    "load_corpus",
    "load_graphs",
    "load_word_matrix",
    "missing_vector_notes",
    "prepare",
    "split_files",
]

SPLITS = ("train", "dev", "test")


def split_files(root: str | os.PathLike) -> dict[str, Path]:
    """The split folders of ``root`` that hold both ``news.tsv`` and ``behaviors.tsv``."""
    root = Path(root)
    out = {s: root / s for s in SPLITS if (root / s / "news.tsv").exists() and (root / s / "behaviors.tsv").exists()}
    if "train" not in out:
        raise FileNotFoundError(
            f"{root} is not a MIND root: {root / 'train'} must hold news.tsv and behaviors.tsv "
            "(see newsrec.data.download_mind or `newsrec synth`)"
        )
    return out


def _require_rows(path: Path, what: str) -> None:
    """A used split's file with no rows is an error (it would give an empty vocabulary or no
    impressions without a word)."""
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    if not head.replace(b"\xef\xbb\xbf", b"").strip():  # nothing but a BOM and white space
        raise DataFormatError(path, None, f"is empty: a split needs its {what} (fill it, or remove the split folder)")


def _corpus_key(root: Path, config: CorpusConfig) -> str:
    files = split_files(root)
    return cache_key("corpus", [file_fingerprint(files[s] / "news.tsv") for s in files], asdict(config))


def load_corpus(
    root: str | os.PathLike, config: CorpusConfig | None = None, *, show_progress: bool = False
) -> NewsCorpus:
    """The corpus of every split's news, built once and cached under ``root/processed/``."""
    root = Path(root)
    config = config or CorpusConfig()
    cache = ArrayCache(root / "processed")
    built: dict[str, NewsCorpus] = {}

    def build():
        files = split_files(root)
        for s in files:
            _require_rows(files[s] / "news.tsv", "news")
        built["corpus"] = NewsCorpus.from_files(
            [files[s] / "news.tsv" for s in files], config, show_progress=show_progress
        )
        return built["corpus"].to_cache()

    got = cache.load_or_build("corpus-" + _corpus_key(root, config), build)
    return built["corpus"] if built else NewsCorpus.from_cache(*got)


def load_behaviors(
    root: str | os.PathLike,
    split: str,
    corpus: NewsCorpus,
    *,
    missing: str = "error",
    show_progress: bool = False,
) -> Behaviors:
    """The behaviors of one split, mapped to corpus rows and cached under ``root/processed/``."""
    root = Path(root)
    path = split_files(root).get(split)
    if path is None:
        raise FileNotFoundError(f"{root} has no {split}/ split with news.tsv and behaviors.tsv")
    key = cache_key("behaviors", split, file_fingerprint(path / "behaviors.tsv"), missing, cache_key(corpus.news_ids))
    cache = ArrayCache(root / "processed")
    built: dict[str, Behaviors] = {}

    def build():
        _require_rows(path / "behaviors.tsv", "impressions")
        built["b"] = Behaviors.from_file(
            path / "behaviors.tsv", corpus.lookup, missing=missing, show_progress=show_progress
        )
        return built["b"].to_cache()

    got = cache.load_or_build(f"behaviors-{split}-{key}", build)
    if built:
        return built["b"]  # Behaviors.from_file said what it dropped
    b = Behaviors.from_cache(*got)
    if b.num_missing:  # said when the cache was built; say it again whenever it is used
        warnings.warn(drop_note(split, b), UserWarning, stacklevel=2)
    return b


def drop_note(split: str, behaviors: Behaviors) -> str:
    """One line on what the ``missing="drop"`` policy removed from a split."""
    return (
        f"{split}: {behaviors.num_missing} news id occurrences unknown to the news files were dropped "
        f"(missing='drop'), and {behaviors.num_dropped_impressions} impressions left without candidates; "
        "metrics on such data are not comparable with the full data's"
    )


def prepare(
    root: str | os.PathLike, config: CorpusConfig | None = None, *, missing: str = "error", show_progress: bool = True
) -> dict[str, object]:
    """Build (or load) the corpus and every split's behaviors; returns them by name."""
    corpus = load_corpus(root, config, show_progress=show_progress)
    out: dict[str, object] = {"corpus": corpus}
    for split in split_files(root):
        out[split] = load_behaviors(root, split, corpus, missing=missing, show_progress=show_progress)
    return out


def load_word_matrix(root: str | os.PathLike, file: str, vocab):
    """``(matrix [len(vocab), dim], PretrainedCoverage)``: the word vectors of ``root/file``
    (GloVe format) in ``vocab``'s row order, parsed once per file and vocabulary (GloVe 840B
    takes a minute) and cached under ``root/processed/``."""
    from newsrec.data.text import PretrainedCoverage, load_word_vectors

    path = Path(root) / file

    def parse() -> tuple[dict, dict]:
        matrix, coverage = load_word_vectors(vocab, path, show_progress=True)
        return {"matrix": matrix}, {"found": coverage.found, "total": coverage.total}

    name = "word-vectors-" + cache_key(file_fingerprint(path), vocab.itos)
    arrays, meta = ArrayCache(Path(root) / "processed").load_or_build(name, parse)
    return np.asarray(arrays["matrix"]), PretrainedCoverage(meta["found"], meta["total"])


def missing_vector_notes(root: str | os.PathLike, word_vectors: str | None = "word_vectors.txt") -> list[str]:
    """One sentence per pretrained-vector file a root lacks, saying what happens without it
    (the models then start those embeddings from random values)."""
    root = Path(root)
    notes = []
    if word_vectors is not None and not (root / word_vectors).exists():
        notes.append(
            f"no {root / word_vectors}: word embeddings start random (place GloVe there, "
            "e.g. glove.840B.300d.txt, or set data.word_vectors)"
        )
    splits = split_files(root)
    if splits and not any((d / "entity_embedding.vec").exists() for d in splits.values()):
        notes.append(f"no entity_embedding.vec in any split of {root}: entity embeddings start random")
    return notes


def load_graphs(root: str | os.PathLike, corpus: NewsCorpus, train: Behaviors, requirements):
    """The news graph and the entity graph a model's :class:`~newsrec.core.DataRequirements`
    name (``None`` for those it does not), built from the training clicks once and cached under
    ``root/processed/`` (:func:`~newsrec.graphs.load_or_build_graph`), keyed by the corpus, the
    training split and the build options."""
    from newsrec.graphs import build_entity_graph, build_news_graph, load_or_build_graph

    base = cache_key(corpus.news_ids, train.impression_ids[:1000].tolist(), len(train))
    processed = Path(root) / "processed"
    news_graph = entity_graph = None
    if requirements.news_graph is not None:
        opts = asdict(requirements.news_graph)
        news_graph = load_or_build_graph(
            processed / f"news-graph-{cache_key(base, opts)}",
            lambda: build_news_graph(train.user_sequences(), len(corpus), **opts),
            {"options": json.dumps(opts)},
        )
    if requirements.entity_neighbors is not None:
        opts = dict(requirements.entity_graph or {})
        entity_graph = load_or_build_graph(
            processed / f"entity-graph-{cache_key(base, opts)}",
            lambda: build_entity_graph(train.user_sequences(), corpus.entities, len(corpus.entity_vocab), **opts),
            {"options": json.dumps(opts)},
        )
    return news_graph, entity_graph


def data_signature(
    root: str | os.PathLike, corpus: NewsCorpus, history_length: int, missing: str, word_vectors: str | None
) -> dict:
    """What a trained model's data must match (stored in its checkpoints; checked by serving and
    every command): the root, the corpus settings and CRC-32 checksums of the vocabulary and of
    the news ids in corpus order. Plain JSON values."""
    import zlib

    return {
        "root": str(Path(root).resolve()),
        "corpus_config": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(corpus.config).items()},
        "history_length": history_length,
        "missing": missing,
        "word_vectors": word_vectors,
        "vocabulary_crc32": zlib.crc32("\n".join(corpus.vocab.itos).encode()),
        "news_ids_crc32": zlib.crc32("\n".join(corpus.news_ids).encode()),
        "num_news": len(corpus),
    }
