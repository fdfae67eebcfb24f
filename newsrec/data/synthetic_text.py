"""The files of the synthetic world (:mod:`newsrec.data.synthetic`): ``news.tsv`` (titles,
abstracts and entity lists in MIND's form), ``word_vectors.txt`` (GloVe format) and
``entity_embedding.vec`` (TransE format), written from a :class:`~newsrec.data.synthetic_world.World`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from newsrec.core.files import atomic_write
from newsrec.data.synthetic_world import STORY_WORDS, World

__all__ = ["CATEGORY_NAMES", "topic_vectors", "write_entity_vectors", "write_news", "write_word_vectors"]


CATEGORY_NAMES = [
    "news",
    "sports",
    "finance",
    "lifestyle",
    "health",
    "entertainment",
    "travel",
    "autos",
    "foodanddrink",
    "weather",
    "music",
    "movies",
    "tv",
    "video",
    "kids",
    "games",
]


def write_news(path: Path, w: World, rows: np.ndarray) -> None:
    """``news.tsv`` of the world's news ``rows`` (titles, abstracts and entity lists in MIND's form)."""
    cfg = w.cfg
    rng = np.random.default_rng([cfg.seed, 1])
    N = cfg.num_news
    lt = rng.integers(cfg.title_length[0], cfg.title_length[1] + 1, size=N)
    la = rng.integers(cfg.abstract_length[0], cfg.abstract_length[1] + 1, size=N)
    zipf = 1.0 / np.arange(1, cfg.words_per_topic + 1)
    zipf /= zipf.sum()
    width = max(cfg.title_length[1], cfg.abstract_length[1])
    topic_words = w.topic_word0[w.topic][:, None] + rng.choice(cfg.words_per_topic, size=(N, 2 * width), p=zipf)
    common = w.common0 + rng.integers(0, cfg.num_common_words, size=(N, 2 * width))
    is_common = rng.random((N, 2 * width)) < 0.35
    words = np.where(is_common, common, topic_words)
    aspect_pos = rng.integers(1, np.maximum(lt, 2))
    if w.cue is not None:  # own random stream: a world without cue words keeps its bytes
        cue_pos = aspect_pos + 1 + np.random.default_rng([cfg.seed, 10]).integers(0, np.maximum(lt - 1, 1))
    cats = [
        CATEGORY_NAMES[c % len(CATEGORY_NAMES)] + ("" if c < len(CATEGORY_NAMES) else str(c))
        for c in range(cfg.num_categories)
    ]
    lines = []
    for n in rows:
        ents = [e for e in w.entities[n] if e >= 0]
        if w.inherited[n] >= 0 and w.inherited[n] not in ents:
            ents = [int(w.inherited[n])] + ents
        hidden = w.vague[n] or (w.noisy is not None and w.noisy[n])
        if hidden:  # only common words (and the aspect word): the topic does not show
            ents = []
            words[n] = common[n]
        if w.hub is not None and w.hub[n] >= 0:  # the hub entity: first or second in the title
            ents.insert(min(int(w.hub_slot[n]), len(ents)), w.num_topic_entities + int(w.hub[n]))
        title_words = [w.words[x] for x in words[n, : lt[n]]]
        title_words[aspect_pos[n] % len(title_words)] = w.words[w.aspect0 + w.aspect[n]]
        if w.cue is not None:  # anywhere but on the aspect word
            title_words[cue_pos[n] % len(title_words)] = w.words[w.cue0 + w.cue[n]]
        if w.story is not None and not w.vague[n]:
            if w.noisy[n]:  # short: a common word, the aspect word (and the cue word) only
                title_words = [w.words[common[n, 0]], w.words[w.aspect0 + w.aspect[n]]]
                title_words += [w.words[w.cue0 + w.cue[n]]] if w.cue is not None else []
            title_words += [w.words[w.story0 + STORY_WORDS * w.story[n] + k] for k in range(STORY_WORDS)]
        lead = [w.entity_labels[e] for e in ents[:2]]
        title_words = lead + title_words
        title = " ".join(title_words).capitalize()
        abstract_words = [w.entity_labels[e] for e in ents] + [w.words[x] for x in words[n, width : width + la[n]]]
        abstract = " ".join(abstract_words).capitalize() + "."

        def entity_json(text: str, names: list[int]) -> str:
            items = []
            low = text.lower()
            for rank, e in enumerate(names):
                label = w.entity_labels[e]
                off = low.find(label)
                if off < 0:
                    continue
                items.append(
                    {
                        "Label": label,
                        "Type": "O",
                        "WikidataId": w.entity_names[e],
                        "Confidence": round(1.0 - 0.1 * rank, 3),
                        "OccurrenceOffsets": [off],
                        "SurfaceForms": [text[off : off + len(label)]],
                    }
                )
            return json.dumps(items, separators=(", ", ": "))

        category = cats[w.topic[n] % cfg.num_categories] if not hidden else cats[0]
        subcategory = f"{category}topic{w.topic[n]}" if not hidden else f"{category}general"
        lines.append(
            "\t".join(
                [
                    f"N{n + 1}",
                    category,
                    subcategory,
                    title,
                    abstract,
                    f"https://assets.msn.com/labs/mind/synthetic-N{n + 1}.html",
                    entity_json(title, ents[:2]),
                    entity_json(abstract, ents),
                ]
            )
        )
    with atomic_write(path, encoding="utf-8", newline="\n") as f:
        f.write("\n".join(lines) + ("\n" if lines else ""))


def topic_vectors(seed: int, tag: int, count: int, dim: int) -> np.ndarray:
    return np.random.default_rng([seed, tag]).standard_normal((count, dim))


def write_word_vectors(path: Path, w: World) -> None:
    """``word_vectors.txt`` (GloVe format): topic words and topic entities' labels near their
    topic's centre; story words and hub entities' labels hold no topic."""
    cfg = w.cfg
    rng = np.random.default_rng([cfg.seed, 3])
    centres = topic_vectors(cfg.seed, 4, cfg.num_topics, cfg.word_dim)
    aspects = topic_vectors(cfg.seed, 5, cfg.num_aspects, cfg.word_dim)
    words = w.words + w.entity_labels
    vec = rng.standard_normal((len(words), cfg.word_dim)) * 0.5
    T, K = cfg.num_topics, cfg.words_per_topic
    vec[: T * K] += np.repeat(centres, K, axis=0)
    vec[w.aspect0 : w.aspect0 + cfg.num_aspects] += aspects
    if cfg.num_cues:
        vec[w.cue0 : w.cue0 + cfg.num_cues] += topic_vectors(cfg.seed, 11, cfg.num_cues, cfg.word_dim)
    if w.story is not None:  # a story's words lie near the story's own centre (of no topic)
        stories = (len(w.words) - w.story0) // STORY_WORDS
        centre = topic_vectors(cfg.seed, 14, stories, cfg.word_dim)
        vec[w.story0 : len(w.words)] += np.repeat(centre, STORY_WORDS, axis=0)
    ent_topic = np.arange(w.num_topic_entities) // cfg.entities_per_topic  # hub entities: no topic
    vec[len(w.words) : len(w.words) + w.num_topic_entities] += centres[ent_topic]
    vec *= 0.3
    with atomic_write(path, encoding="utf-8", newline="\n") as f:
        for word, v in zip(words, vec):
            f.write(word + " " + " ".join(f"{x:.5f}" for x in v) + "\n")


def write_entity_vectors(path: Path, w: World) -> None:
    """``entity_embedding.vec`` (MIND's TransE format): entities near their topic's centre (hub
    entities: no topic)."""
    cfg = w.cfg
    rng = np.random.default_rng([cfg.seed, 6])
    centres = topic_vectors(cfg.seed, 7, cfg.num_topics, cfg.entity_dim)
    ent_topic = np.arange(w.num_topic_entities) // cfg.entities_per_topic
    vec = rng.standard_normal((w.num_entities, cfg.entity_dim)) * 0.5
    vec[: w.num_topic_entities] += centres[ent_topic]  # hub entities (after them): no topic
    vec *= 0.1
    with atomic_write(path, encoding="utf-8", newline="\n") as f:
        for name, v in zip(w.entity_names, vec):
            f.write(name + "\t" + "\t".join(f"{x:.6f}" for x in v) + "\t\n")
