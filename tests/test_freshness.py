"""The fresh/all split of the benchmarks (newsrec.freshness) on exact small examples."""

import numpy as np
import pytest

from newsrec.freshness import fresh_impressions, fresh_news, split_metrics


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
