"""Approximate search on the vectors of a trained model: recall@10 against exact search, the
query-weighted space, the fallback to exact search, and the rebuild after many added news."""

import numpy as np
import pytest
import torch

from newsrec.data import MINDDataModule, generate_mind
from newsrec.models import NRMS

pytest.importorskip("faiss")

from newsrec.serving import Recommender  # noqa: E402
from newsrec.serving.search import ExactSearch, FaissSearch, query_metric, recall_at_k  # noqa: E402


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """NRMS at the paper's size (400-d vectors) trained 30 steps on a world of 6,000 news: its
    vectors have a trained model's anisotropy and its user vectors are short beside the news
    vectors, unlike Gaussian test vectors. (newsrec 0.1's index recalled 0.14 of the top 10 here.)"""
    root = generate_mind(tmp_path_factory.mktemp("ann") / "w", num_users=400, num_news=6000, seed=5)
    dm = MINDDataModule(str(root), batch_size=32, history_length=20)
    torch.manual_seed(0)
    model = NRMS(num_words=dm.num_words, pretrained_words=False)  # the synthetic GloVe is 50-d
    model.connect_data(dm)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-4)
    model.train()
    for step, batch in enumerate(dm.train_dataloader()):
        loss = model.training_loss(batch)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if step == 30:
            break
    return model.eval(), dm


def held_out_queries(rec, n=300):
    """User vectors of dev histories (the calibration uses training histories)."""
    b = rec.dm.behaviors("dev")
    hist, lengths = b.histories(np.arange(min(n, len(b))), rec.history_length)
    rows = [tuple(h[:k].tolist()) for h, k in zip(hist, lengths) if k]
    with torch.no_grad():
        return torch.stack([u[0] for u in rec._user_states(rec.index, [(r, 0) for r in rows])]).float()


def test_approximate_search_recalls_a_trained_models_top_10(trained):
    model, dm = trained
    rec = Recommender(model, dm, search="faiss", min_approximate_news=1000)
    info = rec.search_info
    assert info["search"] == "faiss" and info["recall"] >= 0.95  # calibrated on training users
    queries = held_out_queries(rec)
    vectors = rec.index.vectors.candidate.float()
    want = ExactSearch(vectors).search(queries, 10)[1]
    got = rec.index.search.search(queries, 40)[1]  # the shortlist the model re-scores
    assert recall_at_k(got, want) >= 0.9
    # what is served: the top 10 after re-scoring, against exact search's
    b = dm.behaviors("dev")
    hist, lengths = b.histories(np.arange(100), rec.history_length)
    histories = [[dm.corpus.news_ids[x] for x in h[:k]] for h, k in zip(hist, lengths) if k]
    served = [{n for n, _ in r} for r in rec.recommend_many(histories, k=10)]
    exact = Recommender(model, dm, search="exact")
    truth = [{n for n, _ in r} for r in exact.recommend_many(histories, k=10)]
    assert np.mean([len(a & t) / len(t) for a, t in zip(served, truth)]) >= 0.9


def test_the_uncalibrated_index_is_what_calibration_improves(trained):
    """The same index before calibration searches with less effort; calibration only raises it."""
    model, dm = trained
    rec = Recommender(model, dm, search="faiss", min_approximate_news=1000)
    calibrated = rec.index.search
    fresh = FaissSearch(rec.index.vectors.candidate.float())
    assert fresh.recall is None and fresh.effort <= calibrated.effort <= calibrated.max_effort


def test_too_few_news_serve_exactly_and_say_why(trained):
    model, dm = trained
    rec = Recommender(model, dm, search="faiss")  # 6,000 news < the default 20,000
    info = rec.search_info
    assert info["search"] == "exact" and info["recall"] == 1.0 and "min_approximate_news" in info["reason"]


def test_many_added_news_rebuild_and_recalibrate_the_index(trained):
    model, dm = trained
    rec = Recommender(model, dm, search="faiss", min_approximate_news=1000)
    rec.add_news([{"news_id": "fresh-1", "title": "a fresh article"}])
    assert rec._rows_changed_since_build == 1  # a small change: updated in place, counted
    first = rec.index.search
    # readers and, among the added news, copies of the news at the top of their lists
    readers = held_out_queries(rec, 60)
    tops = ExactSearch(rec.index.vectors.candidate.float()).search(readers, 1)[1][:, 0].tolist()
    words = dm.corpus.vocab.itos
    copies = [{"news_id": f"copy-{i}", "title": " ".join(words[w] for w in dm.corpus.arrays["title"][r] if w)}
              for i, r in enumerate(dict.fromkeys(tops))]  # fmt: skip
    many = [{"news_id": f"fresh-{i}", "title": f"fresh article number {i}"} for i in range(2, 700)]
    rec.add_news(copies + many)  # > 10 % of the rows changed since the build: rebuilt and recalibrated
    assert rec.index.search is not first and rec._rows_changed_since_build == 0
    assert rec.search_info["recall"] >= 0.95
    vectors = rec.index.vectors.candidate.float()
    want = ExactSearch(vectors).search(readers, 10)[1]
    assert (want > 6000).any(dim=1).float().mean() > 0.5  # added news in most readers' exact top 10
    assert recall_at_k(rec.index.search.search(readers, 40)[1], want) >= 0.9


