"""Model quality on synthetic MIND worlds: popularity, the click graph's count baselines
(``transition``, ``item_knn``), NRMS, GLORY (the paper's and the beyond-the-paper variants, and
ablations), FUM and the oracle, over several seeds, with one planted signal switched on or off.

    python benchmarks/quality.py [--users 1500] [--news 1200] [--seeds 0 1 2] [--epochs 3]
        [--models popularity nrms glory fum] [--knob transition_strength=3 --knob ...]
        [--size small|medium] [--accelerator cpu|gpu] [--lr_schedule constant|linear|model]
        [--json results.json] [--sparse_sweep]

Prints dev-split AUC / MRR / nDCG@10 means (± std over seeds). Small model sizes (CPU); every
model trains with the same learning-rate schedule (``--lr_schedule``; constant by default —
``model`` gives each model its own default, as the tables recorded before 2026-11-30 did);
``--json`` also writes every run's metrics, so runs made in parallel processes can be merged
(``python benchmarks/quality.py --merge a.json b.json ...``). Every row has a ``fresh`` column
too: the metrics over the dev impressions whose clicked news had no training click
(:mod:`newsrec.data.freshness`). ``--sparse_sweep`` runs the models on worlds with fewer readers per
news and weaker transitions and prints each model minus NRMS.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import data_sizes, machine, parse_knob, table  # noqa: E402

SMALL = dict(word_dim=50, num_heads=4, head_dim=16, attention_hidden=32, dropout=0.2)
SIZES = {"small": SMALL, "medium": dict(SMALL, num_heads=8, attention_hidden=64)}

GLORY_SMALL = {"entity_heads": 4, "entity_head_dim": 16}
FUM_SMALL = {"category_dim": 16, "entity_heads": 4, "entity_head_dim": 16, "fine_dim": 48}
FUM_NO_FINE = {"category_dim": 16, "entity_heads": 4, "entity_head_dim": 16, "use_fine": False}
SAMPLED = dict(GLORY_SMALL, graph_edges="sampled")

#: beyond-accuracy columns (top-10 of each impression; diversity in the mean-GloVe title space)
BEYOND_COLUMNS = ("ild@10", "category_diversity@10", "personalisation@10", "novelty@10", "coverage@10", "gini@10")
COLUMNS = ["model", "auc", "mrr", "ndcg@10", "fresh auc", "fresh ndcg@10", *BEYOND_COLUMNS, "train s"]

#: --lr_schedule: one schedule for every model, so that a comparison is not one of schedules
SCHEDULES = {
    "linear": {"lr_schedule": "linear", "warmup_fraction": 0.1},
    "constant": {"lr_schedule": "constant", "warmup_fraction": 0.0},
    "model": None,
}

MODEL_SPECS = {
    "nrms": ("NRMS", {}),
    "glory": ("GLORY", SAMPLED),
    "glory_out": ("GLORY", dict(SAMPLED, graph_direction="out")),
    "glory_weighted": ("GLORY", dict(SAMPLED, ggnn_edge_weights=True)),
    "glory_out_weighted": ("GLORY", dict(SAMPLED, graph_direction="out", ggnn_edge_weights=True)),
    "glory_undirected": ("GLORY", dict(SAMPLED, graph_method="undir_seq")),
    "glory_mean": ("GLORY", dict(SAMPLED, ggnn_edge_weights="mean")),
    "glory_undirected_mean": ("GLORY", dict(SAMPLED, graph_method="undir_seq", ggnn_edge_weights="mean")),
    "glory_approx": ("GLORY", dict(SAMPLED, neighbor_cache_every=20)),
    # the paper's comparison of graph encoders (GGNN = glory_approx), approximate mode
    **{
        f"glory_{kind}_approx": ("GLORY", dict(SAMPLED, graph_encoder=kind, neighbor_cache_every=20))
        for kind in ("gcn", "gat", "sage", "gin")
    },
    # beyond the paper: candidate-aware click-graph score (c), recency in the user encoder (b)
    "glory_graph_score": ("GLORY", dict(SAMPLED, graph_score=True)),
    # the graph score's first form (the default): "no edge yet" read as "nobody wants this" (#49)
    "glory_graph_score_first": ("GLORY", dict(SAMPLED, graph_score=True, graph_score_fresh=False)),
    # fresh-aware (opt-in, #49): 20 % of training candidates hidden; none (the exposure alone); others
    "glory_graph_score_fresh": ("GLORY", dict(SAMPLED, graph_score=True, graph_score_fresh=True)),
    **{
        f"glory_graph_score_hide{tag}": (
            "GLORY",
            dict(SAMPLED, graph_score=True, graph_score_fresh=True, graph_score_fresh_dropout=share),
        )
        for tag, share in (("0", 0.0), ("05", 0.05), ("4", 0.4))
    },
    # the graph score on the graph-free GLORY (the term alone, cheap): its forms side by side
    **{
        f"glory_score_only{suffix}": (
            "GLORY",
            dict(GLORY_SMALL, use_news_graph=False, use_entity_graph=False, graph_score=True, **flags),
        )
        for suffix, flags in (
            ("", {"graph_score_fresh": True}),
            ("_first", {"graph_score_fresh": False}),
            ("_hide0", {"graph_score_fresh": True, "graph_score_fresh_dropout": 0.0}),
            ("_hide4", {"graph_score_fresh": True, "graph_score_fresh_dropout": 0.4}),
        )
    },  # fmt: skip
    "glory_recency": ("GLORY", dict(SAMPLED, user_recency=True)),
    "glory_transitions": ("GLORY", dict(SAMPLED, graph_score=True, user_recency=True)),
    "glory_transitions_approx": ("GLORY", dict(SAMPLED, graph_score=True, user_recency=True, neighbor_cache_every=20)),
    "glory_graph_score_approx": ("GLORY", dict(SAMPLED, graph_score=True, neighbor_cache_every=20)),
    "glory_recency_approx": ("GLORY", dict(SAMPLED, user_recency=True, neighbor_cache_every=20)),
    "glory_no_news_graph": ("GLORY", dict(GLORY_SMALL, use_news_graph=False)),
    "glory_no_entity_graph": ("GLORY", dict(SAMPLED, use_entity_graph=False)),
    "glory_no_graphs": ("GLORY", dict(GLORY_SMALL, use_news_graph=False, use_entity_graph=False)),
    "fum": ("FUM", FUM_SMALL),
    "fum_no_fine": ("FUM", FUM_NO_FINE),
    "fum_no_coarse": ("FUM", dict(FUM_SMALL, use_coarse=False)),
    "fum_no_title_tokens": ("FUM", dict(FUM_SMALL, genres=["category", "subcategory"])),
    "fum_no_category_tokens": ("FUM", dict(FUM_SMALL, genres=["title", "subcategory"])),
    "fum_no_subcategory_tokens": ("FUM", dict(FUM_SMALL, genres=["title", "category"])),
    "fum_mhsa": ("FUM", dict(FUM_SMALL, fine_encoder="mhsa")),
    "fum_concat": ("FUM", dict(FUM_SMALL, fusion="concat", fine_user_dim=16)),  # the official code's fusion
    # news vectors without the official code's final ReLU (linear, as NRMS's)
    "fum_linear_news": ("FUM", dict(FUM_SMALL, news_activation="none")),
    "fum_no_fine_linear_news": ("FUM", dict(FUM_NO_FINE, news_activation="none")),
    "fum_no_coarse_linear_news": ("FUM", dict(FUM_SMALL, use_coarse=False, news_activation="none")),
}


def train_and_evaluate(
    root: Path,
    model: str,
    seed: int,
    epochs: int,
    lr: float,
    batch_size: int,
    size: str = "small",
    accelerator: str = "cpu",
    schedule: dict | None = None,
) -> dict:
    import pytorch_lightning as pl

    import newsrec.models as models
    from newsrec.baselines import (
        evaluate_scores,
        item_knn_scores,
        popularity_scores,
        read_oracle,
        recency_popularity_scores,
        transition_scores,
    )
    from newsrec.data import MINDDataModule
    from newsrec.metrics import BeyondAccuracyMetrics

    dm = MINDDataModule(str(root), batch_size=batch_size, eval_batch_size=256, seed=seed)
    train, dev = dm.behaviors("train"), dm.behaviors("dev")
    beyond = BeyondAccuracyMetrics(10, **dm.beyond_accuracy_inputs())
    counts = {
        "popularity": lambda: popularity_scores(train, len(dm.corpus)),
        "recency_popularity": lambda: recency_popularity_scores(train, dev, len(dm.corpus)),
        "transition": lambda: transition_scores(train, dev, len(dm.corpus)),
        "item_knn": lambda: item_knn_scores(train, dev, len(dm.corpus)),
        "oracle": lambda: read_oracle(root / "dev" / "oracle.tsv"),
    }
    if model in counts:
        scores = counts[model]()
        return evaluate_scores(dev, scores, beyond) | fresh_columns(dm, per_impression(dev, scores))
    cls_name, extra = MODEL_SPECS[model]
    pl.seed_everything(seed, verbose=False)
    cls = getattr(models, cls_name)
    m = cls(
        **data_sizes(dm),
        lr=lr,
        **SIZES[size],
        **(schedule or {}),
        **extra,
    )
    quiet = dict(
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator=accelerator,
        devices=1,
    )
    trainer = pl.Trainer(max_epochs=epochs, num_sanity_val_steps=0, limit_val_batches=0, **quiet)
    t = time.perf_counter()
    m.connect_data(dm)
    trainer.fit(m, dm)
    seconds = time.perf_counter() - t
    m.beyond_accuracy = "all"  # beyond-accuracy columns beside AUC (model-independent title space)
    t = time.perf_counter()
    out = pl.Trainer(**quiet).validate(m, dm, verbose=False)[0]
    res = {k.split("/", 1)[1]: v for k, v in out.items() if k.startswith("val/")}
    res["train_seconds"], res["eval_seconds"] = seconds, time.perf_counter() - t
    res["train_samples"], res["impressions"] = len(dm.training_samples()) * epochs, len(dev)
    res["cacheable"] = bool(m.cacheable)
    return res | fresh_columns(dm, model_scores(m, dm, quiet))


def per_impression(dev, scores) -> list[np.ndarray]:
    """A baseline's scores as one array per dev impression (file order)."""
    if isinstance(scores, np.ndarray):  # one score per news
        scores = scores[dev.candidates]
        return np.split(scores, dev.candidate_offsets[1:-1])
    return list(scores)


