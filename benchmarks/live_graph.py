"""The live click graph in serving (#36): does feeding the day's clicks into the graph help on
the day's fresh articles, and what do clicks cost the service?

    python benchmarks/live_graph.py [--seeds 0 1 2] [--users 1500] [--news 1200] [--epochs 2]
                                    [--postgres postgresql://…] [--no-quality] [--no-timing]

**Replay (quality).** A synthetic world (``generate_mind``) whose dev days hold fresh articles
(published after the training days: no training clicks, so no edge in the training graph) and
click transitions (``transition_strength``, default 3; ``0`` turns the signal off). GLORY with
the candidate-aware graph score is trained on the training days (the quality benchmark's small
recipe) and served from the same weights: (a) with the graph frozen at training time,
(b) with a click store, where before each dev impression (in time order) the clicks of every
earlier dev impression have gone through :meth:`Recommender.add_clicks` (each reader's first
replayed click follows the last click of their history, so that their first transition is
counted), and (c) with ``--edge_half_life``, the same clicks into a live graph whose edges age
(the training transitions dated at the end of the training days). Each impression is scored
with its own history and candidates in every mode; the transition baseline
(:func:`newsrec.baselines.transition_scores`' formula) is computed from the frozen and from the
live transition counts the same way. AUC / MRR / nDCG@10 over all dev impressions and over
those whose clicked news is fresh; mean ± std over seeds.

**Timing.** On the serving benchmark's 50k-news world (GLORY with the graph score, trained 60
steps): clicks ingested per second through ``add_clicks`` and through ``POST /clicks``
(uvicorn on 127.0.0.1) in batches of 1,000 (SQLite, and PostgreSQL with ``--postgres``); and
the p50 / p99 of ``recommend(history, k=10)`` over the whole index, idle against while a thread
feeds 1,000 clicks/s (100 every 0.1 s) in the same process, user states recomputed on every
request.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import torch

from newsrec.serving.store import parse_duration

sys.path.insert(0, str(Path(__file__).parent))
from _common import data_sizes, machine, parse_knob, table  # noqa: E402

CACHE = Path(__file__).parent / ".cache"


# -- replay -----------------------------------------------------------------------------------------
def train_glory(root: Path, seed: int, epochs: int, spec: str = "glory_graph_score"):
    """A model of the quality benchmark's ``MODEL_SPECS`` (GLORY with the graph score by
    default; ``"nrms"`` for the content model beside it) trained with its small recipe."""
    import pytorch_lightning as pl
    from quality import MODEL_SPECS, SIZES

    import newsrec.models as models
    from newsrec.data import MINDDataModule

    dm = MINDDataModule(str(root), batch_size=32, eval_batch_size=256, seed=seed)
    pl.seed_everything(seed, verbose=False)
    cls_name, extra = MODEL_SPECS[spec]
    model = getattr(models, cls_name)(
        **data_sizes(dm), **SIZES["small"], **extra,
    )  # fmt: skip
    quiet = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    pl.Trainer(max_epochs=epochs, num_sanity_val_steps=0, limit_val_batches=0, **quiet).fit(model.connect_data(dm), dm)
    return model, dm


def transition_score(table, history: np.ndarray, candidates: np.ndarray, recent: int = 10, decay: float = 0.7):
    """The transition baseline's score of ``candidates`` after ``history`` (rows, oldest first)."""
    h = history[::-1][:recent]
    if not len(h):
        return np.zeros(len(candidates))
    count = table.counts.lookup(h[:, None], candidates[None, :])
    total = table.out_total[np.minimum(h, len(table.out_total) - 1)][:, None]
    prob = np.divide(count, total, out=np.zeros_like(count), where=total > 0)
    return (decay ** np.arange(len(h)))[:, None].__mul__(prob).sum(0)


def metrics(scores: list[np.ndarray], labels: list[np.ndarray], keep: np.ndarray) -> dict:
    from newsrec.metrics import ImpressionMetrics

    idx = np.flatnonzero(keep)
    m = ImpressionMetrics()
    m.update(
        torch.from_numpy(np.concatenate([scores[i] for i in idx]).astype(np.float64)),
        torch.from_numpy(np.concatenate([labels[i] for i in idx]).astype(np.int64)),
        torch.from_numpy(np.repeat(np.arange(len(idx)), [len(labels[i]) for i in idx])),
    )
    out = {k: 100 * float(v) for k, v in m.compute().items()}
    return {"AUC": out["auc"], "MRR": out["mrr"], "nDCG@10": out["ndcg@10"], "impressions": len(idx)}


