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
* **hub entities** (``hub_strength`` > 0; 0 = off; ``num_hubs``): User-as-Graph's signal.
  Every news also mentions one of a few hub entities, drawn whatever its topic (their vectors
  hold no topic), and every user has a hub of their own that adds ``hub_strength`` to the logit
  of every news mentioning it, in the history walk and in impressions. The hub recurs across
  the user's clicks of varied topics, each of which mentions topic entities too: the interest
  is carried by how the clicks connect through one shared entity (a node of high degree in the
  user's personal graph of clicks, topics and entities), not by any single click.
* **stories with noisy titles** (``story_noise_fraction`` > 0; 0 = off; ``story_size``):
  DIGAT's signal. The news of a topic are grouped into stories that share four story words
  (vectors near a centre of the story's own, of no topic) in their titles; every news but a story's first is, with this
  probability, noisy: a short title of a common word, its aspect word and the story words, an
  abstract of common words, no topic entity, a generic category. Clicks still follow its true
  topic and it is a candidate like any news (in dev too), so its topic is told only by its
  story siblings: its semantic neighbours by title similarity.
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
          + hub_strength        * [n mentions hub(u)]             (with hub_strength > 0)
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
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from newsrec.core.cache import ArrayCache
from newsrec.core.files import atomic_write
from newsrec.data.mind import format_times, write_tsv_lines
from newsrec.data.synthetic_knobs import check_knob, check_knobs, knob_names
from newsrec.data.synthetic_text import write_entity_vectors, write_news, write_word_vectors
from newsrec.data.synthetic_world import SyntheticConfig, World, sigmoid
from newsrec.utils import progress

__all__ = [
    "SyntheticConfig",
    "check_knob",
    "check_knobs",
    "ensure_synthetic_root",
    "generate_mind",
    "knob_names",
    "oracle_auc",
]

_EPOCH_START = 1573776000  # 2019-11-15 00:00:00 UTC, MIND's first day


def oracle_auc(labels: list[np.ndarray], probs: list[np.ndarray]) -> float:
    """Mean per-impression AUC of the oracle probabilities (impressions with both classes)."""
    aucs = []
    for y, p in zip(labels, probs):
        pos, neg = p[y == 1], p[y == 0]
        if len(pos) and len(neg):
            gt = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
            aucs.append(gt / (len(pos) * len(neg)))
    return float(np.mean(aucs)) if aucs else float("nan")


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
        **knobs: any other field of :class:`SyntheticConfig` (signal strengths, sizes), checked
            by :func:`check_knobs`.

    A MIND-small-sized world (50k users, 50k news, ~150k impressions) takes well under a minute.
    """
    cfg = SyntheticConfig(num_users=num_users, num_news=num_news, seed=seed, **check_knobs(knobs))
    out = Path(out_dir)
    w = World(cfg)
    rng = np.random.default_rng([cfg.seed, 2])
    with progress(total=4, desc="synthetic MIND", disable=not show_progress) as bar:
        clicks, nclicks, last, imp_count = _history_walks(w, rng)
        bar.update()
        w.bias = _calibrated_bias(w, rng, clicks, nclicks)
        records, split_time = _impressions(w, rng, imp_count, clicks, nclicks, last)
        bar.update()
        world = {"config": asdict(cfg), "bias": w.bias, "split_time": split_time}
        for split in ("train", "dev"):
            world.update(_write_split(out / split, w, records, clicks, split_time))
        bar.update()
        write_word_vectors(out / "word_vectors.txt", w)
        with atomic_write(out / "world.json", encoding="utf-8") as f:
            json.dump(world, f, indent=1, sort_keys=True)
        bar.update()
    return out


def _history_walks(w: World, rng: np.random.Generator):
    """The pre-period click histories: a Markov walk per user, vectorised over users. Returns
    ``clicks [U, width]`` (room for the impressions' clicks too), ``nclicks [U]``, the last
    click ``[U]`` and each user's impression count ``[U]``."""
    cfg, U = w.cfg, w.cfg.num_users
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
    return clicks, nclicks, last, imp_count


def _calibrated_bias(w: World, rng: np.random.Generator, clicks: np.ndarray, nclicks: np.ndarray) -> float:
    """The logit bias that makes about ``target_ctr`` of the candidates clicked."""
    cfg, U = w.cfg, w.cfg.num_users
    cmax = cfg.candidates_per_impression[1]
    probe_u = rng.integers(0, U, size=min(U, 2000))
    probe_n = w.sample_news((len(probe_u), cmax), allow_fresh=True)
    base = w.logits(probe_u, probe_n, w.follows(probe_u, probe_n, clicks, nclicks), with_bias=False)
    lo, hi = -30.0, 30.0
    for _ in range(50):
        mid = (lo + hi) / 2
        if sigmoid(base + mid).mean() > cfg.target_ctr:
            hi = mid
        else:
            lo = mid
    return (lo + hi) / 2


def _impressions(w: World, rng: np.random.Generator, imp_count, clicks, nclicks, last) -> tuple[list, int]:
    """Every user's impressions, round by round (vectorised over users); each impression's
    clicks are appended to the user's click sequence. Returns the rounds' records
    ``(users, times, history lengths, candidates, labels, probabilities, mask)`` and the
    train/dev split time."""
    cfg, U = w.cfg, w.cfg.num_users
    max_rounds = int(imp_count.max())
    cmin, cmax = cfg.candidates_per_impression
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
        prob = sigmoid(w.logits(act, cand, w.follows(act, cand, clicks, nclicks)))
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
    return records, split_time


def _write_split(folder: Path, w: World, records: list, clicks: np.ndarray, split_time: int) -> dict:
    """``behaviors.tsv`` (in time order, through the MIND writer), ``oracle.tsv``, ``news.tsv``
    (train: the news published before the split) and ``entity_embedding.vec`` of one split;
    returns its ``world.json`` entries."""
    split = folder.name
    folder.mkdir(parents=True, exist_ok=True)
    act, t, hl, cand, lab, prob, mask = (np.concatenate(x) for x in zip(*records))
    rnd = np.concatenate([np.full(len(r[0]), i) for i, r in enumerate(records)])
    pos = np.concatenate([np.arange(len(r[0])) for r in records])
    keep = np.flatnonzero((t >= split_time) == (split == "dev"))
    keep = keep[np.lexsort((pos[keep], rnd[keep], act[keep], t[keep]))]  # time, user, round, row
    act, t, hl, cand, lab, prob, mask = act[keep], t[keep], hl[keep], cand[keep], lab[keep], prob[keep], mask[keep]
    names = pa.array([f"N{n + 1}" for n in range(w.cfg.num_news)], pa.string())
    history = _joined(names, clicks[np.repeat(act, hl), _ranges(hl)], hl)
    tokens = pc.binary_join_element_wise(names.take(pa.array(cand[mask])), pa.array(np.where(lab[mask], "1", "0")), "-")
    counts = mask.sum(1)
    impressions = pc.binary_join(pa.ListArray.from_arrays(pa.array(_offsets(counts)), tokens), " ")
    ids = pa.array(np.arange(1, len(act) + 1).astype(str))
    users = pc.binary_join_element_wise(pa.scalar("U"), pa.array((act + 1).astype(str)), "")
    with atomic_write(folder / "behaviors.tsv", encoding="utf-8", newline="\n") as f:
        write_tsv_lines(f, [ids, users, format_times(t), history, impressions])
    probs = pa.array(np.char.mod("%.6f", prob[mask]).astype(str), pa.string())
    oracle = pc.binary_join(pa.ListArray.from_arrays(pa.array(_offsets(counts)), probs), " ")
    with atomic_write(folder / "oracle.tsv", encoding="utf-8", newline="\n") as f:
        write_tsv_lines(f, [ids, oracle])
    auc = oracle_auc([y[m].astype(np.int64) for y, m in zip(lab, mask)], [p[m] for p, m in zip(prob, mask)])
    write_news(folder / "news.tsv", w, np.flatnonzero(~w.fresh) if split == "train" else np.arange(w.cfg.num_news))
    write_entity_vectors(folder / "entity_embedding.vec", w)
    return {f"{split}_impressions": len(act), f"{split}_oracle_auc": auc}


def _offsets(counts: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)


def _ranges(lengths: np.ndarray) -> np.ndarray:
    """``[0..l0-1, 0..l1-1, ...]``."""
    return np.arange(int(lengths.sum())) - np.repeat(_offsets(lengths)[:-1], lengths)


def _joined(names: pa.Array, rows: np.ndarray, lengths: np.ndarray) -> pa.Array:
    """Per list (``lengths`` of the flat ``rows``), its names joined by spaces."""
    return pc.binary_join(pa.ListArray.from_arrays(pa.array(_offsets(lengths)), names.take(pa.array(rows))), " ")


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
