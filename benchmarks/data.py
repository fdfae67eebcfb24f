"""Data-layer benchmark: synthetic world generation, parse + corpus + behaviors (MIND-small
size), streaming a MIND-large-sized behaviors file, impression metrics, beyond-accuracy
metrics, and converting EB-NeRD-shaped parquet sets of two sizes (rows/s and peak memory: the
memory must not grow with the file).

    python benchmarks/data.py [--quick] [--workdir /tmp/newsrec-bench] [--ebnerd_sizes 1000000 4000000]
        [--only_ebnerd] [--ebnerd_users 5000] [--ebnerd_articles 2000] [--ebnerd_history 20]

Each phase runs in its own process, so the peak memory reported is the phase's own.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import emit, machine, run_phase, table  # noqa: E402


def phase_generate(root: Path, users: int, news: int) -> None:
    from newsrec.data import generate_mind

    t = time.perf_counter()
    generate_mind(root, num_users=users, num_news=news, seed=0)
    emit({"seconds": time.perf_counter() - t})


def phase_prepare(root: Path) -> None:
    from newsrec.data import Behaviors, NewsCorpus

    t = time.perf_counter()
    corpus = NewsCorpus.from_files([root / "train" / "news.tsv", root / "dev" / "news.tsv"])
    t_corpus = time.perf_counter() - t
    train = Behaviors.from_file(root / "train" / "behaviors.tsv", corpus.lookup)
    dev = Behaviors.from_file(root / "dev" / "behaviors.tsv", corpus.lookup)
    emit(
        {
            "seconds": time.perf_counter() - t,
            "corpus_seconds": t_corpus,
            "news": len(corpus) - 1,
            "impressions": len(train) + len(dev),
            "clicks": int(len(train.history) + len(dev.history)),
        }
    )


def make_large_behaviors(src: Path, dst: Path, copies: int) -> int:
    """A MIND-large-sized behaviors file: ``copies`` copies of a MIND-small-sized one with fresh
    impression ids (the text is what the reader's cost depends on)."""
    lines = src.read_text().splitlines()
    body = ["\t".join(line.split("\t")[1:]) for line in lines]
    n = 0
    with open(dst, "w") as f:
        for _ in range(copies):
            f.write("\n".join(f"{n + i + 1}\t{b}" for i, b in enumerate(body)) + "\n")
            n += len(body)
    return n


def phase_stream(root: Path, big: Path) -> None:
    from newsrec.data import NewsCorpus
    from newsrec.data.behaviors import Behaviors

    corpus = NewsCorpus.from_files([root / "train" / "news.tsv", root / "dev" / "news.tsv"])
    t = time.perf_counter()
    b = Behaviors.from_file(big, corpus.lookup)
    emit(
        {
            "seconds": time.perf_counter() - t,
            "impressions": len(b),
            "history_clicks": int(len(b.history)),
            "gigabytes": big.stat().st_size / 1e9,
        }
    )


def phase_metrics(num: int) -> None:
    import numpy as np
    import torch
    from torchmetrics.retrieval import RetrievalAUROC, RetrievalMRR

    from newsrec.metrics import ImpressionMetrics

    rng = np.random.default_rng(0)
    sizes = rng.integers(5, 70, num)  # ~37 candidates on average
    idx = torch.from_numpy(np.repeat(np.arange(num), sizes))
    preds = torch.from_numpy(rng.standard_normal(len(idx)))
    target = torch.from_numpy((rng.random(len(idx)) < 0.1).astype(np.int64))
    t = time.perf_counter()
    m = ImpressionMetrics()
    m.update(preds, target, idx)
    ours = m.compute()
    t_ours = time.perf_counter() - t
    t = time.perf_counter()
    ref_auc = RetrievalAUROC(empty_target_action="skip")
    ref_auc.update(preds, target, indexes=idx)
    ref_auc.compute()
    ref_mrr = RetrievalMRR(empty_target_action="skip")
    ref_mrr.update(preds, target, indexes=idx)
    ref_mrr.compute()
    t_ref = time.perf_counter() - t
    emit(
        {
            "seconds": t_ours,
            "torchmetrics_seconds": t_ref,
            "impressions": num,
            "candidates": int(len(idx)),
            "auc": float(ours["auc"]),
        }
    )


def phase_beyond(num: int, chunk: int = 8192) -> None:
    """BeyondAccuracyMetrics over ``num`` impressions (~37 candidates, top-10, histories of up
    to 50 clicks, 50k items with 64-d vectors), fed in evaluation-sized chunks."""
    import numpy as np
    import torch

    from newsrec.metrics import BeyondAccuracyMetrics

    rng = np.random.default_rng(0)
    items, L, H = 50000, 70, 50
    metric = BeyondAccuracyMetrics(
        10,
        item_categories=torch.from_numpy(rng.integers(0, 18, items)),
        item_vectors=torch.from_numpy(rng.standard_normal((items, 64)).astype(np.float32)),
        click_counts=torch.from_numpy(rng.integers(0, 100, items)),
        catalogue_start=1,
    )
    sizes = rng.integers(5, L, num)
    scores = torch.from_numpy(rng.standard_normal((num, L)))
    mask = torch.from_numpy(np.arange(L)[None, :] < sizes[:, None])
    cands = torch.from_numpy(rng.integers(1, items, (num, L)))
    hist = torch.from_numpy(rng.integers(1, items, (num, H)))
    hmask = torch.from_numpy(np.arange(H)[None, :] < rng.integers(0, H + 1, num)[:, None])
    t = time.perf_counter()
    for start in range(0, num, chunk):
        sl = slice(start, start + chunk)
        metric.update(scores[sl], mask[sl], cands[sl], hist[sl], hmask[sl])
    out = metric.compute()
    emit({"seconds": time.perf_counter() - t, "impressions": num, "ild": float(out["ild"])})


def phase_ebnerd_make(work: Path, impressions: int, users: int, articles: int, history: int) -> None:
    sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
    from _ebnerd import synthetic_ebnerd

    t = time.perf_counter()
    synthetic_ebnerd(
        work / f"ebnerd-{impressions}", impressions, articles=articles, users=users, history_length=history
    )
    emit({"seconds": time.perf_counter() - t})


def phase_ebnerd(work: Path, impressions: int) -> None:
    from newsrec.data.ebnerd import convert_ebnerd

    src = work / f"ebnerd-{impressions}"
    size = sum(f.stat().st_size for f in src.rglob("*.parquet"))
    t = time.perf_counter()
    report = convert_ebnerd(src, work / f"ebnerd-{impressions}-mind", show_progress=False)
    seconds = time.perf_counter() - t
    rows = sum(report.impressions.values())
    emit({"seconds": seconds, "rows": rows, "rows_per_s": rows / seconds, "parquet_gb": size / 1e9})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--phase")
    ap.add_argument("--quick", action="store_true", help="small sizes (seconds)")
    ap.add_argument("--workdir", default="/tmp/newsrec-bench")
    ap.add_argument("--users", type=int)
    ap.add_argument("--news", type=int)
    ap.add_argument("--impressions", type=int)
    ap.add_argument("--ebnerd_sizes", type=int, nargs="+", help="impressions per split of the EB-NeRD sets")
    ap.add_argument("--only_ebnerd", action="store_true", help="run the EB-NeRD rows only")
    ap.add_argument("--ebnerd_users", type=int, default=5000, help="users (history rows) of the EB-NeRD sets")
    ap.add_argument("--ebnerd_articles", type=int, default=2000, help="articles of the EB-NeRD sets")
    ap.add_argument("--ebnerd_history", type=int, default=20, help="history clicks per user of the EB-NeRD sets")
    a = ap.parse_args()
    work = Path(a.workdir)
    root = work / "mind-small-size"
    if a.phase == "generate":
        return phase_generate(root, a.users, a.news)
    if a.phase == "prepare":
        return phase_prepare(root)
    if a.phase == "stream":
        return phase_stream(root, work / "behaviors-large.tsv")
    if a.phase == "metrics":
        return phase_metrics(a.impressions)
    if a.phase == "beyond":
        return phase_beyond(a.impressions)
    if a.phase == "ebnerd_make":
        return phase_ebnerd_make(work, a.impressions, a.ebnerd_users, a.ebnerd_articles, a.ebnerd_history)
    if a.phase == "ebnerd":
        return phase_ebnerd(work, a.impressions)
    users = news = 2000 if a.quick else 50000
    target_bytes = 20e6 if a.quick else 2.5e9  # MIND-large's behaviors.tsv is about 2.5 GB
    impressions = 5000 if a.quick else 100000
    os.environ.setdefault("NEWSREC_PROGRESS", "0")
    if root.exists():
        shutil.rmtree(root)
    work.mkdir(parents=True, exist_ok=True)
    me = str(Path(__file__).resolve())
    rows = []
    if a.only_ebnerd:
        ebnerd_rows(me, work, a, rows)
        print(f"machine: {machine()}")
        print(table(rows, ["step", "seconds", "rows/s", "peak RSS GiB"]))
        return
    r = run_phase(me, "generate", "--workdir", str(work), "--users", str(users), "--news", str(news))
    rows.append(
        {
            "step": f"generate_mind ({users} users, {news} news)",
            "seconds": r["seconds"],
            "peak RSS GiB": r["peak_rss_gib"],
        }
    )
    r = run_phase(me, "prepare", "--workdir", str(work))
    rows.append(
        {
            "step": f"parse + corpus + behaviors ({r['impressions']} impressions, {r['clicks']} history clicks)",
            "seconds": r["seconds"],
            "peak RSS GiB": r["peak_rss_gib"],
        }
    )
    src = root / "train" / "behaviors.tsv"
    copies = max(1, int(round(target_bytes / src.stat().st_size)))
    n = make_large_behaviors(src, work / "behaviors-large.tsv", copies)
    r = run_phase(me, "stream", "--workdir", str(work))
    rows.append(
        {
            "step": f"stream behaviors ({r['gigabytes']:.2f} GB, {n} impressions, {r['history_clicks']} clicks)",
            "seconds": r["seconds"],
            "peak RSS GiB": r["peak_rss_gib"],
        }
    )
    (work / "behaviors-large.tsv").unlink()
    r = run_phase(me, "metrics", "--impressions", str(impressions))
    rows.append(
        {
            "step": f"ImpressionMetrics ({impressions} impressions, {r['candidates']} candidates)",
            "seconds": r["seconds"],
            "peak RSS GiB": r["peak_rss_gib"],
        }
    )
    rows.append(
        {
            "step": "torchmetrics RetrievalAUROC + RetrievalMRR, same input",
            "seconds": r["torchmetrics_seconds"],
            "ratio": f"{r['torchmetrics_seconds'] / r['seconds']:.1f}x slower",
        }
    )
    r = run_phase(me, "beyond", "--impressions", str(impressions))
    rows.append(
        {
            "step": f"BeyondAccuracyMetrics, top-10 ({impressions} impressions, histories ≤ 50)",
            "seconds": r["seconds"],
            "peak RSS GiB": r["peak_rss_gib"],
        }
    )
    ebnerd_rows(me, work, a, rows)
    print(f"machine: {machine()}")
    print(table(rows, ["step", "seconds", "rows/s", "peak RSS GiB", "ratio"]))


def ebnerd_rows(me: str, work: Path, a: argparse.Namespace, rows: list) -> None:
    """Convert EB-NeRD-shaped sets of each size, each in its own process."""
    sizes = a.ebnerd_sizes or ([20000, 80000] if a.quick else [1_000_000, 4_000_000])
    for n in sizes:
        shape = ["--ebnerd_users", str(a.ebnerd_users), "--ebnerd_articles", str(a.ebnerd_articles)]
        shape += ["--ebnerd_history", str(a.ebnerd_history)]
        run_phase(me, "ebnerd_make", "--workdir", str(work), "--impressions", str(n), *shape)
        r = run_phase(me, "ebnerd", "--workdir", str(work), "--impressions", str(n))
        rows.append(
            {
                "step": (
                    f"convert EB-NeRD-shaped parquet ({r['rows']} impressions, 2 splits, "
                    f"{a.ebnerd_users} users x {a.ebnerd_history} history clicks, {r['parquet_gb']:.2f} GB)"
                ),
                "seconds": r["seconds"],
                "rows/s": f"{r['rows_per_s']:.0f}",
                "peak RSS GiB": r["peak_rss_gib"],
            }
        )
        shutil.rmtree(work / f"ebnerd-{n}", ignore_errors=True)
        shutil.rmtree(work / f"ebnerd-{n}-mind", ignore_errors=True)


if __name__ == "__main__":
    main()
