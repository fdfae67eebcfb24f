"""How much AUC the synthetic world's word-level (aspect) signal can give a user model at all,
and how much of it a plain reading of the history's aspect words already recovers.

    python benchmarks/word_signal.py [--users 3000] [--news 1500] [--seed 0] [--knob word_strength=3 ...]

Every title carries an aspect word and every user prefers one aspect (``word_strength`` on the
click logit). On the dev impressions, with every other term of the oracle's logit kept exact,
the aspect term is replaced by:

* nothing (``oracle without the aspect term``): what a model that ignores aspects could reach;
* the share of the user's history clicks with the candidate's aspect (``linear reading``): what
  a weighted mean of clicked-news vectors — NRMS's user vector — can express;
* the posterior of the user's aspect given the history's aspect counts,
  ``softmax(word_strength * counts)`` (``posterior reading``): a sharper, non-linear reading;
* the user's true aspect (``oracle``).

In a world with cue words (``num_cues > 0``: a user's aspect is implied by the *pair* of cue
words their history shows, in different news; see :mod:`newsrec.data.synthetic`), two more:

* the best per-cue reading (``additive cue reading``): each history click's cue votes for the
  aspects it is paired with, weighted by how often; all a weighted mean of clicked-news vectors
  can do with the cues (≈ nothing: the pairing spreads every cue evenly over the aspects);
* the two most frequent cues of the history, paired (``cue pair reading``): what a model that
  reads words across clicked news together can do.

The gap between the oracle and a reading bounds what any better reading of the history's words
(FUM's fine-grained user model, for one) can add over it on this signal.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import parse_knob, table  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=3000)
    ap.add_argument("--news", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--knob", action="append", default=[], help="SyntheticConfig field=value")
    a = ap.parse_args()
    from newsrec.data.synthetic import SyntheticConfig, generate_mind, oracle_auc
    from newsrec.data.synthetic_world import World

    knobs = dict(parse_knob(kv) for kv in a.knob)
    with tempfile.TemporaryDirectory() as tmp:
        root = generate_mind(tmp, num_users=a.users, num_news=a.news, seed=a.seed, show_progress=False, **knobs)
        behaviors = (Path(root) / "dev" / "behaviors.tsv").read_text().splitlines()
        oracle = [np.array(line.split("\t")[1].split(), float) for line in (Path(root) / "dev" / "oracle.tsv").open()]
    # the generator's latent world (same configuration and seed: the same world)
    cfg = SyntheticConfig(num_users=a.users, num_news=a.news, seed=a.seed, **knobs)
    world = World(cfg)
    strength, num_aspects = cfg.word_strength, cfg.num_aspects
    names = ["oracle without the aspect term", "linear reading", "posterior reading", "oracle"]
    if cfg.num_cues:
        names[3:3] = ["additive cue reading", "cue pair reading"]
        C = cfg.num_cues
        pair_aspect = (world.cue_value[:, None] + world.cue_value[None, :]) % num_aspects  # [C, C]
        off_diagonal = ~np.eye(C, dtype=bool)
        # share of cue c's pairings that give aspect k: [C, num_aspects]
        votes = np.stack([((pair_aspect == k) & off_diagonal).sum(1) for k in range(num_aspects)], 1) / (C - 1)
    scores: dict[str, list[np.ndarray]] = {k: [] for k in names}
    labels = []
    for line, p in zip(behaviors, oracle):
        _, user, _, history, impression = line.split("\t")
        cand = np.array([int(t.split("-")[0][1:]) - 1 for t in impression.split()])
        labels.append(np.array([int(t.split("-")[1]) for t in impression.split()]))
        clicks = np.array([int(t[1:]) - 1 for t in history.split()], dtype=np.int64)
        counts = np.bincount(world.aspect[clicks], minlength=num_aspects).astype(np.float64)
        posterior = np.exp(strength * (counts - counts.max()))
        posterior /= posterior.sum()
        true = (world.aspect[cand] == world.user_aspect[int(user[1:]) - 1]).astype(np.float64)
        logit = np.log(p) - np.log1p(-p)
        rest = logit - strength * true
        scores[names[0]].append(rest)
        scores[names[1]].append(rest + strength * counts[world.aspect[cand]] / max(len(clicks), 1))
        scores[names[2]].append(rest + strength * posterior[world.aspect[cand]])
        if cfg.num_cues:
            cue_counts = np.bincount(world.cue[clicks], minlength=cfg.num_cues).astype(np.float64)
            additive = cue_counts @ votes / max(len(clicks), 1)
            top = np.argsort(-cue_counts, kind="stable")[:2]
            scores["additive cue reading"].append(rest + strength * additive[world.aspect[cand]])
            paired = world.aspect[cand] == pair_aspect[top[0], top[1]]
            scores["cue pair reading"].append(rest + strength * paired)
        scores["oracle"].append(logit)
    aucs = {k: 100 * oracle_auc(labels, v) for k, v in scores.items()}
    rows = [{"aspect term": k, "dev AUC": v, "oracle − this": aucs["oracle"] - v} for k, v in aucs.items()]
    print(f"world: {a.users} users, {a.news} news, seed {a.seed}, knobs {knobs or 'default'}")
    print(table(rows, list(rows[0])))


if __name__ == "__main__":
    main()