def replay(
    seed: int,
    users: int,
    news: int,
    epochs: int,
    transitions: float,
    workdir: Path,
    knobs: dict,
    half_life=None,
    spec: str = "glory_graph_score",
    content: str | None = "nrms",
) -> dict:
    from newsrec.baselines import popularity_scores, read_oracle
    from newsrec.data import generate_mind
    from newsrec.data.freshness import fresh_news
    from newsrec.serving import Recommender

    tag = zlib.crc32(json.dumps(knobs, sort_keys=True).encode())
    root = workdir / f"world-{users}-{news}-{seed}-{transitions}-{tag:08x}"
    for old in workdir.glob(f"clicks-{seed}-{transitions}*.sqlite*"):  # a reused workdir's last replay
        old.unlink()
    if not (root / "world.json").exists():
        generate_mind(str(root), num_users=users, num_news=news, seed=seed, transition_strength=transitions, **knobs)
    model, dm = train_glory(root, seed, epochs, spec)
    frozen = Recommender(model, dm)
    text = Recommender(*train_glory(root, seed, epochs, content)) if content else None
    every = dict(entity_refresh_seconds=0)  # the entity view refreshed at every write: reproducible
    lives = {"live": Recommender(model, dm, store=workdir / f"clicks-{seed}-{transitions}.sqlite", **every)}
    if half_life is not None:  # the same clicks into a graph whose edges age
        store = workdir / f"clicks-{seed}-{transitions}-decay.sqlite"
        lives["live_decay"] = Recommender(model, dm, store=store, edge_half_life=half_life, **every)
    dev, ids = dm.behaviors("dev"), dm.corpus.news_ids
    fresh = fresh_news(dm.behaviors("train").click_counts(len(ids)))  # no training click
    popularity = popularity_scores(dm.behaviors("train"), len(ids))
    oracle = read_oracle(root / "dev" / "oracle.tsv")  # file order
    order = np.argsort(dev.times, kind="stable")
    hist, hlen = dev.histories(order, dm.history_length)
    cands, labels, mask = dev.impressions(order)
    out = {f"{m}_{k}": [] for m in ("glory", "transition") for k in ("frozen", *lives)}
    out |= {"popularity": [], "oracle": []} | ({content: []} if content else {})
    labels_of, fresh_click, seen, reachable = [], [], set(), []
    frozen_table = frozen.dm.serving_builder(frozen.index.arrays).transition_table
    t = time.perf_counter()
    for i, row in enumerate(order):
        h, c, y = hist[i, : hlen[i]], cands[i][mask[i]], labels[i][mask[i]]
        h_ids, c_ids = [ids[x] for x in h], [ids[x] for x in c]
        for name, rec in (("frozen", frozen), *lives.items()):
            got = dict(rec.recommend(h_ids, k=len(c_ids), candidates=c_ids, exclude_history=False))
            out[f"glory_{name}"].append(np.asarray([got[x] for x in c_ids]))
            table = frozen_table if rec is frozen else rec._snapshot.transition_table
            out[f"transition_{name}"].append(transition_score(table, h, c))
        if text is not None:
            got = dict(text.recommend(h_ids, k=len(c_ids), candidates=c_ids, exclude_history=False))
            out[content].append(np.asarray([got[x] for x in c_ids]))
        out["popularity"].append(popularity[c])
        out["oracle"].append(oracle[row])
        labels_of.append(y)
        fresh_click.append(bool(fresh[c[y == 1]].any()))
        if fresh_click[-1]:  # is a clicked fresh news one live transition away from a recent click?
            table, recent = lives["live"]._snapshot.transition_table, h[::-1][:10]
            clicked = c[(y == 1) & fresh[c]]
            forward = table.counts.lookup(recent[:, None], clicked[None, :])
            reachable.append(bool((forward + table.counts.lookup(clicked[None, :], recent[:, None]) > 0).any()))
        # this impression's clicks join the store before the next impression
        user, when = f"replay-{dev.user_ids[dev.users[row]]}", float(dev.times[row])
        clicks = [] if user in seen or not len(h) else [{"user_id": user, "news_id": ids[h[-1]], "time": when - 1}]
        seen.add(user)
        clicks += [{"user_id": user, "news_id": ids[x], "time": when} for x in c[y == 1]]
        for rec in lives.values():
            rec.add_clicks(clicks)
    seconds = time.perf_counter() - t
    everything, fresh_only = np.ones(len(order), bool), np.asarray(fresh_click)
    res = {"seed": seed, "transition_strength": transitions, "replay_seconds": seconds,
           "fresh_reachable": float(np.mean(reachable)) if reachable else 0.0}  # fmt: skip
    for name, scores in out.items():
        res[name] = {"all": metrics(scores, labels_of, everything), "fresh": metrics(scores, labels_of, fresh_only)}
    for rec in lives.values():
        rec.close()
    res["models"] = {"glory": spec, "content": content}
    return res


