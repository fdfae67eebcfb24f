"""Clicks in serving (library calls): stored clicks move the live graph that the model's own
scoring path reads, fresh articles join the graph, a restart rebuilds the same state from the
store, bad clicks are refused whole, users are served by id."""

import numpy as np
import pytest
from test_serving import train_checkpoint

from newsrec.serving import Recommender


@pytest.fixture(scope="module")
def glory_ckpt(tiny_world, tmp_path_factory):
    return train_checkpoint(tiny_world, "glory_transitions", tmp_path_factory.mktemp("live") / "ckpt")


def same(got, want) -> None:
    """The same ranking and scores (up to the float order of a subgraph's edge sums)."""
    assert [n for n, _ in got] == [n for n, _ in want]
    np.testing.assert_allclose([s for _, s in got], [s for _, s in want], rtol=1e-5, atol=1e-6)


def clicks_for(users, chain, start=1_600_000_000.0):
    """Every user clicks the news of ``chain`` in order, a minute apart."""
    return [
        {"user_id": u, "news_id": n, "time": start + 60.0 * (i * len(chain) + j)}
        for i, u in enumerate(users)
        for j, n in enumerate(chain)
    ]


def test_clicks_move_the_graph_the_model_reads_and_a_restart_rebuilds_it(glory_ckpt, tmp_path, store_url):
    rec = Recommender.from_checkpoint(glory_ckpt, index_dir=None, store=store_url, entity_refresh_seconds=0)
    frozen = Recommender.from_checkpoint(glory_ckpt, index_dir=None)
    ids = rec.index.ids
    a, b = ids[5], ids[9]
    history, candidates = [ids[3], ids[4], a], [b, ids[20], ids[21], ids[22]]
    want = rec.recommend(history, k=4, candidates=candidates)
    same(want, frozen.recommend(history, k=4, candidates=candidates))  # no clicks: the training graph
    before = dict(rec.graph_neighbors(a, 50)).get(b, 0.0)
    edges = rec.click_info["graph_edges"]
    assert rec.add_clicks(clicks_for([f"V{i}" for i in range(30)], [a, b])) == {"accepted": 60}
    assert rec.graph_neighbors(a, 1) == [(b, before + 30.0)]  # read your writes
    assert rec.click_info["clicks"] == 60 and rec.click_info["graph_edges"] >= edges
    moved = rec.recommend(history, k=4, candidates=candidates)
    assert dict(moved)[b] != pytest.approx(dict(want)[b], abs=1e-6)  # the graph score read the clicks
    # a fresh article: rankable at once, in the graph as soon as readers click it
    rec.add_news([{"news_id": "Nfresh", "title": "a story that broke this morning", "category": "news"}])
    assert rec.graph_neighbors("Nfresh", 5) == []
    rec.add_clicks(clicks_for([f"W{i}" for i in range(12)], [a, "Nfresh"], start=1_600_100_000.0))
    assert dict(rec.graph_neighbors(a, 3))["Nfresh"] == 12.0
    assert dict(rec.graph_neighbors("Nfresh", 3, direction="in"))[a] == 12.0
    served = rec.recommend(history, k=5, candidates=candidates + ["Nfresh"])
    rec.close()
    # a restart: the training graph plus the stored log give the same graph and the same scores
    again = Recommender.from_checkpoint(glory_ckpt, index_dir=None, store=store_url)
    assert again.num_news == rec.num_news and again.click_info == rec.click_info
    assert again.graph_neighbors(a, 10) == rec.graph_neighbors(a, 10)
    same(again.recommend(history, k=5, candidates=candidates + ["Nfresh"]), served)
    again.close()


def test_bad_clicks_are_refused_whole_and_nothing_is_stored(glory_ckpt, tmp_path):
    rec = Recommender.from_checkpoint(glory_ckpt, index_dir=None, store=tmp_path / "clicks.sqlite")
    good = {"user_id": "U1", "news_id": rec.index.ids[1], "time": "2019-11-15T08:00:00Z"}
    cases = [
        ({**good, "time": "not a time"}, ValueError, "click 1: time"),
        ({**good, "news_id": "Nnowhere"}, KeyError, "click 1: unknown news id 'Nnowhere'"),
        ({**good, "user_id": ""}, ValueError, "click 1: user_id is empty"),
        ({k: v for k, v in good.items() if k != "time"}, ValueError, r"click 1: missing \['time'\]"),
        ({**good, "page": 3}, ValueError, r"click 1: unknown field\(s\) \['page'\]"),
        ({**good, "user_id": 7}, TypeError, "click 1: user_id must be a string"),
    ]
    for bad, error, match in cases:
        with pytest.raises(error, match=match):
            rec.add_clicks([good, bad])
    with pytest.raises(TypeError, match="a list of clicks"):
        rec.add_clicks(good)
    assert rec.click_info["clicks"] == 0 and rec.store.clicks_after(0).seq.size == 0
    assert rec.add_clicks([good]) == {"accepted": 1}
    no_store = Recommender.from_checkpoint(glory_ckpt, index_dir=None)
    with pytest.raises(RuntimeError, match="no click store"):
        no_store.add_clicks([good])
    rec.close()