def test_the_query_weighted_space_scans_fewer_clusters_for_a_trained_models_users(trained):
    """The Recommender's index (built in the space of training users' vectors) reaches the
    target recall scanning fewer clusters than the same index over the raw vectors, calibrated
    on the same users, and keeps its recall on held-out users."""
    model, dm = trained
    rec = Recommender(model, dm, search="faiss", min_approximate_news=1000)
    weighted = rec.index.search
    assert weighted.queries is not None and weighted.recall >= 0.95
    raw = FaissSearch(weighted.vectors)
    measuring = held_out_queries(rec)[1::2]
    raw.calibrate(measuring)
    weighted_probes, raw_probes = weighted.effort, raw.effort
    queries = held_out_queries(rec)[0::2]
    want = ExactSearch(weighted.vectors).search(queries, 10)[1]
    assert weighted_probes < raw_probes  # 32 against 64 of 77 clusters when written
    raw.effort = weighted_probes
    weighted_recall = recall_at_k(weighted.search(queries, 40)[1], want)
    assert weighted_recall >= 0.95 and weighted_recall > recall_at_k(raw.search(queries, 40)[1], want)


def concentrated_world(seed: int = 0, d: int = 32):
    """News vectors that vary most in 26 directions, users who point along the other 6 (as a
    trained model's users concentrate: GLORY's put 67 % of their energy in 5 directions)."""
    g = torch.Generator().manual_seed(seed)
    scale = torch.cat([torch.full((6,), 0.3), torch.full((d - 6,), 1.0)])
    vectors = torch.randn(10000, d, generator=g) * scale

    def users(n):
        q = torch.zeros(n, d)
        q[:, :6] = torch.randn(n, 6, generator=g) + 2.0
        return q + 0.05 * torch.randn(n, d, generator=g)

    return vectors, users(200), users(200)


def test_the_query_weighted_space_splits_the_news_along_the_users_directions():
    """At 4 of 100 clusters the raw space recalls 0.16 of these users' top 10, the
    query-weighted space 0.98: its clusters follow the directions the users' vectors vary in."""
    vectors, sample, queries = concentrated_world()
    want = ExactSearch(vectors).search(queries, 10)[1]
    raw = recall_at_k(FaissSearch(vectors, nprobe=4).search(queries, 40)[1], want)
    weighted = recall_at_k(FaissSearch(vectors, queries=sample, nprobe=4).search(queries, 40)[1], want)
    assert raw < 0.4 and weighted > 0.9


def test_the_query_weighted_space_keeps_every_inner_product():
    vectors, sample, queries = concentrated_world(seed=1)
    half, inverse = query_metric(sample)
    np.testing.assert_allclose((queries.numpy() @ inverse) @ (vectors.numpy() @ half).T,
                               queries.numpy() @ vectors.numpy().T, rtol=1e-4, atol=1e-3)  # fmt: skip
    # every cluster scanned: the exact top 10 and its inner products
    full = FaissSearch(vectors, queries=sample, nlist=50, nprobe=50)
    want_scores, want = ExactSearch(vectors).search(queries, 10)
    scores, rows = full.search(queries, 10)
    assert torch.equal(rows, want)
    torch.testing.assert_close(scores, want_scores, atol=1e-3, rtol=1e-4)
    # a row updated in place goes into the same space: found by its new vector
    moved = vectors.clone()
    moved[7] = 0.9 * queries[0] / queries[0].norm() * vectors.norm(dim=1).max()
    assert full.updated(moved, torch.tensor([7])).search(queries[:1], 1)[1].item() == 7


def test_isotropic_queries_leave_the_space_as_it_is_and_isotropy_is_checked():
    d = 16
    half, inverse = query_metric(torch.eye(d) * 3.0)  # every direction equally: W = I / d
    np.testing.assert_allclose(half, np.eye(d) / np.sqrt(d), atol=1e-6)
    np.testing.assert_allclose(inverse, np.eye(d) * np.sqrt(d), atol=1e-5)
    half, inverse = query_metric(torch.zeros(3, d))  # no direction at all: the raw space
    assert np.array_equal(half, np.eye(d)) and np.array_equal(inverse, np.eye(d))
    with pytest.raises(ValueError, match="isotropy must be in"):
        FaissSearch(torch.randn(100, d), isotropy=1.5)
