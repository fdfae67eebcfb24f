"""Behaviour and speed of this checkout against another revision, model by model, on the demo
world: a fixed-seed training epoch (``--steps`` batches), then a full validation pass, each in
its own process per revision, the revisions alternating (before, after, before, after, ...) so
that drift in the machine's load falls on both.

    python benchmarks/refactor_before_after.py [--before 7484bb8] [--after HEAD] [--steps 40]
        [--rounds 2] [--models nrms glory fum glory_transitions]

Prints, per model: the validation metrics of both revisions (they must be equal: a refactor
changes no figure), and the median seconds of the training epoch and of the validation pass,
with the ratio after / before. Each revision generates its own demo world from the same seed
(the bytes are compared too: the generator must write the same world).
"""

from __future__ import annotations

import argparse
import hashlib
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
import json, sys, time, warnings
import yaml, torch, importlib
import pytorch_lightning as pl
warnings.filterwarnings("ignore")
config, root, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
torch.set_num_threads(1)
cfg = yaml.safe_load(open(config))
module, _, name = cfg["model"]["class_path"].rpartition(".")
cls = getattr(importlib.import_module(module), name)
from newsrec.data import MINDDataModule, generate_mind
data = dict(cfg["data"]); data.pop("synthetic", None); data["root"] = root
dm = MINDDataModule(**data)
sizes = {k: getattr(dm, k) for k in cls.data_size_arguments}
pl.seed_everything(0, verbose=False)
model = cls(**cfg["model"].get("init_args", {}), **sizes)
model.connect_data(dm)
try:
    from newsrec.training import training_callbacks
    callbacks = training_callbacks()
except ImportError:
    callbacks = []
class Clock(pl.Callback):
    def __init__(self): self.t = {}
    def on_train_epoch_start(self, *a): self.t["train0"] = time.perf_counter()
    def on_train_epoch_end(self, *a): self.t["train"] = time.perf_counter() - self.t["train0"]
    def on_validation_epoch_start(self, *a): self.t["val0"] = time.perf_counter()
    def on_validation_epoch_end(self, *a): self.t["val"] = time.perf_counter() - self.t["val0"]
clock = Clock()
trainer = pl.Trainer(max_epochs=1, limit_train_batches=steps, num_sanity_val_steps=0, limit_val_batches=0,
                     logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, accelerator="cpu", callbacks=[*callbacks, clock])
trainer.fit(model, dm)
trainer.limit_val_batches = 1.0
res = trainer.validate(model, dm, verbose=False)[0]
print(json.dumps({"metrics": {k: round(float(v), 6) for k, v in res.items()}, "train_s": clock.t["train"],
                  "val_s": clock.t["val"]}))
"""


def _world(src: Path, out: Path) -> str:
    """Generate the demo world with the revision at ``src``; the digest of its files."""
    code = (
        "from newsrec.data import generate_mind; import sys; "
        "generate_mind(sys.argv[1], num_users=1500, num_news=1500, seed=0)"
    )
    env = {**os.environ, "PYTHONPATH": str(src), "NEWSREC_PROGRESS": "0"}
    subprocess.run([sys.executable, "-c", code, str(out)], check=True, env=env, cwd=src)
    digest = hashlib.sha256()
    for f in sorted(p for p in out.rglob("*") if p.is_file() and "processed" not in p.parts):
        digest.update(f.relative_to(out).as_posix().encode() + f.read_bytes())
    return digest.hexdigest()[:16]


def _run(src: Path, config: Path, root: Path, steps: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src), "NEWSREC_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", WORKER, str(config), str(root), str(steps)],
        capture_output=True, text=True, env=env, cwd=src,
    )  # fmt: skip
    if out.returncode:
        raise SystemExit(f"{src}: {config.name} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--before", default="7484bb8")
    p.add_argument("--after", default=None, help="a revision (default: this working tree)")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--models", nargs="+", default=["nrms", "glory", "fum", "glory_transitions"])
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="before-after-"))
    revisions = {"before": tmp / "before", "after": ROOT if args.after is None else tmp / "after"}
    for name, rev in (("before", args.before), ("after", args.after)):
        if rev is not None:
            subprocess.run(["git", "worktree", "add", "--detach", str(revisions[name]), rev], cwd=ROOT, check=True,
                           capture_output=True)  # fmt: skip
    try:
        worlds = {name: tmp / f"world-{name}" for name in revisions}
        digests = {name: _world(src, worlds[name]) for name, src in revisions.items()}
        print(f"{machine()}; demo world digest before {digests['before']}, after {digests['after']}")
        rows = {}
        for model in args.models:
            config = ROOT / "configs" / f"{model}_demo.yaml"
            runs: dict[str, list[dict]] = {"before": [], "after": []}
            for _ in range(args.rounds):
                for name, src in revisions.items():
                    runs[name].append(_run(src, config, worlds[name], args.steps))
            for name in revisions:
                m = runs[name][0]["metrics"]
                med = {k: sorted(r[k] for r in runs[name])[len(runs[name]) // 2] for k in ("train_s", "val_s")}
                rows[f"{model} {name}"] = {
                    "run": f"{model} {name}", "auc": f"{m['val/auc']:.6f}", "mrr": f"{m['val/mrr']:.6f}",
                    "ndcg@10": f"{m['val/ndcg@10']:.6f}", "train s": med["train_s"], "val s": med["val_s"],
                }  # fmt: skip
            b, a = rows[f"{model} before"], rows[f"{model} after"]
            rows[f"{model} after/before"] = {
                "run": f"{model} after/before",
                "train s": a["train s"] / b["train s"],
                "val s": a["val s"] / b["val s"],
            }
        print(table(list(rows.values()), ["run", "auc", "mrr", "ndcg@10", "train s", "val s"]))
    finally:
        for path in revisions.values():
            if path != ROOT:
                subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=ROOT, capture_output=True)


if __name__ == "__main__":
    main()