def model_scores(model, dm, quiet: dict) -> list[np.ndarray]:
    """A trained model's scores of every dev impression (file order), through its predict step."""
    import pytorch_lightning as pl

    model.beyond_accuracy = "test"  # predict logs nothing
    out = pl.Trainer(**quiet).predict(model, dataloaders=dm.val_dataloader())
    dev = dm.behaviors("dev")
    by_id = {int(i): s for part in out for i, s in zip(part["impression_ids"], part["scores"])}
    return [by_id[int(i)] for i in dev.impression_ids]


def fresh_columns(dm, scores: list[np.ndarray]) -> dict:
    """``fresh_auc``, ``fresh_ndcg@10``, ``fresh_impressions``: the metrics over the dev
    impressions whose clicked news had no training click (:mod:`newsrec.data.freshness`)."""
    from newsrec.data.freshness import fresh_impressions, fresh_news, split_metrics

    train, dev = dm.behaviors("train"), dm.behaviors("dev")
    fresh = fresh_news(train.click_counts(len(dm.corpus)))
    rows = fresh_impressions(dev.candidates, dev.candidate_offsets, dev.labels, fresh)
    labels = np.split(dev.labels.astype(np.int64), dev.candidate_offsets[1:-1])
    got = split_metrics(scores, labels, rows)["fresh"]
    return {"fresh_auc": got["auc"], "fresh_ndcg@10": got["ndcg@10"], "fresh_impressions": got["impressions"]}


