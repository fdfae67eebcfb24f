"""The synthetic world's knobs do what their documentation says (exact checks on small worlds)."""

import json

import numpy as np
import pytest

from newsrec.data import generate_mind
from newsrec.data.mind import read_behaviors, read_news
from newsrec.data.synthetic import SyntheticConfig
from newsrec.data.synthetic_world import World


def small(tmp_path, name, **knobs):
    return generate_mind(tmp_path / name, num_users=150, num_news=160, seed=5, **knobs)


def test_same_arguments_give_the_same_bytes_and_new_knobs_at_zero_change_nothing(tmp_path):
    a = small(tmp_path, "a")
    b = small(tmp_path, "b", vague_news_fraction=0.0, num_segments=0, transition_scope="successor", num_cues=0)
    for part in ("train/news.tsv", "train/behaviors.tsv", "dev/behaviors.tsv", "dev/oracle.tsv"):
        assert (a / part).read_bytes() == (b / part).read_bytes()


def test_vague_news_hide_their_topic_and_are_never_candidates(tmp_path):
    root = small(tmp_path, "v", vague_news_fraction=0.5)
    news = read_news(root / "dev" / "news.tsv").to_pydict()
    vague = {n for n, sub in zip(news["news_id"], news["subcategory"]) if sub.endswith("general")}
    assert 0.3 < len(vague) / len(news["news_id"]) < 0.7
    for nid, title, ents in zip(news["news_id"], news["title"], news["title_entities"]):
        if nid in vague:
            assert all(w.lower().startswith(("c", "aspect")) for w in title.split()) and ents == "[]"
    in_history = 0
    for split in ("train", "dev"):
        b = read_behaviors(root / split / "behaviors.tsv").to_pydict()
        for hist, imps in zip(b["history"], b["candidates"]):
            assert not vague & set(imps)
            in_history += len(vague & set(hist))
    assert in_history > 0  # clicked in histories all the same


def one_click_on_a_chain(w: World) -> tuple[int, np.ndarray, np.ndarray]:
    """A news ``c`` with a chain predecessor, and the ``clicks`` / ``nclicks`` of three users of
    whom only the first clicked it (once)."""
    c = int(np.flatnonzero(w.pred >= 0)[0])
    return c, np.array([[c, 0], [0, 0], [0, 0]]), np.array([1, 0, 0])


def test_transition_scope_neighbors_favours_predecessors_too():
    cfg = SyntheticConfig(num_users=3, num_news=50, seed=2, transition_scope="neighbors")
    w = World(cfg)
    c, clicks, nclicks = one_click_on_a_chain(w)
    news = np.array([[w.succ[c], w.pred[c]]])
    assert w.follows(np.array([0]), news, clicks, nclicks).all()
    w_succ = World(SyntheticConfig(num_users=3, num_news=50, seed=2))
    assert w_succ.follows(np.array([0]), news, clicks, nclicks).tolist() == [[True, w.pred[c] == w.succ[c]]]


def test_transition_scope_topics_favours_every_news_of_a_neighbours_topic():
    cfg = SyntheticConfig(num_users=3, num_news=80, seed=2, transition_scope="topics")
    w = World(cfg)
    c, clicks, nclicks = one_click_on_a_chain(w)
    news = np.arange(80)[None, :]
    favoured = np.isin(w.topic, [w.topic[w.succ[c]], w.topic[w.pred[c]]])
    assert favoured.sum() > 2  # more news than the two neighbours themselves
    assert w.follows(np.array([0]), news, clicks, nclicks)[0].tolist() == favoured.tolist()
    assert not w.follows(np.array([1]), news, clicks, nclicks).any()  # no clicks, nothing favoured


def test_segments_add_their_strength_to_the_logit_of_their_readers():
    w = World(SyntheticConfig(num_users=20, num_news=40, seed=3, num_segments=4, segment_strength=2.5))
    users = np.arange(20)
    news = np.tile(np.arange(40), (20, 1))
    same = w.news_segment[news] == w.user_segment[users][:, None]
    off = w.logits(users, news, None)
    w.cfg.segment_strength = 0.0
    gain = off - w.logits(users, news, None)
    np.testing.assert_allclose(gain, 2.5 * same)
    assert same.any() and (~same).any()