def test_users_by_id_history_then_stored_clicks_and_cold_start(glory_ckpt, tiny_world, tmp_path):
    rec = Recommender.from_checkpoint(glory_ckpt, index_dir=None, store=tmp_path / "clicks.sqlite")
    dev = rec.dm.behaviors("dev")
    row = int(np.argmax(dev.times))  # a user's latest impression in the data
    user = dev.user_ids[dev.users[row]]
    hist, n = dev.histories(np.array([row]), rec.history_length)
    data_history = [rec.dm.corpus.news_ids[r] for r in hist[0, : n[0]]]
    assert rec.user_history(user) == data_history
    fresh = [rec.index.ids[i] for i in (7, 8)]
    late, early = 1.7e9, 1.69e9  # 2023: in the past (a click from the future is refused)
    rec.add_clicks(
        [{"user_id": user, "news_id": fresh[1], "time": late}, {"user_id": user, "news_id": fresh[0], "time": early}]
    )
    assert rec.user_history(user) == (data_history + fresh)[-rec.history_length :]  # stored clicks in time order
    by_id = rec.recommend(user_id=user, k=5)
    assert by_id == rec.recommend(rec.user_history(user), k=5)
    cold = rec.recommend(user_id="somebody new", k=5)
    assert rec.user_history("somebody new") == [] and cold == rec.recommend([], k=5)
    with pytest.raises(ValueError, match="a history or a user id"):
        rec.recommend_many([None], k=3)
    rec.close()


def test_two_recommenders_on_one_postgresql_database_follow_each_other(glory_ckpt, postgres_url):
    import time

    a = Recommender.from_checkpoint(glory_ckpt, index_dir=None, store=postgres_url)
    b = Recommender.from_checkpoint(glory_ckpt, index_dir=None, store=postgres_url, follow_seconds=0.2)
    ids = a.index.ids
    a.add_news([{"news_id": "Nshared", "title": "news posted to one process"}])
    a.add_clicks(clicks_for(["P1", "P2"], [ids[2], "Nshared"]))
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and b.graph_neighbors(ids[2], 5) != a.graph_neighbors(ids[2], 5):
        time.sleep(0.05)
    assert b.graph_neighbors(ids[2], 5) == a.graph_neighbors(ids[2], 5)
    assert dict(b.graph_neighbors(ids[2], 5))["Nshared"] == 2.0 and b.num_news == a.num_news
    a.close(), b.close()


def test_entity_refresh_is_deferred_and_then_equals_a_rebuild(glory_ckpt, tmp_path):
    """With the default refresh period the news graph moves at once and the entity view of the
    touched news waits for refresh_entities(); after it, the scores are a restarted server's."""
    store = tmp_path / "clicks.sqlite"
    rec = Recommender.from_checkpoint(glory_ckpt, index_dir=None, store=store, entity_refresh_seconds=3600)
    ids = rec.index.ids
    rec.add_clicks(clicks_for([f"E{i}" for i in range(15)], [ids[i] for i in range(10, 30)]))
    assert rec.click_info["stale_entities"] > 0
    history, candidates = [ids[10], ids[11]], [ids[i] for i in range(30, 60)]
    assert rec.refresh_entities() > 0 and rec.click_info["stale_entities"] == 0
    again = Recommender.from_checkpoint(glory_ckpt, index_dir=None, store=store, entity_refresh_seconds=3600)
    same(rec.recommend(history, k=10, candidates=candidates), again.recommend(history, k=10, candidates=candidates))
    rec.close(), again.close()


@pytest.fixture(scope="module")
def dkn_ckpt(tiny_world, tmp_path_factory):
    return train_checkpoint(tiny_world, "dkn", tmp_path_factory.mktemp("live-dkn") / "ckpt")


def test_dkn_serves_behind_the_default_store_and_its_entity_view_follows_clicks(dkn_ckpt, tmp_path):
    """#48 item 5: DKN reads entity-graph neighbours of its title's entity words; the live graph
    links the news' entities (the field the training graph is built from), which the index now
    keeps for it. With the default store (``auto``) it serves, clicks move its entity view at once
    (DKN is not cacheable: nothing waits for a refresh), and the scores are a restarted server's."""
    rec = Recommender.from_checkpoint(dkn_ckpt, index_dir=tmp_path, store="auto", entity_refresh_seconds=3600)
    assert rec.store.name == str(tmp_path / "clicks.sqlite")
    ids = rec.index.ids
    history, candidates = [ids[10], ids[11]], [ids[i] for i in range(30, 60)]
    before = rec.recommend(history, k=10, candidates=candidates)
    rec.add_clicks(clicks_for([f"E{i}" for i in range(15)], [ids[i] for i in range(10, 30)]))
    assert rec.click_info["stale_entities"] == 0 and rec.live.ent_top is not None
    after = rec.recommend(history, k=10, candidates=candidates)
    assert [s for _, s in after] != [s for _, s in before]  # the entity view moved
    again = Recommender.from_checkpoint(dkn_ckpt, index_dir=tmp_path, store="auto", entity_refresh_seconds=3600)
    same(after, again.recommend(history, k=10, candidates=candidates))
    rec.close(), again.close()