def run(
    users: int,
    news: int,
    seeds: list[int],
    epochs: int,
    models: list[str],
    knobs: dict,
    lr: float,
    batch_size: int,
    workdir: Path,
    size: str = "small",
    accelerator: str = "cpu",
    schedule: dict | None = None,
) -> dict[str, list[dict]]:
    from newsrec.data import generate_mind

    results: dict[str, list[dict]] = {m: [] for m in models}
    for seed in seeds:
        tag = zlib.crc32(json.dumps(knobs, sort_keys=True).encode())  # stable across processes
        root = workdir / f"world-{users}-{news}-{seed}-{tag:08x}"
        if not (root / "world.json").exists():  # written last
            generate_mind(root, num_users=users, num_news=news, seed=seed, **knobs)
        for m in models:
            results[m].append(train_and_evaluate(root, m, seed, epochs, lr, batch_size, size, accelerator, schedule))
    return results


def summarise(results: dict[str, list[dict]]) -> list[dict]:
    rows = []
    for model, runs in results.items():
        row = {"model": model}
        for k in ("auc", "mrr", "ndcg@10"):
            vals = np.array([r[k] for r in runs]) * 100
            row[k] = f"{vals.mean():.2f} ± {vals.std():.2f}"
        for k in ("auc", "ndcg@10"):  # impressions whose clicked news had no training click
            vals = np.array([r[f"fresh_{k}"] for r in runs if f"fresh_{k}" in r]) * 100
            row[f"fresh {k}"] = f"{np.nanmean(vals):.2f} ± {np.nanstd(vals):.2f}" if len(vals) else ""
        for k in BEYOND_COLUMNS:  # runs recorded before the beyond-accuracy metrics lack them
            vals = [r[k] for r in runs if k in r]
            row[k] = f"{np.mean(vals):.3f}" if vals else ""
        if "train_seconds" in runs[0]:
            row["train s"] = f"{np.mean([r['train_seconds'] for r in runs]):.0f}"
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=1500)
    ap.add_argument("--news", type=int, default=1200)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch_size", type=int, default=32)
    ap.add_argument(
        "--lr_schedule",
        choices=["linear", "constant", "model"],
        default="constant",
        help="one learning-rate schedule for every model (constant; linear: 10%% warm-up, then "
        "decay to 0), or 'model': each model's own default (NRMS and GLORY linear, FUM constant)",
    )
    ap.add_argument(
        "--models",
        nargs="+",
        default=["popularity", "transition", "item_knn", "nrms", "glory", "glory_transitions", "fum", "oracle"],
    )
    ap.add_argument("--knob", action="append", default=[], help="SyntheticConfig field=value")
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "newsrec-quality"))
    ap.add_argument("--size", choices=sorted(SIZES), default="small", help="model sizes (small: 64-d news)")
    ap.add_argument("--accelerator", default="cpu", help="Lightning accelerator (cpu, gpu)")
    ap.add_argument("--json", help="also write the runs' metrics to this file")
    ap.add_argument("--merge", nargs="+", help="print the tables of --json files (grouped by world) and exit")
    ap.add_argument(
        "--sparse_sweep",
        action="store_true",
        help="the worlds of SPARSE_WORLDS (fewer readers per news, weaker transitions), each model's "
        "AUC and fresh AUC minus NRMS's per world (put nrms in --models)",
    )
    a = ap.parse_args()
    if a.merge:
        return merge(a.merge)
    os.environ.setdefault("NEWSREC_PROGRESS", "0")
    knobs = dict(parse_knob(kv) for kv in a.knob)
    schedule = SCHEDULES[a.lr_schedule]
    if a.sparse_sweep:
        return sparse_sweep(a, knobs, schedule)
    results = run(
        a.users,
        a.news,
        a.seeds,
        a.epochs,
        a.models,
        knobs,
        a.lr,
        a.batch_size,
        Path(a.workdir),
        a.size,
        a.accelerator,
        schedule,
    )
    shown = dict(sorted(knobs.items())) or "default"  # one label per world, whatever the knob order
    world = f"{a.users} users, {a.news} news, knobs {shown}; {a.epochs} epochs, {a.size} models"
    world += f", {a.lr_schedule} learning rate" if a.lr_schedule != "model" else ", each model's learning-rate schedule"
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"world": world, "machine": machine(), "results": results}, f)
    print(f"machine: {machine()}")
    print(f"world: {world}; seeds {a.seeds}")
    print(table(summarise(results), COLUMNS))


