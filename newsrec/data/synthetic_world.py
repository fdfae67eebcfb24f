"""The latent world of the synthetic generator (:mod:`newsrec.data.synthetic`): topics, news,
users and the click model (the files that describe the world's news and vectors:
:mod:`newsrec.data.synthetic_text`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["STORY_WORDS", "SyntheticConfig", "World", "sigmoid"]


@dataclass
class SyntheticConfig:
    """Knobs of the synthetic world (see the module docstring)."""

    num_users: int = 2000
    num_news: int = 2000
    seed: int = 0
    num_topics: int = 16
    num_categories: int = 6
    words_per_topic: int = 60
    num_common_words: int = 150
    num_aspects: int = 12
    entities_per_topic: int = 25
    title_length: tuple[int, int] = (8, 14)
    abstract_length: tuple[int, int] = (15, 30)
    history_length: tuple[int, int] = (5, 40)
    impressions_per_user: float = 3.0
    candidates_per_impression: tuple[int, int] = (5, 30)
    topic_strength: float = 1.0
    transition_strength: float = 3.0
    entity_strength: float = 1.0
    word_strength: float = 1.5
    num_cues: int = 0
    cue_strength: float = 3.0
    popularity_strength: float = 0.3
    popularity_sigma: float = 1.0
    chain_follow: float = 0.35
    follow_window: int = 0
    transition_scope: str = "successor"
    vague_news_fraction: float = 0.0
    num_segments: int = 0
    segment_strength: float = 2.0
    successor_in_impression: float = 0.5
    interest_concentration: float = 0.3
    fresh_news_fraction: float = 0.1
    dev_fraction: float = 0.2
    word_dim: int = 50
    entity_dim: int = 100
    target_ctr: float = 0.12
    hub_strength: float = 0.0
    """User-as-Graph's signal (0 = off): every news also mentions one of ``num_hubs`` hub
    entities, drawn independently of its topic, and every user has a hub of their own; a news
    that mentions it gets ``+hub_strength`` on the click logit (history walk and impressions).
    The hub recurs across a user's clicks of varied topics, each of which mentions other
    entities too: it shows in how the clicks connect through a shared entity, not in any one."""
    num_hubs: int = 20
    """Hub entities (with ``hub_strength`` > 0; at least 2)."""
    story_noise_fraction: float = 0.0
    """DIGAT's signal (0 = off): news of one topic are grouped into stories of ``story_size``
    that share four story words in their titles; every news but a story's first gets, with this
    probability, a short noisy text (a common word, its aspect word, the story words; an
    abstract of common words; no topic words, no topic entity, a generic category) while its
    story siblings keep their topic."""
    story_size: int = 4
    """News per story (with ``story_noise_fraction`` > 0; at least 2)."""

    def __post_init__(self) -> None:
        self.title_length = tuple(self.title_length)
        self.abstract_length = tuple(self.abstract_length)
        self.history_length = tuple(self.history_length)
        self.candidates_per_impression = tuple(self.candidates_per_impression)
        if self.num_users < 1 or self.num_news < 4:
            raise ValueError("need at least 1 user and 4 news")
        if self.num_topics < 2:
            raise ValueError("need at least 2 topics (story chains cross topics)")
        if not 0 < self.dev_fraction < 1:
            raise ValueError("dev_fraction must be in (0, 1)")
        for name in (
            "topic_strength",
            "transition_strength",
            "entity_strength",
            "word_strength",
            "popularity_strength",
            "popularity_sigma",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be non-negative")
        if not 0 <= self.vague_news_fraction <= 1:
            raise ValueError("vague_news_fraction must be in [0, 1]")
        if self.transition_scope not in ("successor", "neighbors", "topics"):
            raise ValueError("transition_scope must be 'successor', 'neighbors' or 'topics'")
        if self.candidates_per_impression[0] < 2:
            raise ValueError("impressions need at least 2 candidates")
        if self.num_cues and not (self.num_cues >= 2 and self.num_aspects >= 2):
            raise ValueError("cue words need num_cues >= 2 and num_aspects >= 2 (or num_cues=0: off)")
        if self.cue_strength < 0:
            raise ValueError("cue_strength must be non-negative")
        if not (self.hub_strength >= 0 and self.num_hubs >= 2):
            raise ValueError(
                f"hub_strength must be >= 0 (0: off) and num_hubs >= 2, got {self.hub_strength} and {self.num_hubs}"
            )
        if not (0 <= self.story_noise_fraction <= 1 and self.story_size >= 2):
            raise ValueError(
                "story_noise_fraction must be in [0, 1] (0: off) and story_size >= 2, "
                f"got {self.story_noise_fraction} and {self.story_size}"
            )


#: words of its own that every title of a story carries (``story_noise_fraction`` > 0)
STORY_WORDS = 4


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class World:
    """The latent world: topics, news, users and the click model."""

    def __init__(self, cfg: SyntheticConfig) -> None:
        self.cfg = cfg
        rng = self.rng = np.random.default_rng(cfg.seed)
        T, N = cfg.num_topics, cfg.num_news
        # vocabulary: topic words, common words, aspect words, entity label words
        self.words = (
            [f"t{t}w{k}" for t in range(T) for k in range(cfg.words_per_topic)]
            + [f"c{k}" for k in range(cfg.num_common_words)]
            + [f"aspect{k}" for k in range(cfg.num_aspects)]
            + [f"cue{k}" for k in range(cfg.num_cues)]
        )
        self.topic_word0 = np.arange(T) * cfg.words_per_topic
        self.common0 = T * cfg.words_per_topic
        self.aspect0 = self.common0 + cfg.num_common_words
        self.cue0 = self.aspect0 + cfg.num_aspects
        self.num_entities = T * cfg.entities_per_topic
        self.entity_names = [f"Q{1000 + e}" for e in range(self.num_entities)]
        self.entity_labels = [
            f"ent{e // cfg.entities_per_topic}x{e % cfg.entities_per_topic}" for e in range(self.num_entities)
        ]
        # news
        topic_weight = 1.0 / np.arange(1, T + 1) ** 0.5
        self.topic = rng.choice(T, size=N, p=topic_weight / topic_weight.sum())
        self.popularity = rng.lognormal(0.0, cfg.popularity_sigma, size=N)
        self.aspect = rng.integers(0, cfg.num_aspects, size=N)
        self.fresh = np.zeros(N, dtype=bool)
        n_fresh = int(round(cfg.fresh_news_fraction * N))
        if n_fresh:
            self.fresh[rng.choice(N, size=n_fresh, replace=False)] = True
        # story chain successor: a news of another topic
        shift = rng.integers(1, T, size=N)
        succ_topic = (self.topic + shift) % T
        by_topic = [np.flatnonzero(self.topic == t) for t in range(T)]
        self.succ = np.empty(N, dtype=np.int64)
        for t in range(T):  # loop over topics (few), vectorised over news
            idx = np.flatnonzero(succ_topic == t)
            pool = by_topic[t] if len(by_topic[t]) else np.arange(N)
            self.succ[idx] = pool[rng.integers(0, len(pool), size=len(idx))]
        self.succ[self.succ == np.arange(N)] = (self.succ[self.succ == np.arange(N)] + 1) % N
        # entities: 1-3 of the topic's, the lead first; a chain successor mentions the lead
        # entity of its predecessor with probability entity_strength (capped at 1)
        n_ent = rng.integers(1, 4, size=N)
        ent = self.topic[:, None] * cfg.entities_per_topic + rng.integers(0, cfg.entities_per_topic, size=(N, 3))
        ent = np.where(np.arange(3)[None, :] < n_ent[:, None], ent, -1)
        inherit = rng.random(N) < min(cfg.entity_strength, 1.0)
        pred = np.full(N, -1)
        pred[self.succ] = np.arange(N)  # one predecessor per news (the last writer wins)
        self.pred = pred
        has_pred = (pred >= 0) & inherit
        self.inherited = np.where(has_pred, ent[np.maximum(pred, 0), 0], -1)
        self.entities = ent
        # vague news: text without topic words or entities, clicked in histories but never shown
        # as candidates (own random stream: a fraction of 0 leaves the world as it was)
        self.vague = np.random.default_rng([cfg.seed, 7]).random(N) < cfg.vague_news_fraction
        # users
        U = cfg.num_users
        self.theta = rng.dirichlet(np.full(T, cfg.interest_concentration), size=U)
        self.user_aspect = rng.integers(0, cfg.num_aspects, size=U)
        # cue words (own random stream: 0 cues leaves the world as it was): every title carries
        # one; a user's two cue words show in their history, in different news, and their aspect
        # is the sum of the two cues' values modulo num_aspects (values spread evenly over the
        # aspects), so neither cue alone says anything about it
        self.cue = self.user_cues = self.cue_value = None
        if cfg.num_cues > 0:
            crng = np.random.default_rng([cfg.seed, 9])
            self.cue = crng.integers(0, cfg.num_cues, size=N)
            first = crng.integers(0, cfg.num_cues, size=U)
            second = (first + crng.integers(1, cfg.num_cues, size=U)) % cfg.num_cues
            self.user_cues = np.stack([first, second], axis=1)
            self.cue_value = crng.permutation(np.arange(cfg.num_cues) % cfg.num_aspects)
            self.user_aspect = self.cue_value[self.user_cues].sum(axis=1) % cfg.num_aspects
        # reader segments (own random stream: 0 segments leaves the world as it was)
        self.user_segment = self.news_segment = None
        if cfg.num_segments > 0:
            srng = np.random.default_rng([cfg.seed, 8])
            mix = srng.dirichlet(np.full(T, cfg.interest_concentration), size=cfg.num_segments)
            self.user_segment = srng.integers(0, cfg.num_segments, size=U)
            self.theta = 0.8 * mix[self.user_segment] + 0.2 * self.theta
            self.news_segment = srng.integers(0, cfg.num_segments, size=N)
        self.num_topic_entities = self.num_entities
        self.hub = self.user_hub = self.hub_slot = None
        if cfg.hub_strength > 0:
            self._plant_hubs()
        self.story = self.noisy = None
        if cfg.story_noise_fraction > 0:
            self._plant_stories()
        self.pop_cdf = np.cumsum(self.popularity) / self.popularity.sum()
        self.bias = 0.0

    def _plant_hubs(self) -> None:
        """User-as-Graph's world (own random stream: ``hub_strength=0`` leaves the world as it
        was). ``num_hubs`` entities of no topic (their vectors hold no topic centre) are added
        after the topic entities; every news mentions one, drawn uniformly whatever its topic,
        in its title's first or second entity slot (``hub_slot``), and every user has one,
        drawn independently of their topic mix. Vague news mention none (``hub = -1``).

        Why this design: the preferred hub makes it recur across the user's history, but every
        click also mentions its topic entities and lands in a topic of the user's mix, so the
        interest is the entity *shared* by many clicks of different topics: a hub node of high
        degree in the user's personal graph of clicks, topics and entities. One click says
        little (its hub is the user's in a minority of clicks, its topic says nothing about the
        hub); the recurring mention across clicks says it."""
        cfg, N, U = self.cfg, self.cfg.num_news, self.cfg.num_users
        hrng = np.random.default_rng([cfg.seed, 12])
        self.hub = np.where(self.vague, -1, hrng.integers(0, cfg.num_hubs, size=N))
        self.hub_slot = hrng.integers(0, 2, size=N)
        self.user_hub = hrng.integers(0, cfg.num_hubs, size=U)
        first = self.num_topic_entities
        self.entity_names = self.entity_names + [f"Q{1000 + first + k}" for k in range(cfg.num_hubs)]
        self.entity_labels = self.entity_labels + [f"hub{k}x" for k in range(cfg.num_hubs)]
        self.num_entities = first + cfg.num_hubs

    def _plant_stories(self) -> None:
        """DIGAT's world (own random stream: ``story_noise_fraction=0`` leaves the world as it
        was). The news of each topic, in a random order, are cut into stories of ``story_size``
        (``story [N]``; the last of a topic may be smaller); every story has ``STORY_WORDS``
        words of its own (``story{s}w{k}``, vectors near a centre of the story's own, of no
        topic) that every title of the story carries. Every news but a story's first (which
        keeps its text, so that each story has a sibling that shows the topic) is ``noisy`` with
        probability ``story_noise_fraction``: its title is short (a common word, the aspect
        word, the cue word if any, the story words) and its abstract common words, with no topic
        words, no topic entity and a generic category. Clicks still follow the news' true topic,
        and noisy news are candidates like any other, so their topic is told only by the news
        that share their story words: semantic neighbours by title similarity (with four story
        words near one centre, about 93 % of the noisy news of a 1200-news world have a sibling
        that shows the topic among their 5 nearest news by IDF-weighted mean word vectors; with
        three words of unrelated vectors, 4 %: the clean sibling's topic words outweighed the
        story). Vague news stay vague (no story words, never noisy; a story whose first news is
        vague may have no sibling that shows its topic)."""
        cfg, N, T = self.cfg, self.cfg.num_news, self.cfg.num_topics
        srng = np.random.default_rng([cfg.seed, 13])
        order = np.lexsort((srng.random(N), self.topic))  # grouped by topic, shuffled within
        sorted_topic = self.topic[order]
        rank = np.arange(N) - np.searchsorted(sorted_topic, sorted_topic)  # rank within the topic
        per_topic = -(-np.bincount(self.topic, minlength=T) // cfg.story_size)  # stories per topic
        first_story = np.concatenate([[0], np.cumsum(per_topic)[:-1]])
        self.story = np.empty(N, dtype=np.int64)
        self.story[order] = first_story[sorted_topic] + rank // cfg.story_size
        not_first = np.empty(N, dtype=bool)
        not_first[order] = rank % cfg.story_size > 0
        self.noisy = not_first & (srng.random(N) < cfg.story_noise_fraction) & ~self.vague
        self.story0 = len(self.words)
        self.words = self.words + [f"story{s}w{k}" for s in range(int(per_topic.sum())) for k in range(STORY_WORDS)]

    def follows(self, users: np.ndarray, news: np.ndarray, clicks: np.ndarray, nclicks: np.ndarray) -> np.ndarray:
        """bool ``[A, C]``: is ``news[a, c]`` the chain successor of one of user ``a``'s clicks
        (the last ``follow_window`` clicks, or all of them when it is 0)? With
        ``transition_scope="neighbors"`` the predecessor counts too; with ``"topics"``, any news
        of the topic of such a successor or predecessor."""
        N = self.cfg.num_news
        rows = clicks[users]
        n = nclicks[users][:, None]
        pos = np.arange(rows.shape[1])[None, :]
        valid = pos < n
        if self.cfg.follow_window > 0:
            valid &= pos >= n - self.cfg.follow_window
        owner = np.arange(len(users))[:, None]
        keys = np.where(valid, owner * N + self.succ[rows], -1)
        if self.cfg.transition_scope in ("neighbors", "topics"):
            pred = self.pred[rows]
            keys = np.concatenate([keys, np.where(valid & (pred >= 0), owner * N + pred, -1)], axis=1)
        if self.cfg.transition_scope == "topics":  # keys name (user, topic of a neighbour)
            keys = np.where(keys >= 0, (keys // N) * N + self.topic[keys % N], -1)
            news = self.topic[news]
        keys = np.unique(keys)
        keys = keys[keys >= 0]
        if not len(keys):
            return np.zeros(news.shape, dtype=bool)
        q = owner * N + news
        return keys[np.minimum(np.searchsorted(keys, q), len(keys) - 1)] == q

    def logits(
        self,
        users: np.ndarray,
        news: np.ndarray,
        follow: np.ndarray | None,
        with_bias: bool = True,
        history: bool = False,
    ) -> np.ndarray:
        """Click logits ``[A, C]`` of ``news[a, c]`` for ``users[a]``. In the pre-period
        ``history`` walk of a world with cue words, the aspect term is replaced by the cue term
        (``cue_strength`` for a news that carries one of the user's two cue words)."""
        cfg = self.cfg
        topic_part = np.log(self.theta[users[:, None], self.topic[news]] + 0.01)
        if follow is None:
            follow = np.zeros(news.shape, dtype=bool)
        if history and self.cue is not None:
            cues = self.user_cues[users]
            word_part = cfg.cue_strength * ((self.cue[news] == cues[:, :1]) | (self.cue[news] == cues[:, 1:]))
        else:
            word_part = cfg.word_strength * (self.aspect[news] == self.user_aspect[users][:, None])
        out = (
            cfg.topic_strength * topic_part
            + cfg.transition_strength * follow
            + word_part
            + cfg.popularity_strength * np.log(self.popularity[news])
        )
        if self.news_segment is not None:
            out = out + cfg.segment_strength * (self.news_segment[news] == self.user_segment[users][:, None])
        if self.hub is not None:
            out = out + cfg.hub_strength * (self.hub[news] == self.user_hub[users][:, None])
        return out + (self.bias if with_bias else 0.0)

    def sample_news(self, shape: tuple[int, ...], allow_fresh: bool, candidates: bool = False) -> np.ndarray:
        """Popularity-weighted news; fresh news only when allowed, vague news never as
        impression ``candidates``."""
        out = np.searchsorted(self.pop_cdf, self.rng.random(shape) * self.pop_cdf[-1])
        out = np.minimum(out, self.cfg.num_news - 1)
        excluded = (self.fresh if not allow_fresh else np.zeros_like(self.fresh)) | (self.vague & candidates)
        if excluded.any():
            for _ in range(20):
                bad = excluded[out]
                if not bad.any():
                    break
                out[bad] = np.minimum(
                    np.searchsorted(self.pop_cdf, self.rng.random(bad.sum()) * self.pop_cdf[-1]), self.cfg.num_news - 1
                )
            out = np.where(excluded[out], np.flatnonzero(~excluded)[0], out)
        return out
