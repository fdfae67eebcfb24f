"""The mechanism worlds of #46: hub entities (User-as-Graph's signal) and stories with noisy
titles (DIGAT's signal) exist in the generated data when on and change nothing when off."""

import hashlib
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from newsrec.data import generate_mind
from newsrec.data.mind import read_behaviors, read_news
from newsrec.data.semantic_graph import nearest_news
from newsrec.data.synthetic import SyntheticConfig
from newsrec.data.synthetic_world import STORY_WORDS, World

ROOT = Path(__file__).parents[1]
PARTS = (
    "train/news.tsv",
    "train/behaviors.tsv",
    "train/oracle.tsv",
    "train/entity_embedding.vec",
    "dev/news.tsv",
    "dev/behaviors.tsv",
    "dev/oracle.tsv",
    "word_vectors.txt",
)
#: SHA-256 of PARTS of two worlds of 60 users and 80 news (seed 3), written by the generator
#: before these knobs existed (commit 14052ca): with the knobs off the bytes must not move
BEFORE = {
    (): "0b7d557694fa269b24050919cfeb6c635f95aceaa5360cfaaf1b5322ae046650",
    (("num_cues", 4), ("num_segments", 3), ("vague_news_fraction", 0.2)): (
        "452d59c9ae4ce52febcd6884c6d6cd3a7b6db66fbe60139f7dd4bdea1e9e67ef"
    ),
}


def digest(root) -> str:
    h = hashlib.sha256()
    for part in PARTS:
        h.update((root / part).read_bytes())
    return h.hexdigest()


@pytest.mark.parametrize("knobs", list(BEFORE))
def test_knobs_off_leave_the_world_byte_identical(tmp_path, knobs):
    off = dict(knobs, hub_strength=0.0, num_hubs=7, story_noise_fraction=0.0, story_size=9)
    root = generate_mind(tmp_path / "w", num_users=60, num_news=80, seed=3, **off)
    assert digest(root) == BEFORE[knobs]


def ids(names) -> np.ndarray:
    return np.array([int(x[1:]) - 1 for x in names], dtype=np.int64)


def test_hub_world_the_hub_shows_only_across_clicks(tmp_path):
    kw = dict(num_users=400, num_news=300, seed=1, hub_strength=2.0, num_hubs=12)
    root = generate_mind(tmp_path / "h", **kw)
    w = World(SyntheticConfig(**kw))
    # the files: every news mentions its hub entity in its title (first or second) and no other
    news = read_news(root / "dev" / "news.tsv").to_pydict()
    for nid, title, ents in zip(news["news_id"], news["title"], news["title_entities"]):
        n = int(nid[1:]) - 1
        hubs = [x for x in title.lower().split() if x.startswith("hub")]
        assert hubs == [f"hub{w.hub[n]}x"] and hubs[0] in title.lower().split()[:2]
        assert f'"Label": "hub{w.hub[n]}x"' in ents
    # hubs are drawn whatever the topic: every hub is mentioned in news of most topics
    topics_per_hub = [len(np.unique(w.topic[w.hub == h])) for h in range(12)]
    assert min(topics_per_hub) >= 0.5 * len(np.unique(w.topic))
    b = read_behaviors(root / "dev" / "behaviors.tsv").to_pydict()
    clicked, shown, share, modal, topic_agrees = [], [], [], [], []
    for user, hist, cands, labels in zip(b["user_id"], b["history"], b["candidates"], b["labels"]):
        u = int(user[1:]) - 1
        c, y = ids(cands), np.asarray(labels, dtype=bool)
        mentions = w.hub[c] == w.user_hub[u]
        clicked += list(mentions[y])
        shown += list(mentions[~y])
        h = ids(hist)
        if len(h) >= 10:
            share.append((w.hub[h] == w.user_hub[u]).mean())
            modal.append(np.bincount(w.hub[h], minlength=12).argmax() == w.user_hub[u])
            top = np.argsort(-w.theta[u])[:2]
            hits = w.hub[h] == w.user_hub[u]
            if hits.any() and (~hits).any():  # hub clicks vs the others: share in the top 2 topics
                topic_agrees.append(np.isin(w.topic[h[hits]], top).mean() - np.isin(w.topic[h[~hits]], top).mean())
    assert np.mean(clicked) > 2.5 * np.mean(shown)  # candidates: the hub raises the click rate
    assert 1 / 12 + 0.05 < np.mean(share) < 0.5  # histories: over chance, yet a minority of clicks
    assert np.mean(modal) > 0.45  # ... and mostly the user's most frequent hub (chance: 1/12)
    assert np.mean(topic_agrees) < 0.05  # and no more in the user's topics than their other clicks


