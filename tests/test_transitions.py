"""Click-graph transition look-ups, the count baselines and the candidate-aware score term,
against plain-Python references."""

from collections import Counter

import numpy as np
import pytest
import torch

from newsrec.baselines import ItemKNN, evaluate_scores, item_knn_scores, popularity_scores, transition_scores
from newsrec.data import MINDDataModule
from newsrec.data.batching import DataRequirements
from newsrec.graphs.transitions import PairTable, TransitionTable, UserFutureEdges, recent_clicks
from newsrec.nn import TransitionScorer, UserEncoder


def random_sequences(rng, users=30, nodes=12, max_len=9):
    return [rng.integers(0, nodes, size=rng.integers(0, max_len + 1)) for _ in range(users)]


def transition_counts(seqs):
    c = Counter()
    for s in seqs:
        for a, b in zip(s[:-1], s[1:]):
            if a != b:
                c[(int(a), int(b))] += 1
    return c


def test_pair_table_sums_repeats_and_misses_are_zero():
    t = PairTable(np.array([1, 1, 2]), np.array([2, 2, 0]), np.array([1.0, 2.0, 5.0]), num_nodes=3)
    got = t.lookup(np.array([[1, 2, 0]]), np.array([[2, 0, 1]]))
    assert got.tolist() == [[3.0, 5.0, 0.0]]
    assert PairTable(np.zeros(0), np.zeros(0), None, 4).lookup(np.array([1]), np.array([2])).tolist() == [0.0]


def test_recent_clicks_are_most_recent_first_and_masked():
    hist = np.array([[5, 6, 7, 0], [9, 0, 0, 0], [0, 0, 0, 0]])
    mask = np.array([[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]], bool)
    clicks, m = recent_clicks(hist, mask, 2)
    assert clicks.tolist() == [[7, 6], [9, 0], [0, 0]]
    assert m.tolist() == [[True, True], [True, False], [False, False]]


def test_transition_features_equal_a_counting_reference():
    rng = np.random.default_rng(0)
    seqs = random_sequences(rng)
    nodes = 12
    table = TransitionTable(seqs, nodes)
    ref = transition_counts(seqs)
    out_tot, in_tot = Counter(), Counter()
    for (a, b), n in ref.items():
        out_tot[a] += n
        in_tot[b] += n
    recent = rng.integers(0, nodes, size=(5, 3))
    rmask = rng.random((5, 3)) < 0.8
    cands = rng.integers(0, nodes, size=(5, 4))
    f = table.features(recent, rmask, cands)
    assert f.shape == (5, 4, 3, 5) and f.dtype == np.float32
    for r in range(5):
        for c in range(4):
            for j in range(3):
                h, k = int(recent[r, j]), int(cands[r, c])
                fwd, bwd = ref[(h, k)], ref[(k, h)]
                p_fwd = fwd / out_tot[h] if out_tot[h] else 0
                p_bwd = bwd / in_tot[h] if in_tot[h] else 0
                want = np.array([np.log1p(fwd), p_fwd, np.log1p(bwd), p_bwd]) * rmask[r, j]
                np.testing.assert_allclose(f[r, c, j, :4], want, rtol=1e-6, atol=1e-7)
                # the candidate's exposure: its transitions in and out, at every position
                np.testing.assert_allclose(f[r, c, j, 4], np.log1p(in_tot[k] + out_tot[k]), rtol=1e-6)


def test_unseen_news_are_silent_and_among_the_rows_to_rescore_when_asked():
    # 1 -> 2 -> 3; news 4 clicked alone (no transition), 5 never: both silent, as is an added 6
    table = TransitionTable([np.array([1, 2, 3]), np.array([4])], 6)
    np.testing.assert_array_equal(table.silent(), [4, 5])
    np.testing.assert_array_equal(table.neighbors(np.array([1]), silent=True), [2, 4, 5])
    np.testing.assert_array_equal(table.neighbors(np.array([1])), [2])  # the neighbours alone by default
    f = table.features(np.array([[1]]), np.array([[True]]), np.array([[2, 3, 4, 6]]))
    np.testing.assert_allclose(f[0, :, 0, 4], np.log1p([2, 1, 0, 0]), rtol=1e-6)