def test_popularity_sigma_concentrates_clicks(tmp_path):
    shares = []
    for sigma in (0.5, 2.5):
        root = small(tmp_path, f"p{sigma}", popularity_sigma=sigma)
        b = read_behaviors(root / "train" / "behaviors.tsv").to_pydict()
        counts = np.unique([n for h in b["history"] for n in h], return_counts=True)[1]
        top = np.sort(counts)[::-1]
        shares.append(top[: max(1, len(top) // 10)].sum() / top.sum())  # share of the top 10 %
    assert shares[1] > shares[0] + 0.1


def test_cue_words_show_in_histories_and_only_their_pair_tells_the_aspect(tmp_path):
    root = generate_mind(tmp_path / "c", num_users=600, num_news=400, seed=2, num_cues=6, num_aspects=3)
    w = World(SyntheticConfig(num_users=600, num_news=400, seed=2, num_cues=6, num_aspects=3))
    news = read_news(root / "train" / "news.tsv").to_pydict()
    for nid, title in zip(news["news_id"], news["title"]):
        n = int(nid[1:]) - 1
        words = title.lower().split()
        assert [x for x in words if x.startswith("cue")] == [f"cue{w.cue[n]}"]
        assert f"aspect{w.aspect[n]}" in words
    # the aspect is the cue values' sum modulo the aspects: every cue is paired with every aspect
    first, second = w.user_cues.T
    assert (first != second).all()
    assert (w.user_aspect == (w.cue_value[first] + w.cue_value[second]) % 3).all()
    for c in range(6):
        assert len(np.unique(w.user_aspect[(first == c) | (second == c)])) == 3
    # first impressions' histories (the pre-period walk) favour the user's cues, not the aspect
    b = read_behaviors(root / "train" / "behaviors.tsv").to_pydict()
    seen, cue_share, aspect_share = set(), [], []
    for user, hist in zip(b["user_id"], b["history"]):
        u = int(user[1:]) - 1
        if u in seen or not hist:
            continue
        seen.add(u)
        clicks = np.array([int(x[1:]) - 1 for x in hist])
        cue_share.append(np.isin(w.cue[clicks], w.user_cues[u]).mean())
        aspect_share.append((w.aspect[clicks] == w.user_aspect[u]).mean())
    assert np.mean(cue_share) > 0.6  # 2 of 6 cues by chance: 1/3
    assert abs(np.mean(aspect_share) - 1 / 3) < 0.05


@pytest.mark.parametrize(
    "knobs",
    [
        {"num_cues": 1},
        {"num_cues": 4, "num_aspects": 1},
        {"cue_strength": -1.0},
        {"vague_news_fraction": 1.5},
        {"transition_scope": "both"},
        {"popularity_sigma": -1.0},
    ],
)
def test_bad_knobs_are_refused(knobs):
    with pytest.raises(ValueError):
        SyntheticConfig(**knobs)


def test_world_json_records_the_knobs(tmp_path):
    root = small(tmp_path, "j", num_segments=3)
    world = json.loads((root / "world.json").read_text())
    assert world["config"]["num_segments"] == 3 and 0.5 < world["dev_oracle_auc"] <= 1


def test_datamodule_warns_when_the_root_holds_another_world(tmp_path):
    """An older demo's world at the root is used as it is, with a warning naming what differs."""
    import warnings

    import pytest

    from newsrec.data import MINDDataModule

    root = tmp_path / "demo"
    MINDDataModule(str(root), synthetic={"num_users": 30, "num_news": 40, "seed": 1}).prepare_data()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        MINDDataModule(str(root), synthetic={"num_users": 30, "num_news": 40, "seed": 1}).prepare_data()
    with pytest.warns(UserWarning, match=r"num_news=40 \(asked 50\).*Delete the folder"):
        MINDDataModule(str(root), synthetic={"num_users": 30, "num_news": 50, "seed": 1}).prepare_data()
    import json

    assert json.loads((root / "world.json").read_text())["config"]["num_news"] == 40  # not regenerated
