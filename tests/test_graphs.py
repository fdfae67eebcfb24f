from collections import Counter, defaultdict

import numpy as np
import pyarrow as pa
import pytest
import torch

from newsrec.graphs import (
    EntityNeighborSampler,
    KHopSampler,
    NeighborTable,
    build_entity_graph,
    build_news_graph,
    load_graph,
    save_graph,
)


def as_dict(g):
    return {(int(s), int(d)): float(w) for (s, d), w in zip(g.edge_index.t().tolist(), g.edge_weight)}


def test_three_user_toy_counted_on_paper():
    # user A: 1 2 3 ; user B: 2 3 1 ; user C: 3 3 2
    seqs = [[1, 2, 3], [2, 3, 1], [3, 3, 2]]
    g = build_news_graph(seqs, 5)
    assert as_dict(g) == {(1, 2): 1, (2, 3): 2, (3, 1): 1, (3, 3): 1, (3, 2): 1}
    assert g.num_nodes == 5 and g.edge_weight.dtype == torch.float32
    assert as_dict(build_news_graph(seqs, 5, self_loops=False)) == {(1, 2): 1, (2, 3): 2, (3, 1): 1, (3, 2): 1}
    und = as_dict(build_news_graph(seqs, 5, "undir_seq"))
    assert und == {(1, 2): 1, (2, 1): 1, (2, 3): 3, (3, 2): 3, (1, 3): 1, (3, 1): 1, (3, 3): 1}
    co = as_dict(build_news_graph(seqs, 5, "co_occurrence", self_loops=False))
    # pairs of distinct positions, both orders: {1,2}: A,B -> 4 ; {2,3}: A,B,C(x2) -> 8 ; {1,3}: A,B -> 4
    assert co == {(1, 2): 4, (2, 1): 4, (2, 3): 8, (3, 2): 8, (1, 3): 4, (3, 1): 4}


def reference_news_graph(seqs, method, self_loops):
    c = Counter()
    for s in seqs:
        if method == "co_occurrence":
            pairs = [(s[i], s[j]) for i in range(len(s)) for j in range(len(s)) if i != j]
        else:
            pairs = list(zip(s[:-1], s[1:]))
        for a, b in pairs:
            if a == b and not self_loops:
                continue
            if method == "dir_seq":
                c[(a, b)] += 1
            else:
                key = (min(a, b), max(a, b))
                c[key] += 1
    if method == "dir_seq":
        return dict(c)
    out = {}
    for (a, b), w in c.items():
        out[(a, b)] = w
        out[(b, a)] = w
    return out


@pytest.mark.parametrize("method", ["dir_seq", "undir_seq", "co_occurrence"])
@pytest.mark.parametrize("self_loops", [True, False])
def test_builder_matches_slow_reference(method, self_loops):
    rng = np.random.default_rng(0)
    seqs = [rng.integers(0, 15, rng.integers(0, 12)).tolist() for _ in range(60)]
    g = build_news_graph(seqs, 15, method, self_loops=self_loops)
    assert as_dict(g) == pytest.approx(reference_news_graph(seqs, method, self_loops))
    # every input form gives the same graph
    arrow = pa.array(seqs, pa.list_(pa.int64()))
    values = np.concatenate([np.array(s, np.int64) for s in seqs])
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in seqs])])
    for other in (arrow, (values, offsets), [torch.tensor(s, dtype=torch.long) for s in seqs]):
        g2 = build_news_graph(other, 15, method, self_loops=self_loops)
        assert torch.equal(g2.edge_index, g.edge_index) and torch.equal(g2.edge_weight, g.edge_weight)


def test_builder_rejects_bad_input():
    with pytest.raises(ValueError, match="outside"):
        build_news_graph([[1, 7]], 5)
    with pytest.raises(ValueError, match="method"):
        build_news_graph([[1, 2]], 5, "random")
    g = build_news_graph([], 4)
    assert g.edge_index.shape == (2, 0)