def test_user_future_edges_equal_a_counting_reference():
    rng = np.random.default_rng(1)
    nodes = 6
    seqs = random_sequences(rng, users=25, nodes=nodes, max_len=8)
    fut = UserFutureEdges(seqs, nodes)
    users = rng.integers(0, len(seqs), size=40)
    n = np.array([rng.integers(0, len(seqs[u]) + 2) for u in users])
    last = np.array([seqs[u][k - 1] if 1 <= k <= len(seqs[u]) else 0 for u, k in zip(users, n)])
    last[::7] = (last[::7] + 1) % nodes  # some histories that are not a prefix of the sequence
    a = rng.integers(0, nodes, size=(40, 3))
    b = rng.integers(0, nodes, size=(40, 1))
    got = fut.counts(users, n, last, a, b)
    assert got.shape == (40, 3)
    for r, u in enumerate(users):
        s, k0 = seqs[u], n[r]
        prefix = 1 <= k0 <= len(s) and s[k0 - 1] == last[r]
        for i in range(3):
            want = 0
            if prefix:
                want = sum(1 for k in range(k0 - 1, len(s) - 1) if (s[k], s[k + 1]) == (a[r, i], b[r, 0]))
            assert got[r, i] == want, (r, i)


def test_training_features_leave_out_the_users_own_later_clicks():
    # user 0 clicked 1 -> 2 -> 3, user 1 clicked 1 -> 2; global count(1 -> 2) = 2
    seqs = [np.array([1, 2, 3]), np.array([1, 2])]
    table, fut = TransitionTable(seqs, 4), UserFutureEdges(seqs, 4)
    recent, rmask, cands = np.array([[1]]), np.array([[True]]), np.array([[2, 3]])
    plain = table.features(recent, rmask, cands)
    assert plain[0, 0, 0, 0] == pytest.approx(np.log1p(2))
    # a training sample of user 0 whose history is [1]: its own 1 -> 2 (and 2 -> 3) come later
    sub = (
        fut.counts([0], [1], [1], recent[:, None, :], cands[:, :, None]),
        fut.counts([0], [1], [1], cands[:, :, None], recent[:, None, :]),
        fut.touching([0], [1], [1], cands),
    )
    left_out = table.features(recent, rmask, cands, sub)
    assert left_out[0, 0, 0, 0] == pytest.approx(np.log1p(1))  # only user 1's transition
    assert left_out[0, 0, 0, 1] == pytest.approx(1.0)  # 1 -> 2 is all of 1's remaining onward clicks
    # the exposure of 2 (1 -> 2 twice, 2 -> 3 once) leaves out user 0's own click into and out of it
    assert plain[0, 0, 0, 4] == pytest.approx(np.log1p(3))
    assert left_out[0, 0, 0, 4] == pytest.approx(np.log1p(1))
    # with the whole sequence as history (n = 3) nothing lies in the future
    sub3 = (
        fut.counts([0], [3], [3], recent[:, None, :], cands[:, :, None]),
        fut.counts([0], [3], [3], cands[:, :, None], recent[:, None, :]),
        fut.touching([0], [3], [3], cands),
    )
    np.testing.assert_array_equal(table.features(recent, rmask, cands, sub3), plain)


def test_training_exposure_leaves_out_exactly_the_users_own_transitions_of_the_candidate():
    # user 0: 1 -> 2 -> 3 (3 is its very last click: no transition out of it); user 1: 2 -> 3
    seqs = [np.array([1, 2, 3]), np.array([2, 3])]
    table, fut = TransitionTable(seqs, 5), UserFutureEdges(seqs, 5)
    # a sample of user 0 with history [1, 2]: its future is 2 -> 3 only
    np.testing.assert_array_equal(fut.touching([0], [2], [2], np.array([[3, 2, 4]])), [[1, 1, 0]])
    # with history [1]: 1 -> 2 and 2 -> 3 lie ahead (2 is touched twice, 3 once)
    np.testing.assert_array_equal(fut.touching([0], [1], [1], np.array([[2, 3, 1]])), [[2, 1, 1]])
    recent, rmask, cands = np.array([[2]]), np.array([[True]]), np.array([[3]])
    sub = (
        fut.counts([0], [2], [2], recent[:, None, :], cands[:, :, None]),
        fut.counts([0], [2], [2], cands[:, :, None], recent[:, None, :]),
        fut.touching([0], [2], [2], cands),
    )
    # 3 was reached twice (users 0 and 1): without user 0's own click it is still seen once
    assert table.features(recent, rmask, cands, sub)[0, 0, 0, 4] == pytest.approx(np.log1p(1))
    # a history that is not the user's prefix takes nothing off
    np.testing.assert_array_equal(fut.touching([0], [2], [1], np.array([[3]])), [[0]])


@pytest.fixture(scope="module")
def splits(tiny_world):
    dm = MINDDataModule(str(tiny_world))
    return dm, dm.behaviors("train"), dm.behaviors("dev")


def _reference_scores(train, dev, pair, recent, decay, num_news):
    pop = popularity_scores(train, num_news)
    tie = 1e-6 * pop / (pop.max() + 1.0)
    out = []
    for i in range(len(dev)):
        h = dev.history[dev.history_offsets[i] : dev.history_offsets[i + 1]][::-1][:recent]
        cands = dev.candidates[dev.candidate_offsets[i] : dev.candidate_offsets[i + 1]]
        out.append(np.array([sum(decay**j * pair(int(x), int(c)) for j, x in enumerate(h)) + tie[c] for c in cands]))
    return out


