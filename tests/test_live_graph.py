"""The live click graph (newsrec.serving.live): after any sequence of click batches, in or out of
time order, it equals the graphs rebuilt from scratch by the training builders over the training
sequences with every user's stored clicks appended; with no clicks it is the training graph."""

import numpy as np
import pytest

from newsrec.core.requirements import DataRequirements, NewsGraphBuild, NewsGraphSampling
from newsrec.graphs import EntityNeighborSampler, KHopSampler, build_entity_graph, build_news_graph
from newsrec.graphs.news_graph import as_ragged
from newsrec.graphs.transitions import TransitionTable, recent_clicks
from newsrec.serving.ingest import UserTransitions
from newsrec.serving.live import LiveGraph, PairWeights

N, NUM_ENTITIES = 41, 25  # rows 1..40 are news, 0 the padding


def requirements(method="dir_seq", direction="in", self_loops=True, edges="induced") -> DataRequirements:
    return DataRequirements(
        news_fields=("title", "entities"),
        news_graph=NewsGraphBuild(method, self_loops),
        news_graph_sampling=NewsGraphSampling(num_neighbors=3, num_hops=2, direction=direction, edges=edges),
        entity_neighbors=4,
        transitions=5,
    )


def world(seed: int):
    rng = np.random.default_rng(seed)
    base = [rng.integers(1, N, rng.integers(0, 9)) for _ in range(30)]
    entities = rng.integers(0, NUM_ENTITIES, (N, 3))
    entities[0] = 0
    return rng, base, entities


