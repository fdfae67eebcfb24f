"""FIM's evaluation memory: peak memory and time of scoring one evaluation batch at the paper's
sizes (50 clicks × 30 words, word_dim 300, 150 filters × 3 levels, 3-D CNN 32/16), for several
chunk budgets, each in a fresh process (so the peak is the chunk's own).

    python benchmarks/fim_memory.py [--impressions 16] [--candidates 50] [--budgets 64 256 1024]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import emit, machine, run_phase, table  # noqa: E402


def phase(impressions: int, candidates: int, budget: float) -> None:
    import torch

    from newsrec.core import NewsBatch
    from newsrec.models import FIM

    torch.manual_seed(0)
    words, clicks, vocab = 30, 50, 5000
    model = FIM(num_words=vocab, chunk_megabytes=budget).eval()
    n = impressions * (clicks + candidates) + 1
    title = torch.randint(1, vocab, (n, words))
    title[0] = 0
    hist = torch.arange(1, impressions * clicks + 1).view(impressions, clicks)
    cands = torch.arange(impressions * clicks + 1, n).view(impressions, candidates)
    batch = NewsBatch(
        news={"title": title}, news_rows=torch.arange(n), history=hist,
        history_mask=torch.ones_like(hist, dtype=torch.bool), candidates=cands,
        candidate_mask=torch.ones_like(cands, dtype=torch.bool), labels=torch.zeros_like(cands),
        user_index=torch.arange(impressions), impression_ids=torch.arange(impressions), rows=torch.arange(impressions),
    )  # fmt: skip
    with torch.inference_mode():
        t = time.perf_counter()
        model(batch)
        seconds = time.perf_counter() - t
    emit({"budget_mb": budget, "pairs_per_chunk": model.pairs_per_chunk(clicks, words), "seconds": seconds,
          "impressions": impressions, "candidates": candidates})  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--phase", help="internal: run one measurement (eval) in this process")
    ap.add_argument("--impressions", type=int, default=16)
    ap.add_argument("--candidates", type=int, default=50)
    ap.add_argument("--budgets", type=float, nargs="+", default=[64, 256, 1024])
    ap.add_argument("--budget", type=float, default=256)
    a = ap.parse_args()
    if a.phase:
        return phase(a.impressions, a.candidates, a.budget)
    rows = []
    for budget in a.budgets:
        r = run_phase(__file__, "eval", "--impressions", str(a.impressions), "--candidates", str(a.candidates),
                      "--budget", str(budget))  # fmt: skip
        pairs = r["impressions"] * r["candidates"]
        rows.append({"chunk budget MB": budget, "pairs per chunk": r["pairs_per_chunk"],
                     "peak RSS GiB": r["peak_rss_gib"], "s / 1k pairs": r["seconds"] / pairs * 1000})  # fmt: skip
    print(f"machine: {machine()}")
    print(f"FIM at the paper's sizes, 50 clicks × 30 words, {a.impressions} impressions × {a.candidates} candidates")
    print(table(rows, ["chunk budget MB", "pairs per chunk", "peak RSS GiB", "s / 1k pairs"]))


if __name__ == "__main__":
    main()
