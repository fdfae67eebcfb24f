import zipfile

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from newsrec.metrics import ImpressionMetrics, impression_scores
from newsrec.training import candidate_ranks, write_prediction_file


def reference(scores, labels):
    """MIND's definitions, written the slow obvious way (one impression)."""
    scores, labels = np.asarray(scores, float), np.asarray(labels, int)
    auc = roc_auc_score(labels, scores)
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    y = labels[order]
    mrr = sum(y[r] / (r + 1) for r in range(len(y))) / y.sum()

    def dcg(ys, k):
        return sum((2 ** ys[r] - 1) / np.log2(r + 2) for r in range(min(k, len(ys))))

    ideal = sorted(labels, reverse=True)
    return {"auc": auc, "mrr": mrr, "ndcg@5": dcg(y, 5) / dcg(ideal, 5), "ndcg@10": dcg(y, 10) / dcg(ideal, 10)}


def random_impressions(rng, n, ties=False):
    out = []
    for _ in range(n):
        L = int(rng.integers(2, 25))
        s = rng.integers(0, 4, L).astype(float) if ties else rng.standard_normal(L)
        y = (rng.random(L) < 0.3).astype(int)
        out.append((s, y))
    return out


@pytest.mark.parametrize("ties", [False, True])
def test_matches_reference(ties):
    rng = np.random.default_rng(0)
    imps = random_impressions(rng, 300, ties)
    m = ImpressionMetrics()
    preds = torch.tensor(np.concatenate([s for s, _ in imps]))
    target = torch.tensor(np.concatenate([y for _, y in imps]))
    idx = torch.tensor(np.concatenate([[i] * len(s) for i, (s, _) in enumerate(imps)]))
    # impressions arrive in shuffled order; candidates of one impression keep theirs
    shuffled = np.repeat(rng.permutation(len(imps)), [len(s) for s, _ in imps])
    block_perm = torch.argsort(torch.tensor(shuffled), stable=True)
    m.update(preds[block_perm], target[block_perm], idx[block_perm])
    got = m.compute()
    valid = [(s, y) for s, y in imps if 0 < y.sum() < len(y)]
    refs = [reference(s, y) for s, y in valid]
    for k in ("auc", "mrr", "ndcg@5", "ndcg@10"):
        if ties and k != "auc":
            continue  # tie order is a convention; checked in test_tie_convention
        assert float(got[k]) == pytest.approx(np.mean([r[k] for r in refs]), abs=1e-12), k
    assert int(got["impressions"]) == len(valid)
    assert int(got["skipped"]) == len(imps) - len(valid)


def test_tie_convention_keeps_candidate_order():
    vals, valid = impression_scores(
        torch.tensor([[1.0, 1.0, 0.0]]), torch.tensor([[0, 1, 0]]), torch.ones(1, 3, dtype=torch.bool)
    )
    assert valid.all()
    assert float(vals["mrr"][0]) == pytest.approx(0.5)  # the click ties with an earlier candidate
    assert float(vals["auc"][0]) == pytest.approx(0.75)  # one win, one tie


def test_exact_small_example():
    s = torch.tensor([[0.1, 0.4, 0.35, 0.8, 0.0]])
    y = torch.tensor([[0, 1, 0, 1, 0]])
    vals, _ = impression_scores(s, y, torch.ones_like(y, dtype=torch.bool))
    assert float(vals["auc"][0]) == pytest.approx(1.0)
    assert float(vals["mrr"][0]) == pytest.approx((1 / 1 + 1 / 2) / 2)
    s2 = torch.tensor([[0.9, 0.4, 0.35, 0.8, 0.0]])
    y2 = torch.tensor([[0, 0, 1, 0, 0]])
    vals, _ = impression_scores(s2, y2, torch.ones_like(y2, dtype=torch.bool))
    assert float(vals["mrr"][0]) == pytest.approx(1 / 4)
    assert float(vals["ndcg@5"][0]) == pytest.approx(1 / np.log2(5))
    assert float(vals["ndcg@10"][0]) == pytest.approx(1 / np.log2(5))
    assert float(vals["auc"][0]) == pytest.approx(1 / 4)  # beats only 0.0


def test_padding_and_batching_never_change_results():
    rng = np.random.default_rng(1)
    imps = random_impressions(rng, 50)
    a = ImpressionMetrics()
    for i, (s, y) in enumerate(imps):  # one impression per update
        a.update(torch.tensor(s), torch.tensor(y), torch.full((len(s),), i))
    b = ImpressionMetrics()
    L = max(len(s) for s, _ in imps) + 3
    P = torch.full((len(imps), L), 99.0)  # padding with large scores must be ignored
    Y = torch.ones((len(imps), L), dtype=torch.long)
    M = torch.zeros((len(imps), L), dtype=torch.bool)
    for i, (s, y) in enumerate(imps):
        P[i, : len(s)] = torch.tensor(s)
        Y[i, : len(s)] = torch.tensor(y)
        M[i, : len(s)] = True
    b.update_padded(P[:20], Y[:20], M[:20])
    b.update_padded(P[20:], Y[20:], M[20:])
    ra, rb = a.compute(), b.compute()
    for k in ra:
        assert float(ra[k]) == pytest.approx(float(rb[k]), abs=1e-12)


def test_merge_states_like_ddp():
    rng = np.random.default_rng(2)
    imps = random_impressions(rng, 40)
    whole, part1, part2 = ImpressionMetrics(), ImpressionMetrics(), ImpressionMetrics()
    for i, (s, y) in enumerate(imps):
        args = (torch.tensor(s), torch.tensor(y), torch.full((len(s),), i))
        whole.update(*args)
        (part1 if i % 2 else part2).update(*args)
    part1.merge_state(part2)
    for k, v in whole.compute().items():
        assert float(v) == pytest.approx(float(part1.compute()[k]), abs=1e-12)


def test_nan_predictions_raise():
    with pytest.raises(ValueError, match="NaN"):
        ImpressionMetrics().update(torch.tensor([float("nan"), 1.0]), torch.tensor([1, 0]), torch.tensor([0, 0]))


def test_prediction_file(tmp_path):
    assert candidate_ranks([0.1, 0.9, 0.5]) == [3, 1, 2]
    write_prediction_file(tmp_path / "prediction.txt", [7, 3], [[0.1, 0.9, 0.5], torch.tensor([2.0, 1.0])])
    assert (tmp_path / "prediction.txt").read_text() == "7 [3,1,2]\n3 [1,2]\n"
    write_prediction_file(tmp_path / "prediction.zip", [1], [[0.0, 1.0]])
    with zipfile.ZipFile(tmp_path / "prediction.zip") as zf:
        assert zf.namelist() == ["prediction.txt"]
        assert zf.read("prediction.txt") == b"1 [2,1]\n"


def test_no_valid_impression_warns_and_gives_nan():
    m = ImpressionMetrics()
    m.update(torch.tensor([0.3, 0.1]), torch.tensor([1, 1]), torch.tensor([0, 0]))  # no non-click
    with pytest.warns(RuntimeWarning, match="no impression"):
        out = m.compute()
    assert torch.isnan(out["auc"]) and out["skipped"] == 1