# -- timing -----------------------------------------------------------------------------------------
def random_clicks(rng, news_ids: list[str], n: int, start: float) -> list[dict]:
    users = rng.integers(0, 20_000, n)
    rows = rng.integers(1, len(news_ids), n)
    return [
        {"user_id": f"L{u}", "news_id": news_ids[r], "time": start + i * 0.001}
        for i, (u, r) in enumerate(zip(users, rows))
    ]


def ingest_rate(rec, rng, batches: int = 20, size: int = 1000) -> float:
    ids, start, t = rec.index.ids, 1.7e9, time.perf_counter()
    for b in range(batches):
        rec.add_clicks(random_clicks(rng, ids, size, start + b))
    return batches * size / (time.perf_counter() - t)


def http_ingest_rate(rec, rng, batches: int = 20, size: int = 1000) -> float:
    """Clicks per second through ``POST /clicks`` (uvicorn on 127.0.0.1, one httpx client)."""
    import socket

    import httpx
    import uvicorn

    from newsrec.serving.app import create_app

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(rec), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    ids = rec.index.ids
    bodies = [{"clicks": random_clicks(rng, ids, size, 1.9e9 + b)} for b in range(batches)]
    for c in (c for body in bodies for c in body["clicks"]):
        c["time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(c["time"]))
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        t = time.perf_counter()
        for body in bodies:
            assert client.post("/clicks", json=body).json() == {"accepted": size}
        rate = batches * size / (time.perf_counter() - t)
    server.should_exit = True
    thread.join(timeout=10)
    return rate


def recommend_latency(rec, histories: list[list[str]], stream: bool) -> tuple[float, float, int]:
    """p50, p99 (ms) of recommend(k=10), optionally while a thread feeds 1,000 clicks/s; the
    clicks actually fed."""
    stop, fed = threading.Event(), [0]
    rng = np.random.default_rng(1)

    def feed() -> None:
        ids, tick = rec.index.ids, time.perf_counter()
        while not stop.is_set():
            rec.add_clicks(random_clicks(rng, ids, 100, 1.8e9 + fed[0]))
            fed[0] += 100
            tick += 0.1
            time.sleep(max(0.0, tick - time.perf_counter()))

    feeder = threading.Thread(target=feed, daemon=True)
    if stream:
        feeder.start()
        time.sleep(0.5)
    ms = []
    for h in histories:
        rec._users.clear()
        t = time.perf_counter()
        rec.recommend(h, k=10)
        ms.append((time.perf_counter() - t) * 1e3)
    stop.set()
    if stream:
        feeder.join()
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), fed[0]


def timing(postgres: str | None, requests: int) -> list[dict]:
    from serving import sample_histories, train, world

    from newsrec.serving import Recommender

    root = world(50_000, 3000)
    ckpt = CACHE / "live-glory-graph-score" / "last.ckpt"
    if not ckpt.exists():
        train("glory_transitions", root, 60, ckpt.parent)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        stores = [("sqlite", str(Path(tmp) / "clicks.sqlite"))] + ([("postgresql", postgres)] if postgres else [])
        for kind, location in stores:
            rec = Recommender.from_checkpoint(ckpt, index_dir=Path(tmp) / "index", store=location)
            histories = sample_histories(rec, requests)
            rate = ingest_rate(rec, np.random.default_rng(0))
            http_rate = http_ingest_rate(rec, np.random.default_rng(2))
            idle = recommend_latency(rec, histories, stream=False)
            busy = recommend_latency(rec, histories, stream=True)
            rows.append({
                "store": kind, "news": rec.num_news, "graph edges": rec.click_info["graph_edges"],
                "ingest clicks/s": round(rate), "HTTP ingest clicks/s": round(http_rate),
                "idle p50 ms": idle[0], "idle p99 ms": idle[1],
                "streaming p50 ms": busy[0], "streaming p99 ms": busy[1], "p99 ratio": busy[1] / idle[1],
                "clicks fed while timing": busy[2],
            })  # fmt: skip
            print(table(rows[-1:], list(rows[-1])), flush=True)
            rec.close()
    return rows


