"""The fresh/all split of the benchmarks (newsrec.data.freshness) on exact small examples."""

import numpy as np
import pytest

from newsrec.data.freshness import fresh_impressions, fresh_news, split_metrics


def test_fresh_news_is_no_training_click_and_never_the_padding_row():
    np.testing.assert_array_equal(fresh_news(np.array([0, 3, 0, 1, 0])), [False, False, True, False, True])
    with pytest.raises(ValueError, match="1-D"):
        fresh_news(np.zeros((2, 2)))


def test_fresh_impressions_marks_a_clicked_fresh_news_only():
    fresh = np.array([False, False, True, False, True])
    # impression 0: clicks 2 (fresh); 1: clicks 1, shows 4 (fresh, not clicked); 2: empty; 3: clicks 3 and 4
    candidates = np.array([2, 1, 1, 4, 3, 4, 1])
    labels = np.array([1, 0, 1, 0, 1, 1, 0])
    offsets = np.array([0, 2, 4, 4, 7])
    np.testing.assert_array_equal(fresh_impressions(candidates, offsets, labels, fresh), [True, False, False, True])
    with pytest.raises(ValueError, match="do not match"):
        fresh_impressions(candidates, offsets[:-1], labels, fresh)
    with pytest.raises(ValueError, match="fresh mask covers"):
        fresh_impressions(candidates + 5, offsets, labels, fresh)


def test_split_metrics_reports_all_and_fresh_impressions():
    scores = [np.array([0.9, 0.1]), np.array([0.2, 0.8, 0.5]), np.array([0.3, 0.7])]
    labels = [np.array([1, 0]), np.array([1, 0, 0]), np.array([1, 0])]
    got = split_metrics(scores, labels, np.array([False, True, True]))
    assert got["all"]["impressions"] == 3 and got["fresh"]["impressions"] == 2
    assert got["all"]["auc"] == pytest.approx((1 + 0 + 0) / 3)
    assert got["fresh"]["auc"] == 0.0
    # nDCG@10 of a click ranked third: 1 / log2(4)
    assert got["fresh"]["ndcg@10"] == pytest.approx((1 / np.log2(4) + 1 / np.log2(3)) / 2)
    none = split_metrics(scores, labels, np.zeros(3, bool))["fresh"]
    assert none["impressions"] == 0 and np.isnan(none["auc"])


def _behaviors(times, candidates, labels):
    from newsrec.data.behaviors import Behaviors

    offsets = np.concatenate([[0], np.cumsum([len(c) for c in candidates])]).astype(np.int64)
    n = len(times)
    return Behaviors(
        impression_ids=np.arange(n, dtype=np.int64), users=np.zeros(n, np.int32), user_ids=["U0"],
        times=np.asarray(times, np.int64), history=np.zeros(0, np.int64), history_offsets=np.zeros(n + 1, np.int64),
        candidates=np.concatenate(candidates).astype(np.int64), candidate_offsets=offsets,
        labels=np.concatenate(labels).astype(np.int8),
    )  # fmt: skip


def test_recency_popularity_decays_clicks_and_ranks_a_fresh_article_by_its_age():
    from newsrec.baselines import first_seen_times, recency_popularity_scores

    hour = 3600
    # training: news 1 clicked at 0 h, news 3 at 1 h (the end of training); 2 shown, not clicked
    train = _behaviors([0, hour], [[1, 2], [1, 3]], [[1, 0], [0, 1]])
    # dev at 2 h: news 1 (first shown at 0 h), 3 (at 1 h) and 4, fresh, first shown now
    dev = _behaviors([2 * hour], [[1, 3, 4]], [[0, 0, 1]])
    np.testing.assert_array_equal(first_seen_times([train, dev], 6), [np.inf, 0, 0, hour, 2 * hour, np.inf])
    (got,) = recency_popularity_scores(train, dev, 6, half_life_hours=1.0)
    # 1: 0.5 click (1 h old at the end) halved again + prior 2 h old; 3: 1 click halved + prior 1 h
    # old; 4: no click, the whole prior
    np.testing.assert_allclose(got, np.log1p([0.5 * 0.5 + 0.25, 1.0 * 0.5 + 0.5, 1.0]))
    # given publish times (4 published an hour before it was first shown) and no prior
    publish = np.array([np.nan, 0, 0, hour, hour, 0])
    (late,) = recency_popularity_scores(train, dev, 6, half_life_hours=1.0, publish_times=publish)
    assert late[2] == pytest.approx(np.log1p(0.5))
    (plain,) = recency_popularity_scores(train, dev, 6, half_life_hours=1.0, prior=0.0)
    np.testing.assert_allclose(plain, np.log1p([0.25, 0.5, 0.0]))
    with pytest.raises(ValueError, match="one entry per news"):
        recency_popularity_scores(train, dev, 6, publish_times=np.zeros(3))
