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
    "derived_news_arrays",
    "encode_derived_rows",
    "click_graph_arrays",
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


def derived_news_arrays(root: str | os.PathLike, corpus: NewsCorpus, requirements, train=None) -> dict[str, np.ndarray]:
    """The news fields made from the raw files for a model that asks for them (each cached
    under ``root/processed/``): the ``plm_*`` token ids (:func:`~newsrec.data.plm_text.plm_token_arrays`),
    ``title_entity_words`` (:func:`~newsrec.data.entity_alignment.title_entity_words`) and
    KRED's entity context (:func:`~newsrec.data.entity_alignment.entity_context_arrays`), and
    the click graph's neighbour tables (``user_news_graph``; ``train``: ``() -> Behaviors`` of
    the training split)."""
    from newsrec.data import entity_alignment as ea
    from newsrec.data.plm_text import plm_token_arrays

    out = plm_token_arrays(root, corpus, requirements)
    fields = () if requirements is None else requirements.news_fields
    files = [f / "news.tsv" for f in split_files(root).values()]
    if ea.TITLE_ENTITY_FIELD in fields:
        out[ea.TITLE_ENTITY_FIELD] = ea.title_entity_words(root, corpus, files)
    if any(f in fields for f in ea.ENTITY_CONTEXT_FIELDS):
        out.update(ea.entity_context_arrays(root, corpus, files))
    if requirements is not None and requirements.user_news_graph is not None:
        out.update(click_graph_arrays(root, corpus, train(), int(requirements.user_news_graph)))
    return out


def click_graph_arrays(root: str | os.PathLike, corpus: NewsCorpus, train: Behaviors, num_neighbors: int) -> dict:
    """``news_clickers`` and ``news_coclicked`` ``[N, M]`` (:func:`~newsrec.graphs.sample_bipartite_neighbors`
    over the training histories, seed 0), cached under ``root/processed/``."""
    from newsrec.core.requirements import CLICK_GRAPH_FIELDS
    from newsrec.graphs import sample_bipartite_neighbors

    key = cache_key("click-graph", corpus.news_ids[:50], len(corpus), train.impression_ids[:1000].tolist(), len(train))

    def build() -> tuple[dict, dict]:
        values, offsets, users = train.user_sequences(return_users=True)
        tables = sample_bipartite_neighbors((values, offsets), users, len(train.user_ids), len(corpus), num_neighbors)
        return {"news_clickers": tables.news_clickers, "news_coclicked": tables.news_coclicked}, {}

    arrays, _ = ArrayCache(Path(root) / "processed").load_or_build(f"click-graph-{num_neighbors}-{key}", build)
    return {f: np.asarray(arrays[f]) for f in CLICK_GRAPH_FIELDS}


def encode_derived_rows(rows, derived: dict[str, np.ndarray], requirements, corpus: NewsCorpus) -> dict:
    """The derived fields (``derived``: :func:`derived_news_arrays`) of new news ``rows`` (MIND's
    news.tsv fields per dict), made exactly as for the corpus."""
    from newsrec.data.entity_alignment import (
        ENTITY_CONTEXT_FIELDS,
        TITLE_ENTITY_FIELD,
        align_title_entities,
        entity_context,
    )
    from newsrec.data.plm_text import PLM_FIELD_PREFIX, load_tokenizer, tokenize_texts

    out = {}
    plm = [f for f in derived if f.startswith(PLM_FIELD_PREFIX)]
    if plm:
        tokenizer = load_tokenizer(requirements.text_tokenizer["path"])
        for field in plm:
            texts = [row.get(field[len(PLM_FIELD_PREFIX) :]) or "" for row in rows]
            out[field] = tokenize_texts(tokenizer, texts, derived[field].shape[1]).astype(derived[field].dtype)
    if TITLE_ENTITY_FIELD in derived:
        length, stoi = derived[TITLE_ENTITY_FIELD].shape[1], corpus.entity_vocab.stoi
        ids = [
            align_title_entities(r.get("title") or "", r.get("title_entities") or "", stoi.get, length)[0] for r in rows
        ]
        out[TITLE_ENTITY_FIELD] = np.asarray(ids, np.int32).reshape(len(rows), length)
    for field in ("news_clickers", "news_coclicked"):  # a news added after training has no clicks
        if field in derived:
            out[field] = np.zeros((len(rows), derived[field].shape[1]), derived[field].dtype)
    if ENTITY_CONTEXT_FIELDS[0] in derived:  # of the entities corpus.encode_rows picks for each row
        itos = corpus.entity_vocab.itos
        picked = corpus.encode_rows(rows)["entities"]
        context = [
            entity_context(
                r.get("title_entities") or "", r.get("abstract_entities") or "", [itos[e] if e else "" for e in p]
            )
            for r, p in zip(rows, picked)
        ]
        stacked = np.stack(context, 1) if context else np.zeros((3, 0, picked.shape[1]), np.int32)
        out.update(zip(ENTITY_CONTEXT_FIELDS, stacked))
    return out