def test_entity_graph_inter_and_intra():
    ents = np.array([[0, 0], [10, 11], [12, 0], [10, 0], [0, 0]])  # news 0 is padding
    seqs = [[1, 2], [2, 3], [1, 2, 1]]
    g = as_dict(build_entity_graph(seqs, ents, 13, "inter_news"))
    # transitions 1->2 (x2), 2->3, 2->1: {10,12}: 2+1 ; {11,12}: 2+1 ; {12,10} from 2->3 adds 1
    assert g == {(10, 12): 4, (12, 10): 4, (11, 12): 3, (12, 11): 3}
    g_self = as_dict(build_entity_graph([[1, 3]], ents, 13))  # entity 10 in both news
    assert g_self == {(10, 10): 1, (11, 10): 1, (10, 11): 1}
    assert as_dict(build_entity_graph([[1, 3]], ents, 13, self_loops=False)) == {(11, 10): 1, (10, 11): 1}
    intra = as_dict(build_entity_graph(seqs, ents, 13, "intra_news"))
    assert intra == {(10, 11): 3, (11, 10): 3}  # news 1 clicked 3 times
    with pytest.raises(ValueError):
        build_entity_graph(seqs, ents, 5)


def test_neighbor_table_orders_by_weight_then_id():
    g = build_news_graph([[5, 1], [4, 1], [4, 1], [3, 1], [2, 1], [2, 1]], 6)
    t = NeighborTable.from_graph(g, "in")
    assert t.indices[t.indptr[1] : t.indptr[2]].tolist() == [2, 4, 3, 5]
    nbr, w = t.top(3)
    assert nbr[1].tolist() == [2, 4, 3] and w[1].tolist() == [2, 2, 1]
    assert nbr[0].tolist() == [-1, -1, -1]
    out = NeighborTable.from_graph(g, "out")
    assert out.indices[out.indptr[4] : out.indptr[5]].tolist() == [1]


def random_graph(rng, n=40, seqs=80):
    return build_news_graph([rng.integers(1, n, rng.integers(2, 15)).tolist() for _ in range(seqs)], n)


@pytest.mark.parametrize(
    "weighted_random, direction, edge_mode",
    [(False, "in", "induced"), (True, "in", "induced"), (False, "out", "induced"), (False, "out", "sampled")],
)
def test_khop_sampler_properties(weighted_random, direction, edge_mode):
    rng = np.random.default_rng(1)
    g = random_graph(rng)
    M, K = 3, 2
    sampler = KHopSampler(g, M, K, direction=direction, edges=edge_mode, weighted_random=weighted_random, seed=0)
    edges = as_dict(g)
    in_nbrs = defaultdict(list)
    for (s, d), w in edges.items():
        if direction == "in":
            in_nbrs[d].append((s, w))
        else:
            in_nbrs[s].append((d, w))
    B, L = 6, 7
    hist = torch.tensor(rng.integers(1, 40, (B, L)))
    lengths = torch.tensor([7, 3, 0, 1, 5, 7])
    mask = torch.arange(L)[None] < lengths[:, None]
    batch = sampler.sample(hist, mask)
    assert batch.num_graphs == B
    for b in range(B):
        ex = batch.get_example(b)
        nodes = ex.n_id.tolist()
        assert len(set(nodes)) == len(nodes)  # deduplicated per user
        seeds = list(dict.fromkeys(hist[b, : lengths[b]].tolist()))
        assert nodes[: len(seeds)] == seeds  # seeds first, in order of first click
        # positions of history entries
        pos = batch.history_position[b]
        for j in range(L):
            if mask[b, j]:
                assert int(batch.n_id[pos[j]]) == int(hist[b, j]) and int(batch.batch[pos[j]]) == b
            else:
                assert pos[j] == -1
        # every node within K hops, reached through <= M neighbours per node
        dist = {s: 0 for s in seeds}
        frontier = seeds
        for hop in range(1, K + 1):
            nxt = []
            for v in frontier:
                cands = sorted(in_nbrs[v], key=lambda x: (-x[1], x[0]))
                if not weighted_random:
                    chosen = [u for u, _ in cands[:M]]
                    for u in chosen:
                        if u not in dist:
                            dist[u] = hop
                            nxt.append(u)
            frontier = nxt
        if not weighted_random:
            assert set(nodes) == set(dist)  # exactly the top-M expansion
        # the subgraph is induced: every graph edge among the nodes, with its weight
        local = {(nodes[s], nodes[d]): w for (s, d), w in as_dict(ex).items()}
        node_set = set(nodes)
        induced = {e: w for e, w in edges.items() if e[0] in node_set and e[1] in node_set}
        if direction == "out":  # messages flow from the news clicked after a node
            induced = {(d, s): w for (s, d), w in induced.items()}
        assert all(np.diff(ex.edge_index[1].numpy()) >= 0)  # grouped by target
        if edge_mode == "induced":
            assert local == induced
        else:
            assert set(local) <= set(induced) and all(induced[e] == w for e, w in local.items())
    # disjoint subgraphs: edges never cross users
    assert (batch.batch[batch.edge_index[0]] == batch.batch[batch.edge_index[1]]).all()
    assert batch.get_example(2).num_nodes == 0  # empty history -> empty subgraph