def summary(results: list[dict]) -> str:
    lines = []
    for strength in sorted({r["transition_strength"] for r in results}, reverse=True):
        runs = [r for r in results if r["transition_strength"] == strength]
        rows = []
        names = [k for k, v in runs[0].items() if isinstance(v, dict) and "all" in v]
        for name in names:
            row = {"model": name}
            for part in ("all", "fresh"):
                for metric in ("AUC", "MRR", "nDCG@10"):
                    v = np.asarray([r[name][part][metric] for r in runs])
                    row[f"{part} {metric}"] = f"{v.mean():.2f} ± {v.std():.2f}"
            rows.append(row)
        n = [r["glory_live"]["fresh"]["impressions"] for r in runs]
        lines.append(f"transition_strength={strength}, seeds {[r['seed'] for r in runs]}, fresh impressions {n}")
        lines.append(table(rows, list(rows[0])))
        for other in [k for k in names if not k.startswith(("glory_", "transition_", "popularity", "oracle"))]:
            for live in [k for k in names if k.startswith("glory_")]:
                for part in ("fresh", "all"):
                    gap = [r[live][part]["AUC"] - r[other][part]["AUC"] for r in runs]
                    lines.append(
                        f"{live} - {other}, {part} AUC: {np.mean(gap):+.2f} (per seed {[round(g, 2) for g in gap]})"
                    )
        for live in [k[len("glory_") :] for k in names if k.startswith("glory_live")]:
            for part in ("fresh", "all"):
                gain = [r[f"glory_{live}"][part]["AUC"] - r["glory_frozen"][part]["AUC"] for r in runs]
                per_seed = [round(g, 2) for g in gain]
                lines.append(f"GLORY {live} - frozen, {part} AUC: {np.mean(gain):+.2f} (per seed {per_seed})")
        reach = [round(100 * r["fresh_reachable"], 1) for r in runs]
        lines.append(f"fresh impressions whose clicked fresh news has a live edge to or from a recent click: {reach} %")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--users", type=int, default=1500)
    p.add_argument("--news", type=int, default=1200)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--strengths", type=float, nargs="+", default=[3.0, 0.0], help="transition_strength values")
    p.add_argument("--postgres", help="a PostgreSQL DSN to time the shared store too")
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--edge_half_life", help="the live graph's half-life (e.g. 12h; default: no decay)")
    p.add_argument("--knob", action="append", default=[], help="SyntheticConfig field=value (repeatable)")
    p.add_argument("--glory", default="glory_graph_score", help="quality.py MODEL_SPECS name of the graph model")
    p.add_argument("--content", default="nrms", help="the content model scored beside it ('none': skip)")
    p.add_argument("--workdir", help="keep the worlds here (reused by a later run with the same seeds)")
    p.add_argument("--no-quality", action="store_true")
    p.add_argument("--no-timing", action="store_true")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()
    torch.set_num_threads(1)
    print(machine())
    knobs = dict(parse_knob(k) for k in args.knob)
    half_life = parse_duration(args.edge_half_life) if args.edge_half_life else None
    results: dict = {"replay": [], "timing": [], "knobs": knobs, "users": args.users, "news": args.news,
                     "edge_half_life": half_life}  # fmt: skip
    if not args.no_quality:
        content = None if args.content == "none" else args.content
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(args.workdir or tmp)
            for strength in args.strengths:
                for seed in args.seeds:
                    res = replay(seed, args.users, args.news, args.epochs, strength, work, knobs, half_life,
                                 args.glory, content)  # fmt: skip
                    results["replay"].append(res)
                    print(json.dumps(res), flush=True)
        print(summary(results["replay"]))
    if not args.no_timing:
        results["timing"] = timing(args.postgres, args.requests)
        print(table(results["timing"], list(results["timing"][0])))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
