"""Beyond-accuracy metrics against plain-Python references, hand-computed cases, masks, and
state merging (DDP totals; the two-process run is in test_ddp.py)."""

import math

import numpy as np
import pytest
import torch

from newsrec.metrics import (
    BeyondAccuracyMetrics,
    category_diversity,
    category_personalisation,
    coverage,
    gini_index,
    intra_list_diversity,
    novelty,
    serendipity,
    top_k_lists,
)


def random_lists(rng, B=12, k=6, d=5, C=4, N=30):
    lengths = rng.integers(0, k + 1, size=B)
    mask = torch.from_numpy(np.arange(k)[None, :] < lengths[:, None])
    vec = torch.from_numpy(rng.standard_normal((B, k, d)))
    cats = torch.from_numpy(rng.integers(0, C, size=(B, k)))
    ids = torch.from_numpy(rng.integers(0, N, size=(B, k)))
    return mask, vec, cats, ids


def cos_dist(a, b):
    return 1 - float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_functions_equal_plain_python_references():
    rng = np.random.default_rng(0)
    C, N = 4, 30
    mask, vec, cats, ids = random_lists(rng, C=C, N=N)
    hmask, hvec, hcats, _ = random_lists(rng, C=C, N=N)
    pop = torch.from_numpy(rng.random(N) + 0.01)
    pop = pop / pop.sum()
    ild = intra_list_diversity(vec, mask)
    div = category_diversity(cats, mask, C)
    pers = category_personalisation(cats, mask, hcats, hmask, C)
    nov = novelty(ids, mask, pop)
    ser = serendipity(vec, mask, hvec, hmask)
    k = cats.shape[1]
    for b in range(len(mask)):
        items = [i for i in range(k) if mask[b, i]]
        hist = [j for j in range(k) if hmask[b, j]]
        pairs = [(i, j) for i in items for j in items if i != j]
        want = np.mean([cos_dist(vec[b, i].numpy(), vec[b, j].numpy()) for i, j in pairs]) if pairs else 0.0
        assert float(ild[b]) == pytest.approx(want, abs=1e-12)
        counts = np.bincount([int(cats[b, i]) for i in items], minlength=C)
        p = counts[counts > 0] / max(len(items), 1)
        want = -(p * np.log(p)).sum() / math.log(min(k, C)) if items else 0.0
        assert float(div[b]) == pytest.approx(want, abs=1e-12)
        hc = np.bincount([int(hcats[b, j]) for j in hist], minlength=C)
        den = np.maximum(counts, hc).sum()
        assert float(pers[b]) == pytest.approx(np.minimum(counts, hc).sum() / den if den else 0.0, abs=1e-12)
        want = np.mean([-math.log2(float(pop[int(ids[b, i])])) for i in items]) if items else 0.0
        assert float(nov[b]) == pytest.approx(want, abs=1e-12)
        sp = [(i, j) for i in items for j in hist]
        want = np.mean([cos_dist(vec[b, i].numpy(), hvec[b, j].numpy()) for i, j in sp]) if sp else 0.0
        assert float(ser[b]) == pytest.approx(want, abs=1e-12)
    for t in (ild, div, pers, nov, ser):
        assert not torch.isnan(t).any()
    counts = np.bincount(ids[mask].numpy(), minlength=N)
    assert float(coverage(ids, mask, N)) == pytest.approx((counts > 0).sum() / N)
    x = np.sort(counts).astype(float)
    n = len(x)
    gini = ((2 * np.arange(1, n + 1) - n - 1) * x).sum() / (n * x.sum())
    assert float(gini_index(torch.from_numpy(counts))) == pytest.approx(gini)


def test_hand_computed_cases():
    full = torch.ones(1, 4, dtype=torch.bool)
    assert float(category_diversity(torch.tensor([[2, 2, 2, 2]]), full, 5)) == 0.0
    assert float(category_diversity(torch.tensor([[0, 1, 2, 3]]), full, 5)) == pytest.approx(1.0)
    # k = 4 > C = 2: two categories evenly is the most diverse possible list
    assert float(category_diversity(torch.tensor([[0, 1, 0, 1]]), full, 2)) == pytest.approx(1.0)
    same = torch.tensor([[[1.0, 0.0]] * 4])
    assert float(intra_list_diversity(same, full)) == pytest.approx(0.0)
    orth = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    assert float(intra_list_diversity(orth, torch.ones(1, 2, dtype=torch.bool))) == pytest.approx(1.0)
    # a single valid item: no pair, 0 (the metric class excludes such lists)
    assert float(intra_list_diversity(orth, torch.tensor([[True, False]]))) == 0.0
    assert float(
        serendipity(orth[:, :1], torch.ones(1, 1, dtype=torch.bool), orth[:, 1:], torch.ones(1, 1, dtype=torch.bool))
    ) == pytest.approx(1.0)
    pers = category_personalisation(
        torch.tensor([[0, 0, 1]]),
        torch.ones(1, 3, dtype=torch.bool),
        torch.tensor([[0, 1, 1, 2]]),
        torch.ones(1, 4, dtype=torch.bool),
        3,
    )
    assert float(pers) == pytest.approx((1 + 1 + 0) / (2 + 2 + 1))
    assert float(
        novelty(torch.tensor([[0, 1]]), torch.ones(1, 2, dtype=torch.bool), torch.tensor([0.5, 0.25]))
    ) == pytest.approx(1.5)
    assert float(gini_index(torch.tensor([5, 5, 5]))) == 0.0
    assert float(gini_index(torch.tensor([0, 0, 0, 9]))) == pytest.approx(0.75)  # (n - 1) / n