def test_weighted_random_sampler_is_seeded_and_samples_without_replacement():
    g = build_news_graph([[i, 0] for i in range(1, 30)] + [[1, 0]] * 5, 30)
    a = KHopSampler(g, 4, 1, weighted_random=True, seed=7)
    b = KHopSampler(g, 4, 1, weighted_random=True, seed=7)
    sa, sb = a(torch.tensor([0])), b(torch.tensor([0]))
    assert torch.equal(sa.n_id, sb.n_id) and sa.num_nodes == 5
    hits = Counter()
    for _ in range(300):
        hits.update(a(torch.tensor([0])).n_id[1:].tolist())
    assert hits[1] > 2 * max(hits[k] for k in range(2, 30))  # weight 6 vs 1


def test_single_user_call_and_list_input():
    g = build_news_graph([[1, 2, 3], [2, 3, 4, 2]], 6)
    s = KHopSampler(g, 2, 2)
    d = s(torch.tensor([3, 3]))
    assert d.n_id.tolist() == [3, 2, 1, 4] and d.history_position.tolist() == [0, 0]
    b = s.sample([torch.tensor([3]), torch.tensor([], dtype=torch.long)])
    assert b.ptr.tolist() == [0, 4, 4]
    with pytest.raises(ValueError):
        s.sample(torch.tensor([[9]]))


def test_entity_neighbor_sampler():
    ents = np.array([[0, 0], [10, 11], [12, 0], [10, 0]])
    g = build_entity_graph([[1, 2], [1, 2], [2, 3], [1, 3]], ents, 13)
    s = EntityNeighborSampler(g, num_neighbors=2)
    nbr, mask = s(torch.tensor([[12, 10, 0]]))
    # 12: {10: 3, 11: 2} ; 10: {12: 3, 10: 1 (self), 11: 1} -> top2 = 12, then tie 10/11 by id -> 10
    assert nbr.tolist() == [[[10, 11], [12, 10], [0, 0]]]
    assert mask.tolist() == [[[True, True], [True, True], [False, False]]]
    nbr2, _ = EntityNeighborSampler(g, 2, exclude_self=True)(torch.tensor([10]))
    assert nbr2.tolist() == [[12, 11]]


def test_graph_save_load_roundtrip(tmp_path):
    g = build_news_graph([[1, 2, 3]], 4)
    save_graph(g, tmp_path / "g")
    g2 = load_graph(tmp_path / "g")
    assert torch.equal(g2.edge_index, g.edge_index) and g2.num_nodes == 4
    # corruption is detected, reported and treated as missing
    f = tmp_path / "g" / "edge_weight.npy"
    f.write_bytes(f.read_bytes()[:-2] + b"xx")
    with pytest.warns(UserWarning, match="corrupt"):
        assert load_graph(tmp_path / "g") is None


def test_sampled_edges_are_top_list_edges_of_the_same_nodes():
    rng = np.random.default_rng(5)
    g = random_graph(rng)
    full = KHopSampler(g, 3, 2)
    top = KHopSampler(g, 3, 2, edges="sampled")
    hist = torch.tensor(rng.integers(1, 40, (4, 6)))
    a, b = full.sample(hist), top.sample(hist)
    assert torch.equal(a.n_id, b.n_id) and torch.equal(a.history_position, b.history_position)
    top_lists = {v: set(full.top_neighbors[v][full.top_neighbors[v] >= 0].tolist()) for v in range(40)}
    ea = {(int(a.n_id[s]), int(a.n_id[d]), int(a.batch[d])) for s, d in a.edge_index.t().tolist()}
    eb = {(int(b.n_id[s]), int(b.n_id[d]), int(b.batch[d])) for s, d in b.edge_index.t().tolist()}
    assert eb == {e for e in ea if e[0] in top_lists[e[1]]}


def test_entity_graph_chunked_aggregation_is_exact():
    rng = np.random.default_rng(0)
    seqs = [rng.integers(1, 30, rng.integers(0, 10)).tolist() for _ in range(200)]
    ents = rng.integers(0, 50, (30, 4))
    a = build_entity_graph(seqs, ents, 50)
    b = build_entity_graph(seqs, ents, 50, chunk_pairs=16)
    assert torch.equal(a.edge_index, b.edge_index) and torch.equal(a.edge_weight, b.edge_weight)
