"""A synthetic MIND world with planted structure and a known oracle.

The generator writes a MIND-format directory (``train/`` and ``dev/``, each with ``news.tsv``,
``behaviors.tsv`` and ``entity_embedding.vec``, plus ``word_vectors.txt`` in GloVe format) in
which each model family has something real to find:

* **topics** with their own words and entities; each topic belongs to a category and is its own
  subcategory. Users have a sparse mixture of topic interests (the content signal NRMS learns).
* **story chains**: every news ``i`` has a successor ``succ[i]`` of another topic. Histories
  follow the chain from the last click (``chain_follow``), so the global click graph shows the
  transitions; in impressions, the successor of any clicked news (of the last
  ``follow_window`` clicks; 0 = all) is clicked more often, but its content does not reveal it
  (the GLORY signal). With ``transition_scope="neighbors"`` a clicked news' chain predecessor
  is favoured too (a reader of one part of a story likes the others). With
  ``transition_scope="topics"`` every news of the successor's or the predecessor's *topic* is
  favoured: the story leads its readers on to another topic, which differs from news to news
  (so a click's text does not tell it) and shows in the click graph as the topic of the
  click's neighbours.
* **entity links**: a chain successor mentions its predecessor's lead entity, so entities of
  consecutive clicks co-occur (the global entity graph signal).
* **aspect words**: every news title carries one of a few aspect words, and each user prefers
  one aspect: a word-level interest that only shows across the clicked news' words (FUM's
  fine-grained signal).
* **cue words** (``num_cues`` ≥ 2; 0 = off): every title also carries one of ``num_cues`` cue
  words, and each user has two of them; the user's histories favour news with either cue
  (``cue_strength`` on the logit of the pre-period history walk, in place of the aspect term),
  and the user's aspect is no longer drawn but *implied by the pair*: the two cues' values
  (spread evenly over the aspects) summed modulo ``num_aspects``. Every cue is paired with every
  aspect, so no clicked news tells anything about the aspect on its own: it shows only in
  words of *different* clicked news read together — the relation across clicked news that FUM's
  fine-grained user model is built to see (its paper's "Iron Man" + "Netflix movies" →
  interest in Marvel films).
* **vague news** (``vague_news_fraction``): news whose title and abstract hold only common
  words, with no entities and a generic category, clicked in histories but never shown as
  impression candidates (think of old click-bait): their topic shows only through who clicked
  them, i.e. through their neighbours in the global click graph — what GLORY's graph adds to a
  content-only user model. With ``chain_follow=0`` users' consecutive clicks share topics.
* **reader segments** (``num_segments``, ``segment_strength``): users belong to segments
  that share a topic mix, and every news appeals to one segment (``+segment_strength`` to the
  logit of its readers). The appeal does not show in the text; it shows in who clicks a news,
  so a news' neighbours in the global click graph are news that its segment reads — which
  tells a model with a short history the rest of the user's topic mix.
* **popularity**: a news-level prior, log-normal with ``popularity_sigma`` (larger = clicks
  concentrate on fewer news, as on MIND; also makes users' graph neighbourhoods overlap).

Every click in an impression is drawn with probability ``sigmoid(logit)`` where::

    logit = topic_strength      * log(θ_u[topic(n)] + 0.01)
          + transition_strength * [n == succ[c] (or n == pred[c]; or topic(n) == topic of
                                    either, per transition_scope) for a click c of the history]
          + word_strength       * [aspect(n) == aspect(u)]     (in a world with cue words, the
                                    pre-period history walk has cue_strength * [cue(n) ∈ cues(u)]
                                    here instead)
          + popularity_strength * log popularity(n)
          + segment_strength    * [segment(n) == segment(u)]      (with num_segments > 0)
          + bias

The probabilities are written beside ``behaviors.tsv`` as ``oracle.tsv``
(``impression_id<TAB>p1 p2 …``, candidates in file order), and the oracle's AUC is recorded in
``world.json``. A strength set to 0 removes that signal entirely (for ``transition_strength``,
users then never follow chains in histories either). Same arguments and seed → same bytes.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from newsrec.core.cache import ArrayCache
from newsrec.core.files import atomic_write
from newsrec.utils import progress

__all__ = ["SyntheticConfig", "generate_mind", "oracle_auc"]

_CATEGORY_NAMES = [
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
_EPOCH_START = 1573776000  # 2019-11-15 00:00:00 UTC, MIND's first day


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


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def oracle_auc(labels: list[np.ndarray], probs: list[np.ndarray]) -> float:
    """Mean per-impression AUC of the oracle probabilities (impressions with both classes)."""
    aucs = []
    for y, p in zip(labels, probs):
        pos, neg = p[y == 1], p[y == 0]
        if len(pos) and len(neg):
            gt = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
            aucs.append(gt / (len(pos) * len(neg)))
    return float(np.mean(aucs)) if aucs else float("nan")


class _World:
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
        self.pop_cdf = np.cumsum(self.popularity) / self.popularity.sum()
        self.bias = 0.0

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


def _write_news(path: Path, w: _World, rows: np.ndarray) -> None:
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
        _CATEGORY_NAMES[c % len(_CATEGORY_NAMES)] + ("" if c < len(_CATEGORY_NAMES) else str(c))
        for c in range(cfg.num_categories)
    ]
    lines = []
    for n in rows:
        ents = [e for e in w.entities[n] if e >= 0]
        if w.inherited[n] >= 0 and w.inherited[n] not in ents:
            ents = [int(w.inherited[n])] + ents
        if w.vague[n]:  # only common words (and the aspect word): the topic does not show
            ents = []
            words[n] = common[n]
        title_words = [w.words[x] for x in words[n, : lt[n]]]
        title_words[aspect_pos[n] % len(title_words)] = w.words[w.aspect0 + w.aspect[n]]
        if w.cue is not None:  # anywhere but on the aspect word
            title_words[cue_pos[n] % len(title_words)] = w.words[w.cue0 + w.cue[n]]
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

        category = cats[w.topic[n] % cfg.num_categories] if not w.vague[n] else cats[0]
        subcategory = f"{category}topic{w.topic[n]}" if not w.vague[n] else f"{category}general"
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


def _format_time(ts: np.ndarray) -> list[str]:
    import datetime as dt

    out = []
    for t in ts.tolist():
        d = dt.datetime.fromtimestamp(int(t), tz=dt.timezone.utc)
        hour = d.hour % 12 or 12
        out.append(f"{d.month}/{d.day}/{d.year} {hour}:{d.minute:02d}:{d.second:02d} {'AM' if d.hour < 12 else 'PM'}")
    return out


def generate_mind(
    out_dir: str | os.PathLike,
    *,
    num_users: int = 2000,
    num_news: int = 2000,
    seed: int = 0,
    show_progress: bool = False,
    **knobs,
) -> Path:
    """Write a synthetic MIND-format world to ``out_dir`` and return its path.

    Args:
        out_dir: the root to write (``train/``, ``dev/``, ``word_vectors.txt``, ``world.json``).
        num_users, num_news, seed: size and seed; the same arguments give the same bytes.
        **knobs: any other field of :class:`SyntheticConfig` (signal strengths, sizes).

    A MIND-small-sized world (50k users, 50k news, ~150k impressions) takes well under a minute.
    """
    cfg = SyntheticConfig(num_users=num_users, num_news=num_news, seed=seed, **knobs)
    out = Path(out_dir)
    w = _World(cfg)
    rng = np.random.default_rng([cfg.seed, 2])
    U, N = cfg.num_users, cfg.num_news
    bar = progress(total=4, desc="synthetic MIND", disable=not show_progress)

    # -- pre-period click histories: a Markov walk per user, vectorised over users ------------
    hmin, hmax = cfg.history_length
    hist_len = rng.integers(hmin, hmax + 1, size=U)
    imp_count = 1 + rng.poisson(max(cfg.impressions_per_user - 1, 0), size=U)
    max_rounds = int(imp_count.max())
    cmin, cmax = cfg.candidates_per_impression
    width = hmax + max_rounds * cmax
    clicks = np.zeros((U, width), dtype=np.int64)
    nclicks = np.zeros(U, dtype=np.int64)
    last = np.full(U, -1, dtype=np.int64)
    follow_p = cfg.chain_follow if cfg.transition_strength > 0 else 0.0
    pool_size = 20
    for step in range(hmax):
        act = np.flatnonzero(hist_len > step)
        if not len(act):
            break
        pool = w.sample_news((len(act), pool_size), allow_fresh=False)
        lg = w.logits(act, pool, None, history=True)
        g = lg + rng.gumbel(size=lg.shape)
        choice = pool[np.arange(len(act)), g.argmax(1)]
        follow = (last[act] >= 0) & (rng.random(len(act)) < follow_p)
        succ = w.succ[np.maximum(last[act], 0)]
        follow &= ~w.fresh[succ]
        choice = np.where(follow, succ, choice)
        clicks[act, nclicks[act]] = choice
        nclicks[act] += 1
        last[act] = choice
    bar.update()

    # -- calibrate the bias so that about target_ctr of candidates are clicked ----------------
    probe_u = rng.integers(0, U, size=min(U, 2000))
    probe_n = w.sample_news((len(probe_u), cmax), allow_fresh=True)
    base = w.logits(probe_u, probe_n, w.follows(probe_u, probe_n, clicks, nclicks), with_bias=False)
    lo, hi = -30.0, 30.0
    for _ in range(50):
        mid = (lo + hi) / 2
        if _sigmoid(base + mid).mean() > cfg.target_ctr:
            hi = mid
        else:
            lo = mid
    w.bias = (lo + hi) / 2

    # -- impressions, round by round (vectorised over users) ----------------------------------
    period = 7 * 86400
    split_time = _EPOCH_START + int(round((1 - cfg.dev_fraction) * period))
    times = rng.integers(0, period, size=(U, max_rounds)).astype(np.float64)
    times[np.arange(max_rounds)[None, :] >= imp_count[:, None]] = np.inf
    times = np.sort(times, axis=1)
    times = np.where(np.isfinite(times), times, 0).astype(np.int64) + _EPOCH_START
    records = []  # per round: users, times, history lengths, candidates, labels, probs, mask
    for r in range(max_rounds):
        act = np.flatnonzero(imp_count > r)
        t = times[act, r]
        is_dev = t >= split_time
        ncand = rng.integers(cmin, cmax + 1, size=len(act))
        cand = np.where(
            is_dev[:, None],
            w.sample_news((len(act), cmax), allow_fresh=True, candidates=True),
            w.sample_news((len(act), cmax), allow_fresh=False, candidates=True),
        )
        # the chain successor of one of the user's clicks (within the follow window) is shown in
        # about half of the impressions
        n_act = nclicks[act]
        window = np.minimum(n_act, cfg.follow_window) if cfg.follow_window > 0 else n_act
        pick = n_act - 1 - (rng.random(len(act)) * np.maximum(window, 1)).astype(np.int64)
        succ = w.succ[clicks[act, np.maximum(pick, 0)]]
        if cfg.transition_scope in ("neighbors", "topics"):  # or its predecessor, when it has one
            pred = w.pred[clicks[act, np.maximum(pick, 0)]]
            succ = np.where((pred >= 0) & (rng.random(len(act)) < 0.5), pred, succ)
        show = (n_act > 0) & (rng.random(len(act)) < cfg.successor_in_impression) & (is_dev | ~w.fresh[succ])
        show &= ~w.vague[succ]
        slot = rng.integers(0, ncand)
        cand[show, slot[show]] = succ[show]
        mask = np.arange(cmax)[None, :] < ncand[:, None]
        # no news twice in one impression: replace repeats by the slot's own redraw
        srt = np.sort(np.where(mask, cand, -1 - np.arange(cmax)[None, :]), axis=1)
        dup_rows = (srt[:, 1:] == srt[:, :-1]).any(axis=1)
        for _ in range(10):
            if not dup_rows.any():
                break
            rows = np.flatnonzero(dup_rows)
            sub = cand[rows]
            order = np.argsort(sub, axis=1, kind="stable")
            ss = np.take_along_axis(sub, order, 1)
            rep = np.zeros_like(ss, dtype=bool)
            rep[:, 1:] = ss[:, 1:] == ss[:, :-1]
            redraw = np.zeros_like(rep)
            np.put_along_axis(redraw, order, rep, 1)
            fresh_ok = is_dev[rows]
            new = np.where(
                fresh_ok[:, None], w.sample_news(sub.shape, True, True), w.sample_news(sub.shape, False, True)
            )
            sub = np.where(redraw, new, sub)
            cand[rows] = sub
            srt = np.sort(np.where(mask, cand, -1 - np.arange(cmax)[None, :]), axis=1)
            dup_rows = (srt[:, 1:] == srt[:, :-1]).any(axis=1)
        prob = _sigmoid(w.logits(act, cand, w.follows(act, cand, clicks, nclicks)))
        lab = (rng.random(prob.shape) < prob) & mask
        none = ~lab.any(axis=1)
        if none.any():  # every impression has a click: draw one in proportion to the probabilities
            p = np.where(mask[none], prob[none], 0.0)
            g = np.log(p + 1e-12) + rng.gumbel(size=p.shape)
            lab[np.flatnonzero(none), g.argmax(1)] = True
        records.append((act, t, nclicks[act].copy(), cand, lab, prob, mask))
        # append this impression's clicks (file order) to the users' click sequences
        k = lab.sum(1)
        order = np.argsort(~lab, axis=1, kind="stable")
        clicked = np.take_along_axis(cand, order, 1)
        for j in range(int(k.max()) if len(k) else 0):
            has = k > j
            u = act[has]
            clicks[u, nclicks[u]] = clicked[has, j]
            nclicks[u] += 1
            last[u] = clicked[has, j]
    bar.update()

    # -- write the files ----------------------------------------------------------------------
    names = np.array([f"N{n + 1}" for n in range(N)], dtype=object)
    world = {"config": asdict(cfg), "bias": w.bias, "split_time": split_time}
    for split in ("train", "dev"):
        d = out / split
        d.mkdir(parents=True, exist_ok=True)
        rows, oracle_rows, all_lab, all_prob = [], [], [], []
        imp_id = 0
        order = []
        for r, (act, t, *_rest) in enumerate(records):
            sel = np.flatnonzero((t >= split_time) == (split == "dev"))
            order += [(int(t[i]), int(act[i]), r, int(i)) for i in sel]
        order.sort()
        time_str = _format_time(np.array([o[0] for o in order], dtype=np.int64))
        for (_, u, r, i), ts in zip(order, time_str):
            act, t, hl, cand, lab, prob, mask = records[r]
            imp_id += 1
            m = mask[i]
            history = " ".join(names[clicks[u, : hl[i]]])
            imps = " ".join(f"{names[c]}-{int(y)}" for c, y in zip(cand[i][m], lab[i][m]))
            rows.append(f"{imp_id}\tU{u + 1}\t{ts}\t{history}\t{imps}")
            p = prob[i][m]
            oracle_rows.append(f"{imp_id}\t" + " ".join(f"{x:.6f}" for x in p))
            all_lab.append(lab[i][m].astype(np.int64))
            all_prob.append(p)
        with atomic_write(d / "behaviors.tsv", encoding="utf-8", newline="\n") as f:
            f.write("\n".join(rows) + ("\n" if rows else ""))
        with atomic_write(d / "oracle.tsv", encoding="utf-8", newline="\n") as f:
            f.write("\n".join(oracle_rows) + ("\n" if oracle_rows else ""))
        world[f"{split}_impressions"] = len(rows)
        world[f"{split}_oracle_auc"] = oracle_auc(all_lab, all_prob)
        news_rows = np.flatnonzero(~w.fresh) if split == "train" else np.arange(N)
        _write_news(d / "news.tsv", w, news_rows)
        _write_entity_vectors(d / "entity_embedding.vec", w)
    bar.update()
    _write_word_vectors(out / "word_vectors.txt", w)
    with atomic_write(out / "world.json", encoding="utf-8") as f:
        json.dump(world, f, indent=1, sort_keys=True)
    bar.update()
    bar.close()
    return out


def _topic_vectors(seed: int, tag: int, count: int, dim: int) -> np.ndarray:
    return np.random.default_rng([seed, tag]).standard_normal((count, dim))


def _write_word_vectors(path: Path, w: _World) -> None:
    cfg = w.cfg
    rng = np.random.default_rng([cfg.seed, 3])
    centres = _topic_vectors(cfg.seed, 4, cfg.num_topics, cfg.word_dim)
    aspects = _topic_vectors(cfg.seed, 5, cfg.num_aspects, cfg.word_dim)
    words = w.words + w.entity_labels
    vec = rng.standard_normal((len(words), cfg.word_dim)) * 0.5
    T, K = cfg.num_topics, cfg.words_per_topic
    vec[: T * K] += np.repeat(centres, K, axis=0)
    vec[w.aspect0 : w.aspect0 + cfg.num_aspects] += aspects
    if cfg.num_cues:
        vec[w.cue0 : w.cue0 + cfg.num_cues] += _topic_vectors(cfg.seed, 11, cfg.num_cues, cfg.word_dim)
    ent_topic = np.arange(w.num_entities) // cfg.entities_per_topic
    vec[len(w.words) :] += centres[ent_topic]
    vec *= 0.3
    with atomic_write(path, encoding="utf-8", newline="\n") as f:
        for word, v in zip(words, vec):
            f.write(word + " " + " ".join(f"{x:.5f}" for x in v) + "\n")


def _write_entity_vectors(path: Path, w: _World) -> None:
    cfg = w.cfg
    rng = np.random.default_rng([cfg.seed, 6])
    centres = _topic_vectors(cfg.seed, 7, cfg.num_topics, cfg.entity_dim)
    ent_topic = np.arange(w.num_entities) // cfg.entities_per_topic
    vec = (centres[ent_topic] + rng.standard_normal((w.num_entities, cfg.entity_dim)) * 0.5) * 0.1
    with atomic_write(path, encoding="utf-8", newline="\n") as f:
        for name, v in zip(w.entity_names, vec):
            f.write(name + "\t" + "\t".join(f"{x:.6f}" for x in v) + "\t\n")


def ensure_synthetic_root(root: str | os.PathLike, config: dict) -> None:
    """Generate the synthetic world ``config`` (:func:`generate_mind` arguments) at ``root``
    unless it holds one already (under a lock: of several processes only one generates it). A
    world that differs from ``config`` is used as it is, with a warning naming the differences
    (an older demo's settings, say); it is never regenerated over."""
    root = Path(root)
    if not (root / "train" / "behaviors.tsv").exists():
        with ArrayCache(root.parent).lock(root.name + ".synth"):
            if not (root / "train" / "behaviors.tsv").exists():
                generate_mind(root, **config)
        return
    try:
        built = json.loads((root / "world.json").read_text())["config"]
    except (OSError, ValueError, KeyError, TypeError):
        return  # not a synthetic world newsrec wrote (real MIND): nothing to compare
    differ = {k: (built.get(k), v) for k, v in config.items() if k in built and built[k] != v}
    if differ:
        said = ", ".join(f"{k}={old} (asked {new})" for k, (old, new) in sorted(differ.items()))
        warnings.warn(
            f"{root} holds a synthetic world with {said}: using it as it is. Delete the folder "
            "(or give another data.root) to generate the world asked for.",
            UserWarning,
            stacklevel=3,
        )