#: --sparse_sweep: (share of --users, transition_strength): readers per news and the planted
#: transitions turned down together, as a new user's thinner data might be (#49)
SPARSE_WORLDS = ((1.0, 3.0), (0.5, 1.5), (0.25, 1.0), (0.25, 0.0))


def sparse_sweep(a, knobs: dict, schedule: dict | None) -> None:
    """Every model on each world of :data:`SPARSE_WORLDS`; prints, per world, each model's AUC and
    fresh AUC minus NRMS's (mean and per seed): a graph term must back off where counts are thin."""
    if "nrms" not in a.models:
        raise SystemExit("--sparse_sweep compares with NRMS: put nrms in --models")
    out = {}
    print(f"machine: {machine()}")
    for share, strength in SPARSE_WORLDS:
        users, world_knobs = max(50, int(round(a.users * share))), dict(knobs, transition_strength=strength)
        results = run(users, a.news, a.seeds, a.epochs, a.models, world_knobs, a.lr, a.batch_size,
                      Path(a.workdir), a.size, a.accelerator, schedule)  # fmt: skip
        name = f"{users} users, {a.news} news, transition_strength {strength}"
        out[name] = results
        print(f"\nworld: {name}; {a.epochs} epochs, seeds {a.seeds}")
        print(table(summarise(results), COLUMNS))
        for model in a.models:
            if model == "nrms":
                continue
            for key in ("auc", "fresh_auc"):
                gap = [100 * (r[key] - n[key]) for r, n in zip(results[model], results["nrms"])]
                print(f"{model} - nrms, {key}: {np.mean(gap):+.2f} (per seed {[round(g, 2) for g in gap]})")
        if a.json:
            Path(a.json).write_text(json.dumps({"machine": machine(), "worlds": out}))


def merge(paths: list[str]) -> None:
    """Print one table per world from ``--json`` files (runs of one model are pooled)."""
    worlds: dict[str, dict[str, list[dict]]] = {}
    machines = set()
    for p in paths:
        with open(p) as f:
            d = json.load(f)
        machines.add(d["machine"])
        for model, runs in d["results"].items():
            worlds.setdefault(d["world"], {}).setdefault(model, []).extend(runs)
    print("machine: " + "; ".join(sorted(machines)))
    for world, results in worlds.items():
        n = max(len(r) for r in results.values())
        print(f"\nworld: {world}; {n} seed(s)")
        print(table(summarise(results), COLUMNS))


if __name__ == "__main__":
    main()
