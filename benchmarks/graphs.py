"""Graph benchmark: global news/entity graph construction at MIND-large size, the user–news click
graph and its neighbour tables (GERL, GNewsRec), and the k-hop sampler against one
``torch_geometric.utils.k_hop_subgraph`` call per user.

    python benchmarks/graphs.py [--quick]

The MIND-large-sized click sequences (1M users, 160k news, ~24M clicks) are drawn directly
(popularity-weighted clicks with story-chain transitions, as the synthetic world draws its
histories) rather than written to and re-read from TSV files, so the figures are the
builders' own.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import emit, machine, run_phase, table  # noqa: E402


def sequences(users: int, news: int, mean_len: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 2 * mean_len, users)
    pop = 1.0 / np.arange(1, news + 1) ** 0.8
    cdf = np.cumsum(pop) / pop.sum()
    succ = rng.integers(1, news, news)
    width = int(lengths.max())
    out = np.zeros((users, width), np.int64)
    last = np.minimum(np.searchsorted(cdf, rng.random(users)), news - 1)
    for t in range(width):
        draw = np.minimum(np.searchsorted(cdf, rng.random(users)), news - 1)
        follow = rng.random(users) < 0.3
        cur = np.where(follow & (t > 0), succ[last], draw)
        out[:, t] = cur
        last = cur
    mask = np.arange(width)[None, :] < lengths[:, None]
    return out[mask], np.concatenate([[0], np.cumsum(lengths)])


def phase_build(users: int, news: int, mean_len: int) -> None:
    from newsrec.graphs import KHopSampler, build_entity_graph, build_news_graph

    values, offsets = sequences(users, news, mean_len)
    # 0-3 title entities per news, Zipf-popular over 30k entities (MIND-large-like)
    rng = np.random.default_rng(1)
    num_entities = 30000
    pop = 1.0 / np.arange(1, num_entities) ** 0.9
    ents = 1 + np.searchsorted(np.cumsum(pop) / pop.sum(), rng.random((news, 5)))
    ents = np.minimum(ents, num_entities - 1)
    ents[np.arange(5)[None, :] >= rng.integers(0, 4, news)[:, None]] = 0
    t = time.perf_counter()
    g = build_news_graph((values, offsets), news)
    t_news = time.perf_counter() - t
    t = time.perf_counter()
    KHopSampler(g, 8, 2)  # the neighbour tables
    t_tables = time.perf_counter() - t
    t = time.perf_counter()
    eg = build_entity_graph((values, offsets), ents, num_entities)
    t_ent = time.perf_counter() - t
    emit(
        {
            "clicks": int(len(values)),
            "news_graph_s": t_news,
            "tables_s": t_tables,
            "entity_graph_s": t_ent,
            "news_edges": int(g.edge_index.shape[1]),
            "entity_edges": int(eg.edge_index.shape[1]),
        }
    )


def phase_bipartite(users: int, news: int, mean_len: int) -> None:
    """GERL's and GNewsRec's user-news click graph and its sampled neighbour tables (M = 15)."""
    from newsrec.graphs import bipartite_click_graph, sample_bipartite_neighbors

    values, offsets = sequences(users, news, mean_len)
    owners = np.arange(users)
    t = time.perf_counter()
    g = bipartite_click_graph((values, offsets), owners, users, news)
    t_graph = time.perf_counter() - t
    t = time.perf_counter()
    tables = sample_bipartite_neighbors((values, offsets), owners, users, news, 15)
    t_tables = time.perf_counter() - t
    emit(
        {
            "clicks": int(len(values)),
            "edges": int(g["user", "clicks", "news"].edge_index.shape[1]),
            "graph_s": t_graph,
            "tables_s": t_tables,
            "table_mib": (tables.news_clickers.nbytes + tables.news_coclicked.nbytes) / 2**20,
        }
    )


def phase_semantic(news: int) -> None:
    """DIGAT's semantic neighbours: exact top-8 by title embedding (300-d GloVe-sized vectors)."""
    from newsrec.data.derived import nearest_by_title

    rng = np.random.default_rng(3)
    vocab = 100_000
    titles = rng.integers(1, vocab, (news, 30))
    titles[np.arange(30)[None, :] >= rng.integers(5, 30, news)[:, None]] = 0
    idf = rng.random(vocab).astype(np.float32) + 1
    vectors = rng.standard_normal((vocab, 300)).astype(np.float32)
    t = time.perf_counter()
    nearest_by_title(titles, idf, vectors, 8)
    emit({"news": news, "seconds": time.perf_counter() - t})