def test_story_world_noisy_titles_hide_the_topic_their_siblings_show_it(tmp_path):
    kw = dict(num_users=400, num_news=300, seed=2, story_noise_fraction=0.6, story_size=4)
    root = generate_mind(tmp_path / "s", **kw)
    w = World(SyntheticConfig(**kw))
    news = read_news(root / "dev" / "news.tsv").to_pydict()
    assert len(news["news_id"]) == 300 and w.noisy.any()
    titles = {int(nid[1:]) - 1: t.lower().split() for nid, t in zip(news["news_id"], news["title"])}
    assert (np.bincount(w.story) <= 4).all() and all(
        (w.topic[w.story == s] == w.topic[w.story == s][0]).all() for s in np.unique(w.story)
    )
    for n, words in titles.items():
        story = [f"story{w.story[n]}w{k}" for k in range(STORY_WORDS)]
        assert words[-STORY_WORDS:] == story
        assert sum(x.startswith("story") for x in words) == STORY_WORDS
        siblings = np.flatnonzero((w.story == w.story[n]) & ~w.noisy)
        assert len(siblings)  # every story has a news that shows its topic
        if w.noisy[n]:
            assert len(words) == 2 + STORY_WORDS and not any(x.startswith(("t", "ent")) for x in words)
            i = news["news_id"].index(f"N{n + 1}")
            assert news["subcategory"][i].endswith("general") and news["title_entities"][i] == "[]"
            assert not any(x.startswith("t") for x in news["abstract"][i].lower().split())
            assert all(any(x.startswith(f"t{w.topic[n]}w") for x in titles[s]) for s in siblings)
    # the stories change the text only: the clicks are the default world's, to the byte
    plain = generate_mind(tmp_path / "plain", num_users=400, num_news=300, seed=2)
    for part in ("train/behaviors.tsv", "dev/behaviors.tsv", "dev/oracle.tsv"):
        assert (root / part).read_bytes() == (plain / part).read_bytes()
    # noisy news are candidates in dev (where the signal is read), as often as their share
    b = read_behaviors(root / "dev" / "behaviors.tsv").to_pydict()
    cands = np.concatenate([ids(c) for c in b["candidates"]])
    assert w.noisy[cands].mean() > 0.7 * w.noisy.mean() > 0.3
    # story words' vectors hold no topic: as far from their topic's centre as common words
    vec = {}
    for line in (root / "word_vectors.txt").read_text().splitlines():
        word, *xs = line.split()
        vec[word] = np.array(xs, dtype=float)

    def cos_to_topic(words_and_topics):
        cs = []
        for word, t in words_and_topics:
            centre = np.mean([vec[f"t{t}w{k}"] for k in range(60)], axis=0)
            cs.append(vec[word] @ centre / np.linalg.norm(vec[word]) / np.linalg.norm(centre))
        return np.mean(cs)

    # the semantic neighbours carry the topic: among each noisy news' 5 nearest news by the
    # IDF-weighted mean of its title's word vectors (DIGAT's graphs without a sentence encoder),
    # a story sibling that shows its topic, for most noisy news
    order = sorted(titles)
    df = Counter(x for n in order for x in set(titles[n]))
    mean = [np.mean([np.log(len(order) / df[x]) * vec[x] for x in titles[n]], axis=0) for n in order]
    rows, _ = nearest_news(torch.tensor(np.array([np.zeros(50), *mean]), dtype=torch.float32), 5)
    near = np.asarray(order)[np.asarray(rows)[1:] - 1]  # [N, 5] news ids
    shows = (w.story[near] == w.story[order][:, None]) & ~w.noisy[near]
    assert shows[w.noisy[order]].any(axis=1).mean() > 0.8
    story_words = [(f"story{w.story[n]}w{k}", w.topic[n]) for n in range(300) for k in range(STORY_WORDS)]
    common_words = [(f"c{k}", k % 16) for k in range(150)]
    assert abs(cos_to_topic(story_words) - cos_to_topic(common_words)) < 0.05
    assert cos_to_topic([(f"t{t}w{k}", t) for t in range(16) for k in range(5)]) > 0.5


@pytest.mark.parametrize(
    "knobs",
    [
        {"hub_strength": -1.0},
        {"hub_strength": float("nan")},
        {"hub_strength": 1.0, "num_hubs": 1},
        {"story_noise_fraction": 1.5},
        {"story_noise_fraction": -0.1},
        {"story_noise_fraction": 0.3, "story_size": 1},
    ],
)
def test_bad_mechanism_knobs_are_one_clear_error(knobs):
    name = next(iter(knobs))
    with pytest.raises(ValueError, match=name):
        SyntheticConfig(**knobs)


def test_paper_tables_takes_the_mechanism_knobs_and_refuses_a_bad_range_with_one_line():
    """A real ``benchmarks/paper_tables.py`` process: a value out of range ends at its command
    line (the config's own check, before any model trains)."""
    script = str(ROOT / "benchmarks" / "paper_tables.py")
    cmd = [sys.executable, script, "--quick", "--models", "popularity", "--knob", "hub_strength=2", "--knob"]
    proc = subprocess.run([*cmd, "story_size=1"], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 1 and proc.stderr.strip().count("\n") == 0, proc.stderr[-2000:]
    assert proc.stderr.startswith("paper_tables.py: error: story_noise_fraction must be in [0, 1]")
