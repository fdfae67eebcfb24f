"""The prediction files ``predict`` writes: MIND's leaderboard file and the EB-NeRD submission."""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from pytorch_lightning.callbacks import BasePredictionWriter
from torch import Tensor

from newsrec.core.files import atomic_path, atomic_write
from newsrec.training.scores import gather_predictions

__all__ = ["PredictionFileWriter", "candidate_ranks", "write_prediction_file"]


def candidate_ranks(scores: Tensor | np.ndarray) -> list[int]:
    """Rank of every candidate in file order (1 = highest score; ties keep file order)."""
    s = torch.as_tensor(scores, dtype=torch.float64)
    order = torch.sort(s, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    ranks[order] = torch.arange(1, len(s) + 1)
    return ranks.tolist()


def _ranks_of_all(scores: list[np.ndarray]) -> list[list[str]]:
    """:func:`candidate_ranks` of every impression at once (one sort), as strings."""
    if not scores:
        return []
    lengths = np.array([len(s) for s in scores], dtype=np.int64)
    flat = np.concatenate(scores) if lengths.sum() else np.zeros(0)
    segment = np.repeat(np.arange(len(scores)), lengths)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    position = np.arange(len(flat)) - np.repeat(starts, lengths)
    order = np.lexsort((position, -flat, segment))  # by impression, score descending, file order
    ranks = np.empty(len(flat), dtype=np.int64)
    ranks[order] = np.arange(len(flat)) - np.repeat(starts, lengths)  # sorted place within its impression
    text = (ranks + 1).astype(str)
    return [text[a : a + n].tolist() for a, n in zip(starts, lengths)]


def write_prediction_file(
    path: str | os.PathLike,
    impression_ids: Sequence[int] | Iterable[int],
    scores: Iterable[Tensor | np.ndarray | Sequence[float]],
    *,
    zip_archive: bool | None = None,
    member: str = "prediction.txt",
) -> None:
    """Write the MIND leaderboard file: one line per impression, ``ImpressionID [r1,r2,...]``.

    ``scores`` holds each impression's candidate scores in file order; ranks start at 1. The
    file is written atomically. If ``path`` ends in ``.zip`` (or ``zip_archive`` is True) the
    archive holds a single ``member`` file: ``prediction.txt``, as the MIND leaderboard expects,
    or ``predictions.txt`` for the EB-NeRD (RecSys Challenge 2024) submission, whose lines have
    the same form (the impression id, then the rank of every in-view article in file order).
    """
    ids = [int(i) for i in impression_ids]
    per = [np.asarray(sc.detach().cpu() if isinstance(sc, Tensor) else sc, np.float64).reshape(-1) for sc in scores]
    if len(per) != len(ids):
        raise ValueError(f"{len(ids)} impression ids but {len(per)} score lists")
    ranks = _ranks_of_all(per)
    lines = [f"{iid} [{','.join(r)}]" for iid, r in zip(ids, ranks)]
    text = "\n".join(lines) + ("\n" if lines else "")
    path = os.fspath(path)
    if zip_archive or (zip_archive is None and path.endswith(".zip")):
        with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(member, text)
    else:
        with atomic_write(path, encoding="utf-8") as f:
            f.write(text)


class PredictionFileWriter(BasePredictionWriter):
    """Writes the MIND leaderboard file (``prediction.txt`` inside a zip by default) after
    ``predict``: one line per impression, in impression-id order, ranks of candidates in file
    order. Written atomically."""

    def __init__(self, path: str = "prediction.zip", submission_path: str | None = None) -> None:
        super().__init__(write_interval="epoch")
        self.path, self.submission_path = path, submission_path

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices) -> None:
        gathered = gather_predictions(trainer, predictions)  # rank 0 alone collects every shard
        ids, scores = gathered if gathered is not None else (None, None)
        if trainer.is_global_zero:
            order = np.argsort(ids, kind="stable")
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            write_prediction_file(self.path, ids[order], [scores[i] for i in order])
            print(f"wrote {self.path} ({len(ids)} impressions)")
            if self.submission_path:  # the EB-NeRD challenge's file: predictions.txt in a zip
                Path(self.submission_path).parent.mkdir(parents=True, exist_ok=True)
                write_prediction_file(
                    self.submission_path, ids[order], [scores[i] for i in order], member="predictions.txt"
                )
                print(f"wrote {self.submission_path} (EB-NeRD submission, {len(ids)} impressions)")
        trainer.strategy.barrier("prediction file written")  # ranks leave together
