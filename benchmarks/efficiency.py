"""Training and inference speed of NRMS, GLORY and FUM at the papers' sizes, side by side with
FUM's Table 2 (seconds per 1k samples / impressions), plus the share of step time spent on data
and the achieved FLOP/s against a plain matmul measured in the same run.

    python benchmarks/efficiency.py [--quick] [--steps 8] [--impressions 512] [--threads 2]
        [--device cpu|cuda] [--bf16] [--workers 0] [--pin_memory auto|on|off] [--eval_batch_size 32]
        [--length_buckets N] [--users 50000 --news 50000]
        [--knob popularity_sigma=2.0 ...] [--models NRMS GLORY FUM ...]

The world is synthetic (MIND-small-sized by default, generated once under --workdir; ``--knob``
sets any other field of ``SyntheticConfig``). ``--impressions 0`` evaluates every dev
impression, so the encode-every-news pass is amortised as in a real evaluation. For GLORY the
table also gives the mean number of news in a user's sampled subgraph and of distinct news
encoded per training batch (what the exact mode's cost scales with). "train samples/s at
matmul's FLOP/s" is the ceiling a training step's FLOPs allow: the rate if every FLOP of the
step ran as fast as the large matmul does.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).parent))
from _common import data_sizes, machine, parse_knob, table  # noqa: E402

PAPER = {"NRMS": (11.39, 2.16), "FUM": (13.21, 2.75)}  # FUM's Table 2, seconds per 1k samples


def matmul_flops(device: str, bf16: bool = False) -> float:
    """FLOP/s of a square matmul in the dtype the models run in (the machine's practical peak)."""
    n = 8192 if device == "cuda" else 2048
    dtype = torch.bfloat16 if bf16 else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    reps = 10
    if device == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    if device == "cuda":
        torch.cuda.synchronize()
    return 2 * n**3 * reps / (time.perf_counter() - t)


def build(name: str, dm, length_buckets: int | None = None):
    from newsrec.models import FUM, GLORY, NRMS

    sizes = dict(length_buckets=length_buckets, **data_sizes(dm), word_dim=300)
    if name == "NRMS":
        return NRMS(**sizes)
    if name == "GLORY":
        return GLORY(**sizes)
    if name == "GLORY (sampled edges)":
        return GLORY(**sizes, graph_edges="sampled")
    if name == "GLORY (approximate)":
        return GLORY(**sizes, graph_edges="sampled", neighbor_cache_every=50)
    if name == "GLORY (transitions)":  # beyond the paper: configs/glory_transitions_demo.yaml's additions
        return GLORY(**sizes, graph_score=True, user_recency=True)
    if name == "GLORY (sampled edges, transitions)":
        return GLORY(**sizes, graph_edges="sampled", graph_score=True, user_recency=True)
    if name == "FUM":
        return FUM(**sizes)
    if name == "FUM (MHSA)":  # FUM's Figure 4: standard self-attention as the fine-grained encoder
        return FUM(**sizes, fine_encoder="mhsa")
    raise ValueError(f"unknown model {name!r}; choose from {MODELS}")


MODELS = [
    "NRMS",
    "GLORY",
    "GLORY (sampled edges)",
    "GLORY (approximate)",
    "FUM",
    "FUM (MHSA)",
    "GLORY (transitions)",
    "GLORY (sampled edges, transitions)",
]


def to(batch, device):
    """The batch (a :class:`~newsrec.core.NewsBatch`) on ``device``; asynchronous copies where
    the batch is pinned (as Lightning moves batches)."""
    return batch.to(device, non_blocking=True)


def measure(
    name: str, dm, steps: int, impressions: int, device: str, bf16: bool, length_buckets: int | None = None
) -> dict:
    """Train ``steps`` steps (after a warm-up) and evaluate ``impressions`` dev impressions
    (0 = all); times in seconds."""
    model = build(name, dm, length_buckets).to(device)
    dm.configure(model.data_requirements())
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    it = iter(dm.train_dataloader())
    autocast = torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16)

    def step(batch):
        with autocast:
            loss = model.training_step(batch, 0)
        loss.backward()
        opt.step()
        opt.zero_grad()

    model.log = lambda *a, **k: None  # no Trainer attached
    if getattr(model, "neighbor_cache_every", 0):
        model.eval()
        with torch.no_grad():
            model._neighbor_cache = model.encode_all_news(dm.news_dataloader(1024)).history
    model.train()
    step(to(next(it), device))  # warm-up
    from newsrec.nn import GatedGraphConvolution

    # count FLOPs with the GGNN's gather + index_add aggregation: FlopCounterMode would count
    # the sparse product of the CPU path as a dense one
    sparse, GatedGraphConvolution.sparse_aggregation_on_cpu = GatedGraphConvolution.sparse_aggregation_on_cpu, False
    try:
        with FlopCounterMode(display=False) as counter:
            counted = to(next(it), device)
            step(counted)
    finally:
        GatedGraphConvolution.sparse_aggregation_on_cpu = sparse
    flops_per_step = counter.get_total_flops()
    data_t = compute_t = wait_t = 0.0
    samples = 0
    subgraph_nodes, distinct_news = [], []
    for _ in range(steps):
        t = time.perf_counter()
        raw = next(it)
        wait_t += time.perf_counter() - t
        batch = to(raw, device)
        data_t += time.perf_counter() - t
        t = time.perf_counter()
        step(batch)
        if device == "cuda":
            torch.cuda.synchronize()
        compute_t += time.perf_counter() - t
        samples += len(batch["candidates"])
        if "subgraph" in raw:
            subgraph_nodes.append(raw["subgraph"].num_nodes / len(raw["candidates"]))
            distinct_news.append(len(raw["news_rows"]))
    # inference: encode every news once, then whole impressions
    model.eval()
    t = time.perf_counter()
    with torch.inference_mode(), autocast:
        cache = model.encode_all_news(dm.news_dataloader(1024))
        encode_t = time.perf_counter() - t
        done = 0
        with model.cached_news(cache):
            for batch in dm.val_dataloader():
                model(to(batch, device))
                done += len(batch["candidates"])
                if impressions and done >= impressions:
                    break
    if device == "cuda":
        torch.cuda.synchronize()
    infer_t = time.perf_counter() - t
    return {
        "model": name,
        "train_s_per_1k": 1000 * (data_t + compute_t) / samples,
        "data_share": data_t / (data_t + compute_t),
        "wait_share": wait_t / (data_t + compute_t),
        "infer_s_per_1k": 1000 * infer_t / done,
        "score_s_per_1k": 1000 * (infer_t - encode_t) / done,
        "encode_all_news_s": encode_t,
        "flops_per_s": flops_per_step * steps / compute_t,
        "flops_per_sample": flops_per_step / len(counted["candidates"]),
        "subgraph_nodes": float(np.mean(subgraph_nodes)) if subgraph_nodes else None,
        "distinct_news": float(np.mean(distinct_news)) if distinct_news else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--users", type=int, default=50000)
    ap.add_argument("--news", type=int, default=50000)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--impressions", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast (training and inference)")
    ap.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    ap.add_argument(
        "--length_buckets", type=int, default=None, help="text length groups (default: 8 CPU, 1 GPU; 0: no cut)"
    )
    ap.add_argument(
        "--pin_memory", choices=["auto", "on", "off"], default="auto", help="pinned batches (auto: on with CUDA)"
    )
    ap.add_argument("--eval_batch_size", type=int, default=32, help="impressions per evaluation batch")
    ap.add_argument("--history_length", type=int, default=50, help="L_his (FUM's sequence: 32 tokens per click)")
    ap.add_argument("--knob", action="append", default=[], help="SyntheticConfig field=value")
    ap.add_argument("--models", nargs="+", default=MODELS[:5], choices=MODELS)
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "newsrec-efficiency"))
    a = ap.parse_args()
    os.environ.setdefault("NEWSREC_PROGRESS", "0")
    torch.set_num_threads(a.threads)
    if a.quick:
        a.users, a.news, a.steps, a.impressions = 1000, 1000, 2, 64
    from newsrec.data import MINDDataModule, generate_mind

    knobs = dict(parse_knob(kv) for kv in a.knob)
    tag = "-".join(f"{k}={v}" for k, v in sorted(knobs.items()))
    root = Path(a.workdir) / f"world-{a.users}-{a.news}{'-' + tag if tag else ''}"
    if not (root / "dev" / "behaviors.tsv").exists():
        generate_mind(root, num_users=a.users, num_news=a.news, seed=0, **{"word_dim": 300, **knobs})
    dm = MINDDataModule(
        str(root),
        batch_size=32,
        eval_batch_size=a.eval_batch_size,
        num_workers=a.workers,
        pin_memory={"auto": "auto", "on": True, "off": False}[a.pin_memory],
        history_length=a.history_length,
    )
    peak = matmul_flops(a.device, a.bf16)
    rows = []
    for name in a.models:
        r = measure(name, dm, a.steps, a.impressions, a.device, a.bf16, a.length_buckets)
        paper = PAPER.get(name, (None, None))
        rows.append(
            {
                "model": name,
                "train s / 1k samples": r["train_s_per_1k"],
                "paper train": paper[0],
                "infer s / 1k impressions": r["infer_s_per_1k"],
                "paper infer": paper[1],
                "of which scoring": r["score_s_per_1k"],
                "data share of a step": f"{100 * r['data_share']:.1f}%",
                "of which waiting for the loader": f"{100 * r['wait_share']:.1f}%",
                "encode all news s": r["encode_all_news_s"],
                "model FLOP/s vs matmul": f"{100 * r['flops_per_s'] / peak:.0f}%",
                "train samples/s at matmul's FLOP/s": peak / r["flops_per_sample"],
                "news per user subgraph": r["subgraph_nodes"],
                "distinct news per batch": r["distinct_news"],
            }
        )
    print(f"machine: {machine()}; device {a.device}{' bf16' if a.bf16 else ''}; matmul {peak / 1e9:.1f} GFLOP/s")
    print(
        f"world: {a.users} users, {a.news} news, knobs {knobs or 'default'}; batch 32, 1 + 4 candidates "
        f"(evaluation: {a.eval_batch_size} impressions); history {a.history_length}; "
        f"{a.steps} steps, {a.impressions or 'all'} impressions; {a.workers} DataLoader workers, "
        f"pinned memory {dm._pin()}; text length groups {'default' if a.length_buckets is None else a.length_buckets}"
    )
    print(table(rows, list(rows[0])))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
