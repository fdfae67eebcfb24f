"""Per-impression scores out: one row per candidate (impression id, user id, news id, position,
score and, where the split has them, the label), as a parquet file written atomically.

What comparisons, significance tests and error analysis need (the leaderboard file holds only
ranks): ``newsrec predict … --scores_file scores.parquet``, or from Python
:func:`predict_scores` (a ``pyarrow.Table``) and :func:`write_scores_file`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pytorch_lightning.callbacks import BasePredictionWriter

from newsrec.core.files import atomic_path

__all__ = [
    "SCORE_COLUMNS",
    "ScoresFileWriter",
    "gather_predictions",
    "predict_scores",
    "scores_table",
    "write_scores_file",
]

#: the columns of a scores file, in order (``label`` only where the split has labels)
SCORE_COLUMNS = ("impression_id", "user_id", "news_id", "position", "score", "label")


def gather_predictions(trainer, predictions) -> tuple[np.ndarray, list[np.ndarray]] | None:
    """``(impression_ids [I], per-impression candidate scores)`` of a ``predict`` run: the
    outputs of :meth:`~newsrec.models.evaluation.EvaluationMixin.predict_step`, gathered from
    every rank on rank 0 (other ranks get ``None``)."""
    outs = predictions[0] if predictions and isinstance(predictions[0], list) else predictions
    ids = np.concatenate([o["impression_ids"] for o in outs]) if outs else np.zeros(0, np.int64)
    scores = [s for o in outs for s in o["scores"]]
    if trainer is not None and trainer.world_size > 1:  # every rank predicted a shard
        import torch.distributed as dist

        shards = [None] * trainer.world_size if trainer.is_global_zero else None
        dist.gather_object((ids, scores), shards, dst=0)
        if not trainer.is_global_zero:
            return None
        ids = np.concatenate([sh[0] for sh in shards])
        scores = [x for sh in shards for x in sh[1]]
    return ids, scores


def scores_table(
    impression_ids: Sequence[int] | np.ndarray, scores: Sequence[np.ndarray], behaviors, news_ids: Sequence[str]
):
    """The scores of a ``predict`` run joined with the split they scored, one row per candidate,
    impressions in file order, candidates in file order.

    Args:
        impression_ids: ``[I]``, the impressions scored (any order).
        scores: per impression, its candidates' scores in file order (``[C_i]``).
        behaviors: the split (a :class:`~newsrec.data.Behaviors`: ``impression_ids``,
            ``users``, ``user_ids``, ``candidates``, ``candidate_offsets``, ``labels``).
        news_ids: the corpus's news id of every row (``corpus.news_ids``).

    Returns:
        A ``pyarrow.Table`` with ``impression_id`` int64, ``user_id`` string, ``news_id``
        string, ``position`` int32 (the candidate's place in its impression, from 0),
        ``score`` float32 and, where the split has labels, ``label`` int8. Every impression of
        the split must have been scored, with its number of candidates (else ``ValueError``).
    """
    import pyarrow as pa

    ids = np.asarray(impression_ids, dtype=np.int64)
    wanted = np.asarray(behaviors.impression_ids, dtype=np.int64)
    order = np.argsort(ids, kind="stable")
    where = np.searchsorted(ids[order], wanted)
    found = np.zeros(len(wanted), dtype=bool)
    if len(ids):
        found = (where < len(ids)) & (ids[order][np.minimum(where, len(ids) - 1)] == wanted)
    if len(ids) != len(wanted) or not found.all():
        missing = wanted[~found][:5].tolist()
        raise ValueError(
            f"the predictions cover {len(ids)} impressions but the split has {len(wanted)}"
            + (f" (not scored: {missing}…)" if missing else "")
            + ": score the whole split (no limit_predict_batches) before writing a scores file"
        )
    rows = order[where]  # prediction index of every impression, in file order
    counts = np.diff(np.asarray(behaviors.candidate_offsets, dtype=np.int64))
    per = [np.asarray(scores[r], dtype=np.float32).reshape(-1) for r in rows]
    lengths = np.array([len(s) for s in per], dtype=np.int64)
    if not np.array_equal(lengths, counts):
        bad = int(np.flatnonzero(lengths != counts)[0])
        raise ValueError(
            f"impression {int(wanted[bad])} has {counts[bad]} candidates but {lengths[bad]} scores: "
            "the predictions are not of this split"
        )
    score = np.concatenate(per) if per else np.zeros(0, np.float32)
    starts = np.repeat(np.asarray(behaviors.candidate_offsets[:-1], dtype=np.int64), counts)
    position = (np.arange(len(score), dtype=np.int64) - starts).astype(np.int32)
    user_ids = np.asarray(behaviors.user_ids, dtype=object)
    news = np.asarray(news_ids, dtype=object)
    columns = {
        "impression_id": pa.array(np.repeat(wanted, counts), pa.int64()),
        "user_id": pa.array(user_ids[np.asarray(behaviors.users)][np.repeat(np.arange(len(wanted)), counts)]
                            if len(wanted) else [], pa.string()),
        "news_id": pa.array(news[np.asarray(behaviors.candidates, dtype=np.int64)] if len(score) else [], pa.string()),
        "position": pa.array(position, pa.int32()),
        "score": pa.array(score, pa.float32()),
    }  # fmt: skip
    if behaviors.has_labels:
        columns["label"] = pa.array(np.asarray(behaviors.labels, dtype=np.int8), pa.int8())
    return pa.table(columns)


def write_scores_file(path: str | os.PathLike, table) -> Path:
    """Write a scores table (:func:`scores_table`) as parquet, atomically (the file appears
    under ``path`` only once complete). Returns the path."""
    import pyarrow.parquet as pq

    path = Path(path)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return path


def predict_scores(model, datamodule, *, trainer=None, path: str | os.PathLike | None = None):
    """Score every impression of the data module's predict split (``data.predict_split``,
    default ``dev``) with ``model`` and return the scores table (:func:`scores_table`);
    ``path``: also write it there (:func:`write_scores_file`).

    ``trainer``: the ``pl.Trainer`` to run ``predict`` with (default: a quiet one-device one
    without logger or progress bar). In a distributed run, rank 0 returns the table and every
    other rank ``None``. The model should be connected to the data
    (``model.connect_data(datamodule, stage="predict")``); it is connected here if not.
    """
    import pytorch_lightning as pl

    if getattr(model, "_inputs", None) is None and hasattr(model, "connect_data"):
        model.connect_data(datamodule, stage="predict")
    if trainer is None:
        trainer = pl.Trainer(devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                             enable_checkpointing=False)  # fmt: skip
    predictions = trainer.predict(model, datamodule=datamodule, return_predictions=True)
    gathered = gather_predictions(trainer, predictions)
    if gathered is None:  # another rank of a distributed run: rank 0 holds the table
        return None
    ids, scores = gathered
    split = datamodule.splits["predict"]
    table = scores_table(ids, scores, datamodule.behaviors(split), datamodule.corpus.news_ids)
    if path is not None:
        write_scores_file(path, table)
    return table


class ScoresFileWriter(BasePredictionWriter):
    """After ``predict``: the scores file of the predict split (:func:`scores_table`), written
    atomically on rank 0 (``newsrec predict --scores_file PATH`` installs it)."""

    def __init__(self, path: str | os.PathLike = "scores.parquet") -> None:
        super().__init__(write_interval="epoch")
        self.path = path

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices) -> None:
        dm = trainer.datamodule  # checked on every rank, before the gather, so none waits alone
        if dm is None or not hasattr(dm, "behaviors"):
            raise ValueError("ScoresFileWriter joins ids from the data: run trainer.predict(model, datamodule=dm)")
        gathered = gather_predictions(trainer, predictions)
        if gathered is not None:
            split = dm.splits["predict"]
            table = scores_table(*gathered, dm.behaviors(split), dm.corpus.news_ids)
            write_scores_file(self.path, table)
            print(f"wrote {self.path} ({table.num_rows} candidates of {len(gathered[0])} impressions, split {split!r})")
        trainer.strategy.barrier("scores file written")
