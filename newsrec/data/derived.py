"""News fields derived from the raw files for the models that ask for them (each built once and
cached under ``root/processed/``; made the same way for news that serving adds)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from newsrec.core.cache import ArrayCache, cache_key
from newsrec.core.requirements import SEMANTIC_EDGE_FIELD, SEMANTIC_GRAPH_FIELD, SEMANTIC_NEIGHBOR_FIELD
from newsrec.data.behaviors import Behaviors
from newsrec.data.corpus import NewsCorpus
from newsrec.data.prepare import split_files

__all__ = [
    "click_graph_arrays",
    "derived_news_arrays",
    "encode_derived_rows",
    "nearest_by_title",
    "semantic_neighbor_array",
]


def derived_news_arrays(
    root: str | os.PathLike, corpus: NewsCorpus, requirements, train=None, word_vectors=None
) -> dict[str, np.ndarray]:
    """The news fields made from the raw files for a model that asks for them (each cached
    under ``root/processed/``): the ``plm_*`` token ids (:func:`~newsrec.data.plm_text.plm_token_arrays`),
    ``title_entity_words`` (:func:`~newsrec.data.entity_alignment.title_entity_words`) and
    KRED's entity context (:func:`~newsrec.data.entity_alignment.entity_context_arrays`), and
    the click graph's neighbour tables (``user_news_graph``; ``train``: ``() -> Behaviors`` of
    the training split), and the nearest news by title (``semantic_neighbors``;
    ``word_vectors``: ``() -> [num_words, d] | None``)."""
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
    if SEMANTIC_NEIGHBOR_FIELD in fields:
        out[SEMANTIC_NEIGHBOR_FIELD] = semantic_neighbor_array(root, corpus, train(), word_vectors)
    sag = None if requirements is None else requirements.semantic_graph
    if sag is not None or SEMANTIC_GRAPH_FIELD in fields:  # DIGAT's graphs (newsrec.data.semantic_graph)
        from newsrec.data.semantic_graph import semantic_graph_arrays

        out.update(semantic_graph_arrays(root, corpus, train(), sag or {}, word_vectors))
    return out


#: nearest news kept per news (``semantic_neighbors``)
SEMANTIC_NEIGHBORS = 8


def nearest_by_title(titles: np.ndarray, idf: np.ndarray, word_vectors: np.ndarray, k: int) -> np.ndarray:
    """int64 ``[N, k]``: for every news (row of ``titles [N, L]``, word ids, 0 = padding) the
    ``k`` other news whose title embeddings (the IDF-weighted mean of the word vectors) have the
    highest cosine, exactly, in chunks of 4,096 rows (``[4096, N]`` similarities at a time); row
    0 and titles without words get none (0)."""
    import torch

    titles = np.asarray(titles, np.int64)
    weights = torch.from_numpy(np.asarray(idf, np.float32)[titles])  # [N, L], 0 at padding
    table = torch.as_tensor(word_vectors, dtype=torch.float32)
    vectors = torch.zeros(len(titles), table.shape[1])
    for start in range(0, len(titles), 65536):  # never [N, L, d] at once
        chunk = slice(start, start + 65536)
        vectors[chunk] = torch.einsum("nl,nld->nd", weights[chunk], table[titles[chunk]])
    vectors = torch.nn.functional.normalize(vectors, dim=-1)
    empty = weights.sum(1) == 0
    out = np.zeros((len(titles), k), np.int64)
    k_eff = max(0, min(k, len(titles) - 2))
    for start in range(1, len(titles), 4096):
        sim = vectors[start : start + 4096] @ vectors.T
        sim[:, 0] = -2.0
        sim[:, empty] = -2.0
        sim[torch.arange(len(sim)), torch.arange(start, start + len(sim))] = -2.0  # not itself
        top = sim.topk(k_eff, dim=1)
        out[start : start + len(sim), :k_eff] = torch.where(top.values > -2.0, top.indices, 0).numpy()
    out[empty.numpy()] = 0
    return out


def semantic_neighbor_array(root, corpus: NewsCorpus, train: Behaviors, word_vectors=None) -> np.ndarray:
    """int64 ``[N, SEMANTIC_NEIGHBORS]``: each news' nearest other news by the cosine of their
    title embeddings (the IDF-weighted mean of the title's word vectors: the data's pretrained
    ones, or fixed seeded random vectors without them; IDF of the training split), exact top-k
    in chunks; row 0 and titles without words: none (0). Cached under ``root/processed/``."""
    from newsrec.data.statistics import training_news_rows, word_idf

    titles = np.asarray(corpus.arrays["title"]).astype(np.int64)
    matrix = word_vectors() if word_vectors is not None else None
    source = "pretrained" if matrix is not None else "random"
    key = cache_key("semantic", corpus.news_ids[:50], len(corpus), len(train), SEMANTIC_NEIGHBORS, source)

    def build() -> tuple[dict, dict]:
        vectors = matrix if matrix is not None else np.random.default_rng(0).standard_normal((len(corpus.vocab), 64))
        idf = word_idf(titles, training_news_rows(train), len(corpus.vocab))
        return {"neighbors": nearest_by_title(titles, idf, vectors, SEMANTIC_NEIGHBORS)}, {"source": source}

    arrays, _ = ArrayCache(Path(root) / "processed").load_or_build(f"semantic-{key}", build)
    return np.asarray(arrays["neighbors"])


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


def encode_derived_rows(
    rows, derived: dict[str, np.ndarray], requirements, corpus: NewsCorpus, encoded: dict[str, np.ndarray]
) -> dict:
    """The derived fields (``derived``: :func:`derived_news_arrays`) of new news ``rows`` (MIND's
    news.tsv fields per dict), made exactly as for the corpus; ``encoded``: the rows' corpus
    arrays (:meth:`NewsCorpus.encode_rows`), whose kept entities KRED's context describes."""
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
    for field in ("news_clickers", "news_coclicked", SEMANTIC_NEIGHBOR_FIELD):  # none for news added later
        if field in derived:
            out[field] = np.zeros((len(rows), derived[field].shape[1]), derived[field].dtype)
    if SEMANTIC_GRAPH_FIELD in derived:  # nor a semantic graph: the news alone
        out[SEMANTIC_GRAPH_FIELD] = np.zeros((len(rows), derived[SEMANTIC_GRAPH_FIELD].shape[1]), np.int64)
        out[SEMANTIC_EDGE_FIELD] = np.full((len(rows), derived[SEMANTIC_EDGE_FIELD].shape[1]), -1, np.int64)
    if ENTITY_CONTEXT_FIELDS[0] in derived:  # of the entities corpus.encode_rows picks for each row
        itos = corpus.entity_vocab.itos
        picked = encoded["entities"]
        context = [
            entity_context(
                r.get("title_entities") or "", r.get("abstract_entities") or "", [itos[e] if e else "" for e in p]
            )
            for r, p in zip(rows, picked)
        ]
        stacked = np.stack(context, 1) if context else np.zeros((3, 0, picked.shape[1]), np.int32)
        out.update(zip(ENTITY_CONTEXT_FIELDS, stacked))
    return out