class MemoryLog:
    """The stored clicks of the test, as a store would return them."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, str, int, float]] = []  # seq, user, row, time

    def add(self, users, rows, times):
        start = len(self.rows) + 1
        self.rows += [(start + i, u, int(r), float(t)) for i, (u, r, t) in enumerate(zip(users, rows, times))]
        return np.arange(start, len(self.rows) + 1)

    def sequence(self, user: str, upto: int):
        mine = sorted((t, s, r) for s, u, r, t in self.rows if u == user and s <= upto)
        return (np.asarray([r for _, _, r in mine], np.int64), np.asarray([t for t, _, _ in mine]),
                np.asarray([s for _, s, _ in mine], np.int64))  # fmt: skip


def feed(live: LiveGraph, base, rng, batches: int = 4, size: int = 25, users: int = 40, in_order: bool = False):
    """Random click batches of users 0..users-1 (users < 30 have a training sequence), with times
    that go back now and then (``in_order``: never, so that every batch only adds weight);
    returns the snapshot and the reference sequences."""
    log = MemoryLog()
    last = {f"U{i}": (int(s[-1]) if len(s) else None) for i, s in enumerate(base)}
    trans = UserTransitions(lambda u: last.get(u), log.sequence)
    snap = live.snapshot()
    for batch in range(batches):
        users_b = [f"U{i}" for i in rng.integers(0, users, size)]
        rows = rng.integers(1, N, size)
        times = rng.uniform(0, 1000, size) + (1000 * batch if in_order else 0)  # else out of order across batches
        seqs = log.add(users_b, rows, times)
        snap = live.add(*trans.transitions(users_b, rows, times, seqs))
    sequences = [list(s) for s in base] + [[] for _ in range(users - len(base))]
    for u in range(users):
        rows, _, _ = log.sequence(f"U{u}", len(log.rows))
        sequences[u] += rows.tolist()
    return snap, sequences, log


def edges_of(graph) -> dict:
    s, d = graph.edge_index.numpy()
    return dict(zip(zip(s.tolist(), d.tolist()), graph.edge_weight.numpy().tolist()))


def subgraph_edges(batch) -> list:
    n_id = batch.n_id.numpy()
    s, d = batch.edge_index.numpy()
    user = batch.batch.numpy()[d]
    return sorted(zip(user.tolist(), n_id[s].tolist(), n_id[d].tolist(), batch.edge_weight.numpy().round(5).tolist()))


@pytest.mark.parametrize(
    "method,direction,self_loops,edges",
    [("dir_seq", "in", True, "induced"), ("undir_seq", "in", True, "induced"), ("dir_seq", "out", False, "sampled")],
)
@pytest.mark.parametrize("seed,in_order", [(0, False), (1, False), (2, True)])
def test_live_graph_equals_the_graphs_rebuilt_from_all_clicks(method, direction, self_loops, edges, seed, in_order):
    rng, base, entities = world(seed)
    req = requirements(method, direction, self_loops, edges)
    live = LiveGraph(req, as_ragged(base), N, news_entities=entities, num_entities=NUM_ENTITIES)
    snap, sequences, _ = feed(live, base, rng, batches=6 if in_order else 4, in_order=in_order)
    # the news graph and GLORY's sampler
    ref = build_news_graph(sequences, N, method, self_loops=self_loops)
    got = dict(zip(zip((live.fwd.keys >> 32).tolist(), (live.fwd.keys & 0xFFFFFFFF).tolist()), live.fwd.weights))
    assert got == edges_of(ref)
    sampler = KHopSampler(ref, 3, 2, direction=direction, edges=edges)
    np.testing.assert_array_equal(snap.khop_sampler.top_neighbors, sampler.top_neighbors)
    histories = rng.integers(0, N, (6, 5))
    mask = histories > 0
    a, b = snap.khop_sampler.sample(histories, mask), sampler.sample(histories, mask)
    np.testing.assert_array_equal(a.n_id.numpy(), b.n_id.numpy())
    assert subgraph_edges(a) == subgraph_edges(b)
    # the transition counts of the graph score
    table = TransitionTable(sequences, N)
    recent, rmask = recent_clicks(histories, mask, 5)
    candidates = rng.integers(1, N, (6, 7))
    np.testing.assert_array_equal(
        snap.transition_table.features(recent, rmask, candidates), table.features(recent, rmask, candidates)
    )
    np.testing.assert_array_equal(snap.transition_table.neighbors(np.arange(1, 6)), table.neighbors(np.arange(1, 6)))
    # the entity graph's neighbour table
    entity_graph = build_entity_graph(sequences, entities, NUM_ENTITIES)
    np.testing.assert_array_equal(snap.entity_table, EntityNeighborSampler(entity_graph, 4).table.numpy())


def test_without_clicks_the_live_graph_is_the_training_graph():
    rng, base, entities = world(2)
    live = LiveGraph(requirements(), as_ragged(base), N, news_entities=entities, num_entities=NUM_ENTITIES)
    snap = live.snapshot()
    sampler = KHopSampler(build_news_graph(base, N), 3, 2)
    np.testing.assert_array_equal(snap.khop_sampler.top_neighbors, sampler.top_neighbors)
    np.testing.assert_array_equal(snap.khop_sampler.top_weights, sampler.top_weights)
    graph = build_entity_graph(base, entities, NUM_ENTITIES)
    np.testing.assert_array_equal(snap.entity_table, EntityNeighborSampler(graph, 4).table.numpy())
    assert snap.num_transitions == TransitionTable(base, N).num_edges


def test_decay_weighs_each_transition_by_its_age_and_keeps_the_total():
    rng, base, entities = world(3)
    day = 86400.0
    live = LiveGraph(requirements(), as_ragged(base), N, news_entities=entities, num_entities=NUM_ENTITIES,
                     half_life=day, start_time=0.0)  # fmt: skip
    live.add([1, 1, 2], [5, 5, 5], [0.0, day, 3 * day])
    raw, count = {}, 0
    for q in map(np.asarray, base):
        for s, d in zip(q[:-1], q[1:]):
            if s != d:  # training transitions, made at time 0, now 3 days old
                raw[(s, d)], count = raw.get((s, d), 0.0) + 2.0**-3, count + 1
    for s, d, t in [(1, 5, 0.0), (1, 5, day), (2, 5, 3 * day)]:
        raw[(s, d)], count = raw.get((s, d), 0.0) + 2.0 ** (-(3 * day - t) / day), count + 1
    norm = count / sum(raw.values())  # the aged weights sum to the number of transitions
    table = live.snapshot().transition_table
    for (s, d), w in raw.items():
        assert table.counts.lookup(np.asarray(s), np.asarray(d)) == pytest.approx(w * norm, rel=1e-9)
    assert table.counts.values.sum() == pytest.approx(count, rel=1e-9)
    rows, weights = live.neighbors(1, 3)
    assert rows[0] == 5 and weights[0] == pytest.approx(raw[(1, 5)] * norm, rel=1e-9)


def test_pair_weights_take_back_what_was_added():
    pw = PairWeights.empty().add(np.array([1, 2, 1]), np.array([3, 3, 3]), np.array([1.0, 2.0, 1.0]))
    assert pw.keys.tolist() == [(1 << 32) | 3, (2 << 32) | 3] and pw.weights.tolist() == [2.0, 2.0]
    pw = pw.add(np.array([1, 4]), np.array([3, 1]), np.array([-2.0, 1.0]))
    assert pw.keys.tolist() == [(2 << 32) | 3, (4 << 32) | 1] and pw.weights.tolist() == [2.0, 1.0]


def test_a_graph_the_live_graph_cannot_follow_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="co_occurrence"):
        LiveGraph(requirements("co_occurrence"), as_ragged([[1, 2]]), N, news_entities=np.zeros((N, 3), int),
                  num_entities=NUM_ENTITIES)  # fmt: skip
    with pytest.raises(ValueError, match="half_life"):
        LiveGraph(DataRequirements(), as_ragged([[1, 2]]), N, half_life=-1.0)