def phase_sample(users: int, news: int, mean_len: int, repeat: int) -> None:
    import torch
    from torch_geometric.utils import k_hop_subgraph

    from newsrec.graphs import KHopSampler, build_news_graph

    values, offsets = sequences(users, news, mean_len)
    g = build_news_graph((values, offsets), news)
    rng = np.random.default_rng(2)
    hist = torch.from_numpy(rng.integers(1, news, (32, 50)))
    out = {"edges": int(g.edge_index.shape[1])}
    for mode in ("induced", "sampled"):
        s = KHopSampler(g, 8, 2, edges=mode)
        s.sample(hist)
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            b = s.sample(hist)
            times.append(time.perf_counter() - t)
        out[f"{mode}_ms"] = 1000 * float(np.median(times))
        out[f"{mode}_nodes"] = int(b.num_nodes)
    t = time.perf_counter()
    for u in range(len(hist)):  # the naive way: one k_hop_subgraph per user (no top-M cut)
        k_hop_subgraph(hist[u], 2, g.edge_index, relabel_nodes=True, num_nodes=news)
    out["naive_ms"] = 1000 * (time.perf_counter() - t)
    emit(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--phase")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--users", type=int)
    ap.add_argument("--news", type=int)
    ap.add_argument("--mean_len", type=int)
    a = ap.parse_args()
    if a.phase == "build":
        return phase_build(a.users, a.news, a.mean_len)
    if a.phase == "sample":
        return phase_sample(a.users, a.news, a.mean_len, 20)
    if a.phase == "bipartite":
        return phase_bipartite(a.users, a.news, a.mean_len)
    if a.phase == "semantic":
        return phase_semantic(a.news)
    me = str(Path(__file__).resolve())
    large = (20000, 5000, 24) if a.quick else (1_000_000, 160_000, 24)
    small = (5000, 5000, 20) if a.quick else (50_000, 50_000, 30)
    r = run_phase(me, "build", "--users", str(large[0]), "--news", str(large[1]), "--mean_len", str(large[2]))
    print(f"machine: {machine()}")
    rows = [
        {
            "step": f"build_news_graph ({r['clicks']} clicks, {large[0]} users, {large[1]} news)"
            f" -> {r['news_edges']} edges",
            "seconds": r["news_graph_s"],
        },
        {"step": "neighbour tables (in-CSR by weight, top-8)", "seconds": r["tables_s"]},
        {"step": f"build_entity_graph inter_news -> {r['entity_edges']} edges", "seconds": r["entity_graph_s"]},
        {"step": "peak RSS of the phase (GiB)", "seconds": r["peak_rss_gib"]},
    ]
    print(table(rows, ["step", "seconds"]))
    r = run_phase(me, "bipartite", "--users", str(large[0]), "--news", str(large[1]), "--mean_len", str(large[2]))
    rows = [
        {
            "step": f"bipartite_click_graph ({r['clicks']} clicks) -> {r['edges']} user-news edges",
            "seconds": r["graph_s"],
        },
        {"step": f"sample_bipartite_neighbors M=15 ({r['table_mib']:.0f} MiB of tables)", "seconds": r["tables_s"]},
        {"step": "peak RSS of the phase (GiB)", "seconds": r["peak_rss_gib"]},
    ]
    r2 = run_phase(me, "semantic", "--news", str(large[1]))
    rows += [
        {"step": f"DIGAT nearest_by_title: exact top-8 of {r2['news']} news (300-d)", "seconds": r2["seconds"]},
        {"step": "peak RSS of that phase (GiB)", "seconds": r2["peak_rss_gib"]},
    ]
    print("\nGERL / GNewsRec click graph and DIGAT's semantic neighbours (User-as-Graph builds its graphs per batch):")
    print(table(rows, ["step", "seconds"]))
    r = run_phase(me, "sample", "--users", str(small[0]), "--news", str(small[1]), "--mean_len", str(small[2]))
    rows = [
        {
            "sampler": f"KHopSampler edges=induced (32 users x 50, 2 hops, M=8; {r['induced_nodes']} nodes)",
            "ms / batch": r["induced_ms"],
            "naive / this": r["naive_ms"] / r["induced_ms"],
        },
        {
            "sampler": f"KHopSampler edges=sampled ({r['sampled_nodes']} nodes)",
            "ms / batch": r["sampled_ms"],
            "naive / this": r["naive_ms"] / r["sampled_ms"],
        },
        {"sampler": "naive: 32 x torch_geometric.utils.k_hop_subgraph (no top-M)", "ms / batch": r["naive_ms"]},
    ]
    print(f"\nsampling on a MIND-small-sized graph ({r['edges']} edges):")
    print(table(rows, ["sampler", "ms / batch", "naive / this"]))


if __name__ == "__main__":
    main()