def test_masks_and_padding_never_change_a_result():
    rng = np.random.default_rng(1)
    mask, vec, cats, ids = random_lists(rng, C=4, N=30)
    pad = 3
    mask2 = torch.cat([mask, torch.zeros(len(mask), pad, dtype=torch.bool)], 1)
    vec2 = torch.cat([vec, torch.randn(len(mask), pad, vec.shape[2]) * 100], 1)
    ids2 = torch.cat([ids, torch.full((len(mask), pad), 29)], 1)
    # garbage also under the mask of the original columns
    vec2[:, : mask.shape[1]][~mask] = 1e3
    pop = torch.full((30,), 1 / 30)
    torch.testing.assert_close(intra_list_diversity(vec2, mask2), intra_list_diversity(vec, mask))
    torch.testing.assert_close(serendipity(vec2, mask2, vec, mask), serendipity(vec, mask, vec, mask))
    torch.testing.assert_close(novelty(ids2, mask2, pop), novelty(ids, mask, pop))
    assert float(coverage(ids2, mask2, 30)) == float(coverage(ids, mask, 30))
    # category diversity normalises by the padded length k, as the issue defines it: same counts,
    # same entropy; with C = 4 < k in both, the normaliser is log 4 either way
    cats2 = torch.cat([cats, torch.zeros(len(mask), pad, dtype=torch.long)], 1)
    torch.testing.assert_close(category_diversity(cats2, mask2, 4), category_diversity(cats, mask, 4))


def make_metric(k=3, N=20, C=4, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return BeyondAccuracyMetrics(
        k,
        item_categories=torch.randint(0, C, (N,), generator=g),
        item_vectors=torch.randn(N, d, generator=g),
        click_counts=torch.randint(0, 10, (N,), generator=g),
        num_categories=C,
        catalogue_start=1,
    )


def random_impressions(rng, B=9, L=7, H=5, N=20):
    scores = torch.from_numpy(rng.standard_normal((B, L)))
    lengths = rng.integers(1, L + 1, size=B)
    mask = torch.from_numpy(np.arange(L)[None, :] < lengths[:, None])
    items = torch.from_numpy(rng.integers(1, N, size=(B, L)))
    hl = rng.integers(0, H + 1, size=B)
    hmask = torch.from_numpy(np.arange(H)[None, :] < hl[:, None])
    hist = torch.from_numpy(rng.integers(1, N, size=(B, H)))
    return scores, mask, items, hist, hmask


def test_metric_class_equals_the_functions_on_top_k_lists():
    rng = np.random.default_rng(2)
    m = make_metric()
    args = random_impressions(rng)
    m.update(*args)
    scores, mask, items, hist, hmask = args
    pos, valid = top_k_lists(scores, mask, 3)
    ids = torch.gather(items, 1, pos)
    vec, hvec = m.item_vectors[ids], m.item_vectors[hist]
    multi, has_hist = valid.sum(1) > 1, hmask.any(1)
    got = m.compute()
    assert float(got["ild"]) == pytest.approx(float(intra_list_diversity(vec, valid)[multi].mean()))
    assert float(got["serendipity"]) == pytest.approx(float(serendipity(vec, valid, hvec, hmask)[has_hist].mean()))
    assert float(got["novelty"]) == pytest.approx(float(novelty(ids, valid, m.popularity).mean()))
    assert got["ild_excluded"] == float((~multi).sum()) and got["no_history"] == float((~has_hist).sum())
    cat = m.item_categories
    assert float(got["category_diversity"]) == pytest.approx(float(category_diversity(cat[ids], valid, 4).mean()))
    per_item = torch.bincount(ids[valid], minlength=20)[1:]
    assert float(got["coverage"]) == pytest.approx(float((per_item > 0).sum()) / 19)
    assert float(got["gini"]) == pytest.approx(float(gini_index(per_item)))


def test_novelty_uses_add_one_smoothed_click_shares():
    m = BeyondAccuracyMetrics(
        2,
        item_categories=torch.zeros(3, dtype=torch.long),
        item_vectors=torch.eye(3),
        click_counts=torch.tensor([0, 1, 4]),
    )
    torch.testing.assert_close(m.popularity, torch.tensor([1 / 8, 2 / 8, 5 / 8], dtype=torch.float64))


def test_batching_and_merged_states_equal_one_pass():
    rng = np.random.default_rng(3)
    args = random_impressions(rng, B=20)
    whole, a, b = make_metric(), make_metric(), make_metric()
    whole.update(*args)
    a.update(*(t[:7] for t in args))
    b.update(*(t[7:] for t in args))
    a.merge_state(b)  # what DDP's sum reduction does
    for key, v in whole.compute().items():
        assert float(a.compute()[key]) == pytest.approx(float(v), abs=1e-12), key


def test_bad_arguments_are_clear():
    with pytest.raises(ValueError, match="same items"):
        BeyondAccuracyMetrics(
            item_categories=torch.zeros(3, dtype=torch.long), item_vectors=torch.eye(2), click_counts=torch.ones(3)
        )
    with pytest.raises(ValueError, match="k must be"):
        make_metric(k=0)
    with pytest.raises(ValueError, match="categories must lie"):
        category_diversity(torch.tensor([[5]]), torch.ones(1, 1, dtype=torch.bool), 3)