def test_transition_baseline_equals_a_loop_over_impressions(splits):
    dm, train, dev = splits
    values, offsets = train.user_sequences()
    seqs = [values[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]
    ref = transition_counts(seqs)
    out_tot = Counter()
    for (a, _), n in ref.items():
        out_tot[a] += n
    got = transition_scores(train, dev, len(dm.corpus), recent=4, decay=0.5)
    want = _reference_scores(
        train, dev, lambda a, b: ref[(a, b)] / out_tot[a] if out_tot[a] else 0.0, 4, 0.5, len(dm.corpus)
    )
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-12)
    assert 0 <= evaluate_scores(dev, got)["auc"] <= 1


def test_item_knn_equals_a_loop_over_sequences(splits):
    dm, train, dev = splits
    values, offsets = train.user_sequences()
    seqs = [values[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]
    co, occ = Counter(), Counter(int(v) for v in values)
    for s in seqs:
        for i in range(len(s)):
            for j in range(i + 1, min(i + 3, len(s))):  # window 2
                if s[i] != s[j]:
                    co[(int(s[i]), int(s[j]))] += 1
                    co[(int(s[j]), int(s[i]))] += 1
    knn = ItemKNN((values, offsets), len(dm.corpus), window=2)
    pairs = list(co)[:50] + [(1, 1), (0, 5)]
    for a, b in pairs:
        want = co[(a, b)] / np.sqrt(occ[a] * occ[b]) if co[(a, b)] else 0.0
        assert knn.similarity(np.array(a), np.array(b)) == pytest.approx(want)
    got = item_knn_scores(train, dev, len(dm.corpus), recent=3, decay=0.8, window=2)
    sim = lambda a, b: knn.similarity(np.array(a), np.array(b)).item()  # noqa: E731
    want = _reference_scores(train, dev, sim, 3, 0.8, len(dm.corpus))
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-12)


def test_transition_scorer_falls_back_to_zero_and_ignores_masked_clicks():
    torch.manual_seed(0)
    scorer = TransitionScorer(num_features=4, num_recent=5, hidden_dim=8)
    f = torch.rand(3, 6, 5, 4)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [0, 0, 0, 0, 0]], dtype=torch.bool)
    out = scorer(f, mask)
    assert out.shape == (3, 6)
    assert torch.equal(out[2], torch.zeros(6))  # no history: no term
    assert torch.equal(scorer(torch.zeros(3, 6, 5, 4), torch.ones(3, 5, dtype=torch.bool)), torch.zeros(3, 6))
    garbage = f.clone()
    garbage[~mask[:, None, :].expand(-1, 6, -1)] = 99.0  # features at masked clicks never matter
    torch.testing.assert_close(scorer(garbage, mask), out)
    torch.testing.assert_close(scorer(f[1:2], mask[1:2]), out[1:2])  # rows are independent
    with pytest.raises(ValueError, match="recent clicks"):
        scorer(torch.rand(1, 2, 6, 4), torch.ones(1, 6, dtype=torch.bool))


def test_a_fresh_aware_scorer_tells_unseen_from_seen_without_an_edge():
    torch.manual_seed(0)
    scorer = TransitionScorer(num_features=4, num_recent=3, hidden_dim=8, fresh_aware=True, fresh_dropout=0.5)
    with torch.no_grad():
        scorer.fresh_bias.fill_(0.7)
    mask = torch.ones(2, 3, dtype=torch.bool)
    f = torch.zeros(2, 4, 3, 5)
    f[:, 0, :, :4] = torch.rand(2, 3, 4)  # candidate 0: edges, exposed
    f[:, :2, :, 4] = 2.0  # candidates 0 and 1 seen; 1 without an edge to these clicks
    scorer.eval()
    out = scorer(f, mask)
    assert torch.equal(out[:, 1], torch.zeros(2))  # seen, no edge: exactly the dot product
    assert torch.equal(out[:, 2:], torch.full((2, 2), 0.7))  # unseen (fresh): the learned constant
    assert not torch.equal(out[:, 0], torch.zeros(2))
    torch.testing.assert_close(scorer(f[1:], mask[1:]), out[1:])  # rows are independent
    torch.testing.assert_close(scorer(f, mask), out)  # deterministic in evaluation
    scorer.train()  # training hides about half of the candidates' graph, as if fresh
    torch.manual_seed(1)
    hidden = scorer(f[:1, :2].expand(500, -1, -1, -1), mask[:1].expand(500, -1)) == 0.7
    assert 0.4 < hidden.float().mean() < 0.6
    with pytest.raises(ValueError, match="columns"):
        scorer(f[..., :4], mask)
    with pytest.raises(ValueError, match="fresh_aware"):
        TransitionScorer(fresh_dropout=0.1)


