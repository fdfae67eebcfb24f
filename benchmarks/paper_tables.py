"""The GLORY and FUM papers' tables, reproduced on synthetic worlds: every model of newsrec's zoo
trained on the same worlds with the same budget, beside popularity, the click graph's count
baselines and the oracle, with the published MIND figures printed beside (marked as such).

    python benchmarks/paper_tables.py [--quick] [--users 1500] [--news 1200] [--seeds 0 1 2]
        [--epochs 2] [--models ...] [--knob transition_strength=3 ...] [--json out.json]
    python benchmarks/paper_tables.py --merge a.json b.json   # runs of one world made apart

Prints three tables:

1. FUM's Table 1 layout: AUC, MRR, nDCG@5, nDCG@10 (× 100, mean ± std over seeds) with the
   published MIND figures (FUM's Table 1) beside;
2. GLORY's main-table layout: the GLORY paper's baselines in its order (rows of models not yet
   in newsrec are named as missing; GLORY's own published figures are not printed: they could
   not be verified here);
3. FUM's Table 2 layout: training seconds per 1k training samples, inference seconds per 1k
   impressions (the whole cached evaluation, as ``newsrec validate`` runs it) and cacheable
   yes/no, measured side by side in this one run, with the paper's figures beside;

plus the beyond-accuracy columns ``newsrec test`` logs. ``--quick``: a small world, one seed,
one epoch (what CI can afford; its figures are a smoke test, not a comparison).

The mechanism worlds of #46 are ``--knob`` settings: ``--knob hub_strength=2`` (a hub entity
per user recurring across clicks of varied topics: User-as-Graph's signal) and
``--knob story_noise_fraction=0.5`` (noisy titles whose story siblings carry the topic:
DIGAT's semantic neighbours); see the synthetic world's table in docs/data.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, parse_knob, table  # noqa: E402
from quality import BEYOND_COLUMNS, FUM_SMALL, GLORY_SMALL, MODEL_SPECS, SCHEDULES, run  # noqa: E402

#: the zoo at the benchmark's small size (64-d news: quality.SMALL), each model's own parts scaled
ZOO_SPECS = {
    "gru": ("GRU", {}),
    "npa": ("NPA", {"num_filters": 64, "user_dim": 16, "query_dim": 32}),
    "npa_cacheable": ("NPA", {"num_filters": 64, "user_dim": 16, "query_dim": 32, "personalised": False}),
    "naml": ("NAML", {"num_filters": 64, "category_dim": 16}),
    "lstur": ("LSTUR", {"num_filters": 32, "category_dim": 16}),
    "hierec": ("HieRec", {}),
    "miner": ("MINER", {"num_codes": 8, "code_dim": 32}),
    "fastformer": ("FastformerNR", {}),
    "libfm": ("LibFM", {"factor_dim": 16}),
    "deepfm": ("DeepFM", {"factor_dim": 16, "hidden_dims": (128, 128)}),
    "fim": ("FIM", {"num_filters": 32, "conv_channels": (16, 8)}),
    "dkn": ("DKN", {"num_filters": 32, "attention_dim": 32}),
    "kred": ("KRED", {}),
    "gerl": ("GERL", {}),
    "gnewsrec": ("GNewsRec", {}),
    "user_as_graph": ("UserAsGraph", {}),
    "digat": ("DIGAT", {}),
    "nrms": ("NRMS", {}),
    "glory": ("GLORY", dict(GLORY_SMALL, graph_edges="sampled")),
    "glory_transitions": ("GLORY", dict(GLORY_SMALL, graph_edges="sampled", graph_score=True, user_recency=True)),
    "fum": ("FUM", FUM_SMALL),
}
MODEL_SPECS.update(ZOO_SPECS)
REFERENCES = ["popularity", "recency_popularity", "transition", "item_knn"]
DEFAULT_MODELS = [*REFERENCES, *ZOO_SPECS, "oracle"]

#: FUM's Table 1 (MIND; AUC, MRR, nDCG@5, nDCG@10) and Table 2 (training / inference seconds per
#: 1k samples, on the authors' GPU; cacheable), from ../shared/reference/FUM.md
FUM_TABLE1 = {
    "gru": (65.47, 31.15, 33.64, 39.34),
    "dkn": (67.19, 32.97, 35.87, 41.53),
    "npa": (67.42, 32.97, 35.90, 41.54),
    "kred": (67.77, 33.39, 36.34, 42.04),
    "gnewsrec": (68.38, 33.46, 36.44, 42.15),
    "naml": (68.16, 33.31, 36.26, 41.94),
    "nrms": (68.33, 33.55, 36.53, 42.18),
    "lstur": (68.53, 33.58, 36.54, 42.23),
    "fim": (68.15, 33.36, 36.38, 42.02),
    "fum": (70.01, 34.51, 37.68, 43.38),
}
FUM_TABLE2 = {
    "gru": (11.46, 2.41, "yes"),
    "dkn": (8.19, 44.90, "no"),
    "naml": (7.98, 1.23, "yes"),
    "npa_cacheable": (8.10, 1.15, "yes"),  # FUM's rerun of NPA did not personalise the candidate
    "kred": (10.40, 1.24, "yes"),
    "gnewsrec": (10.72, 86.90, "no"),
    "lstur": (11.53, 2.43, "yes"),
    "nrms": (11.39, 2.16, "yes"),
    "fim": (15.85, 350.38, "no"),
    "fum": (13.21, 2.75, "yes"),
}
#: the GLORY paper's baselines in its table's order (part 2 and 3 of the zoo bring the missing)
GLORY_ORDER = ["libfm", "deepfm", "dkn", "npa", "naml", "lstur", "nrms", "fim", "hierec", "miner", "glory"]
METRICS = ("auc", "mrr", "ndcg@5", "ndcg@10")
#: the dev impressions whose clicked news had no training click (benchmarks/quality.py's fresh_columns)
FRESH = ("fresh_auc", "fresh_ndcg@10")


def mean_std(runs: list[dict], key: str, scale: float = 100.0) -> str:
    values = np.array([r[key] for r in runs if key in r], dtype=float) * scale
    values = values[~np.isnan(values)]  # a world without fresh impressions has NaN fresh metrics
    return f"{values.mean():.2f} ± {values.std():.2f}" if len(values) else ""


def table1(results: dict[str, list[dict]]) -> list[dict]:
    rows = []
    for model, runs in results.items():
        row = {"model": model, **{m: mean_std(runs, m) for m in (*METRICS, *FRESH)}}
        published = FUM_TABLE1.get(model)
        row["published on MIND (FUM Table 1)"] = " / ".join(f"{v:.2f}" for v in published) if published else ""
        rows.append(row)
    return rows


def glory_table(results: dict[str, list[dict]]) -> list[dict]:
    rows = []
    for name in GLORY_ORDER:
        runs = results.get(name)
        if runs is None:
            note = "not in this run"  # every row of GLORY's table is in the zoo
            rows.append({"model": name, "auc": note})
            continue
        rows.append({"model": name, **{m: mean_std(runs, m) for m in (*METRICS, *FRESH)}})
    for name in ("glory_transitions", *REFERENCES, "oracle"):
        if name in results:
            rows.append({"model": name, **{m: mean_std(results[name], m) for m in (*METRICS, *FRESH)}})
    return rows


def table2(results: dict[str, list[dict]]) -> list[dict]:
    rows = []
    for model, runs in results.items():
        if "train_seconds" not in runs[0]:
            continue  # the count baselines and the oracle: no training
        train = np.mean([r["train_seconds"] / r["train_samples"] * 1000 for r in runs])
        infer = np.mean([r["eval_seconds"] / r["impressions"] * 1000 for r in runs])
        paper = FUM_TABLE2.get(model)
        rows.append(
            {
                "model": model,
                "train s / 1k samples": f"{train:.2f}",
                "inference s / 1k impressions": f"{infer:.2f}",
                "cacheable": "yes" if runs[0]["cacheable"] else "no",
                "paper (GPU): train / inference / cacheable": " / ".join(map(str, paper)) if paper else "",
            }
        )
    return rows


def beyond(results: dict[str, list[dict]]) -> list[dict]:
    return [
        {"model": m, **{k: f"{np.mean([r[k] for r in runs]):.3f}" for k in BEYOND_COLUMNS if k in runs[0]}}
        for m, runs in results.items()
    ]


def print_tables(results: dict[str, list[dict]], header: str) -> None:
    print(header)
    print("\n## FUM Table 1 layout (×100, mean ± std over seeds; published figures are MIND's, not this world's)\n")
    print(table(table1(results), ["model", *METRICS, *FRESH, "published on MIND (FUM Table 1)"]))
    print("\n## GLORY main-table layout (its baselines in its order; GLORY's published figures not verified here)\n")
    print(table(glory_table(results), ["model", *METRICS, *FRESH]))
    print("\n## FUM Table 2 layout (measured side by side in this run; the paper's on its GPU, per 1k samples)\n")
    cols = ["model", "train s / 1k samples", "inference s / 1k impressions", "cacheable"]
    print(table(table2(results), [*cols, "paper (GPU): train / inference / cacheable"]))
    print("\n## Beyond accuracy (@10, dev impressions)\n")
    print(table(beyond(results), ["model", *BEYOND_COLUMNS]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a small world, one seed, one epoch (CI-sized)")
    ap.add_argument("--users", type=int, default=1500)
    ap.add_argument("--news", type=int, default=1200)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch_size", type=int, default=32)
    ap.add_argument("--models", nargs="+", default=DEFAULT_MODELS, choices=sorted({*DEFAULT_MODELS, *MODEL_SPECS}))
    ap.add_argument("--knob", action="append", default=[], help="SyntheticConfig field=value")
    ap.add_argument("--accelerator", default="cpu")
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "newsrec-paper-tables"))
    ap.add_argument("--json", help="also write every run's metrics to this file")
    ap.add_argument("--merge", nargs="+", help="print the tables of --json files of one world and exit")
    a = ap.parse_args()
    if a.merge:
        parts = [json.loads(Path(p).read_text()) for p in a.merge]
        merged = {m: runs for part in parts for m, runs in part["results"].items()}
        order = [m for m in DEFAULT_MODELS if m in merged] + [m for m in merged if m not in DEFAULT_MODELS]
        return print_tables({m: merged[m] for m in order}, "\n".join(dict.fromkeys(p["header"] for p in parts)))
    if a.quick:
        a.users, a.news, a.seeds, a.epochs = 200, 200, [0], 1
    os.environ.setdefault("NEWSREC_PROGRESS", "0")
    knobs = dict(parse_knob(kv) for kv in a.knob)
    shown = dict(sorted(knobs.items())) or "default"
    header = f"machine: {machine()}\nworld: {a.users} users, {a.news} news, knobs {shown}; seeds {a.seeds}; "
    header += f"{a.epochs} epochs, small models (64-d news), constant learning rate {a.lr}"
    results = {}
    for model in a.models:  # one model at a time, so that a long run shows its figures as it goes
        results.update(
            run(
                a.users, a.news, a.seeds, a.epochs, [model], knobs, a.lr, a.batch_size, Path(a.workdir),
                "small", a.accelerator, SCHEDULES["constant"],
            )
        )  # fmt: skip
        print(f"{model}: " + ", ".join(f"{m} {mean_std(results[model], m)}" for m in METRICS), flush=True)
        if a.json:  # after every model, so that a long run interrupted keeps what it measured
            Path(a.json).write_text(json.dumps({"header": header, "results": results}))
    print_tables(results, header)


if __name__ == "__main__":
    main()
