"""GGNN before/after: ``GatedGraphEncoder`` of this checkout against the same class at another git
revision (the GGNN that re-implemented ``GatedGraphConv``'s propagation on its private layout),
measured side by side in one run, each in its own process on the same graph and seed.

    python benchmarks/ggnn_before_after.py [--before 8c92e3c] [--nodes 20000 --edges 160000]
        [--threads 2] [--repeat 5] [--rounds 3]

Rows: the full graph by ``edge_index`` and pruned to the 5 % of
nodes whose outputs are needed (``output_nodes``, GLORY's path); forward and forward+backward
medians, and the ratio after / before. The two revisions run in alternating processes,
``--rounds`` times each (before, after, before, after, ...), so that drift in the machine's load
falls on both; each cell is the median over the rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

WORKER = r"""
import json, sys, time, torch
from newsrec.nn import GatedGraphEncoder
nodes, edges, threads, repeat = map(int, sys.argv[1:5])
torch.set_num_threads(threads)
torch.manual_seed(0)
D = 400
ei = torch.randint(0, nodes, (2, edges))
x = torch.randn(nodes, D, requires_grad=True)
outputs = torch.randperm(nodes)[: nodes // 20]
ggnn = GatedGraphEncoder(D, D, 3)
cases = {
    "edge_index": lambda: ggnn(x, ei),
    "pruned (5 % outputs)": lambda: ggnn(x, ei, output_nodes=outputs)[outputs],
}
def med(fn):
    fn()
    ts = []
    for _ in range(repeat):
        t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
    return sorted(ts)[len(ts) // 2] * 1000
out = {}
for name, f in cases.items():
    with torch.no_grad():
        fwd = med(f)
    out[name] = [fwd, med(lambda: f().sum().backward())]
print(json.dumps(out))
"""


def measure(src: Path, a) -> dict:
    env = dict(os.environ, PYTHONPATH=str(src), OMP_NUM_THREADS=str(a.threads))
    args = [str(a.nodes), str(a.edges), str(a.threads), str(a.repeat)]
    res = subprocess.run([sys.executable, "-c", WORKER, *args], env=env, capture_output=True, text=True, cwd=src)
    if res.returncode:
        sys.exit(res.stderr[-2000:])
    return json.loads(res.stdout.strip().splitlines()[-1])


def median_of(results: list[dict]) -> dict:
    """Per case, the median over rounds of the [forward, forward+backward] milliseconds."""
    mid = len(results) // 2
    return {name: [sorted(r[name][k] for r in results)[mid] for k in range(2)] for name in results[0]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", default="8c92e3c", help="git revision of the 'before' GGNN")
    ap.add_argument("--nodes", type=int, default=20000)
    ap.add_argument("--edges", type=int, default=160000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3, help="alternating before/after processes per revision")
    a = ap.parse_args()
    import torch

    torch.set_num_threads(a.threads)  # what machine() reports: the workers' thread count
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "before"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-f", "--detach", str(old), a.before],
                       check=True, capture_output=True)  # fmt: skip
        try:
            runs: dict[str, list[dict]] = {"before": [], "after": []}
            for _ in range(a.rounds):
                runs["before"].append(measure(old, a))
                runs["after"].append(measure(ROOT, a))
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)], capture_output=True)
    before, after = (median_of(runs[k]) for k in ("before", "after"))
    rows = []
    for name in after:
        (bf, bs), (af, as_) = before[name], after[name]
        rows.append({"graph": name, "before fwd ms": bf, "after fwd ms": af, "before fwd+bwd ms": bs,
                     "after fwd+bwd ms": as_, "after / before (fwd+bwd)": as_ / bs})  # fmt: skip
    print(
        f"machine: {machine()}; {a.nodes} nodes / {a.edges} edges, 400-d, 3 layers; before = {a.before}; "
        f"median of {a.rounds} alternating rounds x {a.repeat} repeats"
    )
    print(table(rows, list(rows[0])))


if __name__ == "__main__":
    main()