def test_user_recency_makes_the_user_vector_order_aware():
    torch.manual_seed(0)
    news = torch.randn(2, 5, 8)
    mask = torch.ones(2, 5, dtype=torch.bool)
    flipped = news.flip(1)
    plain = UserEncoder(8, 2, 4, 8).eval()
    torch.testing.assert_close(plain(news, mask), plain(flipped, mask))  # the paper's encoder is order-free
    rec = UserEncoder(8, 2, 4, 8, recency_positions=3).eval()
    rec.load_state_dict(plain.state_dict(), strict=False)
    torch.testing.assert_close(rec(news, mask), plain(news, mask))  # zero-initialised: starts as the paper's
    rec.recency.weight.data.normal_()
    assert not torch.allclose(rec(news, mask), rec(flipped, mask))
    # padding never changes the result
    padded = torch.cat([news, torch.randn(2, 3, 8)], 1)
    pmask = torch.cat([mask, torch.zeros(2, 3, dtype=torch.bool)], 1)
    torch.testing.assert_close(rec(padded, pmask), rec(news, mask), atol=1e-6, rtol=1e-6)


def test_batches_carry_transition_features_and_training_ones_leave_the_future_out(tiny_world):
    dm = MINDDataModule(str(tiny_world), batch_size=16)
    dm.configure(DataRequirements(transitions=6))
    ds = dm.train_dataloader().dataset
    idx = np.arange(len(ds))
    batch = ds[(0, idx)]
    f, m = batch["transition_features"], batch["transition_mask"]
    B, C = batch["candidates"].shape
    assert f.shape == (B, C, 6, 5) and m.shape == (B, 6)
    # the same samples built without their users' identities count the users' later clicks in
    with_future = dm.builder(*_train_inputs(ds, idx))["transition_features"]
    assert (with_future[..., 0] >= f[..., 0] - 1e-6).all()
    fewer = with_future[:, 0, 0, 0] > f[:, 0, 0, 0] + 1e-6  # last click -> the clicked candidate
    assert fewer.any()
    ev = next(iter(dm.val_dataloader()))
    assert ev["transition_features"].shape[:2] == ev["candidates"].shape
    assert ev["transition_features"].abs().sum() > 0


def _train_inputs(ds, idx):
    """The batch builder's inputs for training samples ``idx`` at epoch 0, without users."""
    rows = ds.samples.rows[idx]
    hist, n = ds.behaviors.histories(rows, ds.history_length)
    hmask = np.arange(ds.history_length)[None, :] < n[:, None]
    cands = np.concatenate([ds.samples.positives[idx, None], ds.samples.negatives(0)[idx]], axis=1)
    labels = np.zeros_like(cands)
    labels[:, 0] = 1
    ids = ds.behaviors.impression_ids[rows]
    return hist, hmask, cands, np.ones(cands.shape, bool), labels, np.arange(len(idx)), ids, rows


def test_a_model_with_a_graph_score_refuses_batches_without_its_features(tiny_world):
    from _models import make

    dm = MINDDataModule(str(tiny_world), eval_batch_size=8)
    model = make("glory_transitions", dm).eval()
    req = model.data_requirements()
    req.transitions = None  # the model's requirements but for the transition features
    dm.configure(req)
    batch = next(iter(dm.val_dataloader()))
    with pytest.raises(ValueError, match="transition_features"), torch.no_grad():
        model(batch)


def test_a_first_form_checkpoint_loads_as_before_and_a_fresh_aware_model_refuses_it_in_one_line(tiny_world):
    from _models import make

    from newsrec.checkpoint_io import check_weights_fit, model_from_checkpoint

    dm = MINDDataModule(str(tiny_world))
    old = make("glory_transitions", dm)
    assert not old.transition_scorer.fresh_aware  # the first form stays the default
    hparams = {k: v for k, v in old.hparams.items() if not k.startswith("graph_score_fresh")}  # as 0.1 wrote them
    ckpt = {"newsrec_model": "newsrec.models.GLORY", "hyper_parameters": hparams, "state_dict": old.state_dict()}
    assert not model_from_checkpoint(ckpt, "old.ckpt").transition_scorer.fresh_aware
    fresh = make("glory_transitions", dm, graph_score_fresh=True)
    with pytest.raises(ValueError, match=r"older form .*: it has no transition_scorer\.fresh_bias; retrain"):
        check_weights_fit(old.state_dict(), fresh, "old.ckpt")
