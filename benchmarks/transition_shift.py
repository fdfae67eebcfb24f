"""Does the click graph tell clicked from shown-but-not-clicked candidates as well on dev as in
training? For MIND-format roots (synthetic worlds included), the share of positive and of
negative candidates with a transition to or from the user's last click, their mean
``log(1 + n(last -> candidate))`` and exposure, over training batches (with the training
features' leave-the-user's-future-out subtraction) and over dev batches (#49: why the graph score
loses on sparse worlds).

    python benchmarks/transition_shift.py ROOT [ROOT ...] [--batches 60] [--recent 10]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import table  # noqa: E402


def shift(root: str, batches: int, recent: int) -> list[dict]:
    import torch

    from newsrec.core import DataRequirements
    from newsrec.data import MINDDataModule

    dm = MINDDataModule(root=root, batch_size=64, eval_batch_size=64)
    dm.configure(DataRequirements(transitions=recent))
    rows = []
    for split, loader in (("train", dm.train_dataloader()), ("dev", dm.val_dataloader())):
        feats = {1: [], 0: []}
        for i, batch in enumerate(loader):
            if i >= batches:
                break
            last = batch.transition_features[..., 0, :]  # [B, C, 5]: the last click's pair features
            for label in (1, 0):
                feats[label].append(last[(batch.labels == label) & batch.candidate_mask])
        row = {"root": Path(root).name, "split": split}
        for label, name in ((1, "pos"), (0, "neg")):
            x = torch.cat(feats[label])
            row[f"edge share {name}"] = f"{((x[:, 0] > 0) | (x[:, 2] > 0)).float().mean().item():.3f}"
            row[f"log1p fwd {name}"] = f"{x[:, 0].mean().item():.3f}"
            row[f"exposure {name}"] = f"{x[:, 4].mean().item():.2f}"
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("roots", nargs="+")
    ap.add_argument("--batches", type=int, default=60)
    ap.add_argument("--recent", type=int, default=10)
    a = ap.parse_args()
    rows = [row for root in a.roots for row in shift(root, a.batches, a.recent)]
    print(table(rows, list(rows[0])))


if __name__ == "__main__":
    main()
