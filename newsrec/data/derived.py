"""News fields derived from the raw files for the models that ask for them (each built once and
cached under ``root/processed/``; made the same way for news that serving adds)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from newsrec.core.cache import ArrayCache, cache_key
from newsrec.data.behaviors import Behaviors
from newsrec.data.corpus import NewsCorpus
from newsrec.data.prepare import split_files

__all__ = ["click_graph_arrays", "derived_news_arrays", "encode_derived_rows"]


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
