"""Where the time of one model goes: the top operators of a training step and of the
encode-every-news pass, under torch.profiler, at the papers' sizes.

    python benchmarks/profile_model.py --model FUM [--device cuda] [--bf16] [--users 5000 --news 5000]
        [--knob popularity_sigma=2.0 ...] [--threads 2] [--rows 15] [--sort total|self]

The world is synthetic (generated once under --workdir, shared with ``efficiency.py``; ``--knob``
sets any other field of ``SyntheticConfig``). Operator tables are sorted by total device time
(CUDA) or CPU time, or with ``--sort self`` by the operators' own time (the time of nested
operators excluded: the rows then add up to the step).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, parse_knob  # noqa: E402
from efficiency import build, to  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="FUM")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--users", type=int, default=5000)
    ap.add_argument("--news", type=int, default=5000)
    ap.add_argument("--rows", type=int, default=15)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--knob", action="append", default=[], help="SyntheticConfig field=value")
    ap.add_argument("--sort", choices=["total", "self"], default="total")
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "newsrec-efficiency"))
    a = ap.parse_args()
    os.environ.setdefault("NEWSREC_PROGRESS", "0")
    if a.threads:
        torch.set_num_threads(a.threads)
    from newsrec.data import MINDDataModule, generate_mind

    knobs = dict(parse_knob(kv) for kv in a.knob)
    tag = "-".join(f"{k}={v}" for k, v in sorted(knobs.items()))
    root = Path(a.workdir) / f"world-{a.users}-{a.news}{'-' + tag if tag else ''}"
    if not (root / "dev" / "behaviors.tsv").exists():
        generate_mind(root, num_users=a.users, num_news=a.news, seed=0, **{"word_dim": 300, **knobs})
    dm = MINDDataModule(str(root), batch_size=32)
    model = build(a.model, dm).to(a.device)
    model.log = lambda *args, **kwargs: None  # no Trainer attached
    dm.configure(model.data_requirements())
    autocast = torch.autocast(device_type=a.device, dtype=torch.bfloat16, enabled=a.bf16)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if a.device == "cuda" else [])
    sort = ("cuda" if a.device == "cuda" else "cpu") + "_time_total"
    if a.sort == "self":
        sort = "self_" + sort
    it = iter(dm.train_dataloader())
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    if getattr(model, "neighbor_cache_every", 0):  # approximate GLORY: fill the cache as fit() does
        model.eval()
        with torch.no_grad():
            _, model._neighbor_cache = model.encode_all_news(dm.news_dataloader(1024))

    def step() -> None:
        model.train()
        with autocast:
            loss = model.training_step(to(next(it), a.device), 0)
        loss.backward()
        opt.step()
        opt.zero_grad()

    def encode() -> None:
        model.eval()
        with torch.inference_mode(), autocast:
            for chunk in dm.news_dataloader(1024):
                model.encode_history_news({k: v.to(a.device) for k, v in chunk["news"].items()})

    print(
        f"machine: {machine()}; device {a.device}{' bf16' if a.bf16 else ''}; model {a.model}; "
        f"world {a.users} users, {a.news} news, knobs {knobs or 'default'}"
    )
    for name, fn, reps in (("training step", step, 3), ("encode every news", encode, 1)):
        fn()  # warm-up
        if a.device == "cuda":
            torch.cuda.synchronize()
        with profile(activities=activities) as prof:
            for _ in range(reps):
                fn()
            if a.device == "cuda":
                torch.cuda.synchronize()
        print(f"\n{name} (x{reps}):")
        print(prof.key_averages().table(sort_by=sort, row_limit=a.rows, max_name_column_width=60))


if __name__ == "__main__":
    main()
