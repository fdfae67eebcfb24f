"""Checkpoints that appear under their final name only once completely written."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning.callbacks import Checkpoint, ModelCheckpoint

from newsrec.core.files import atomic_path

__all__ = [
    "AtomicCheckpointIO",
    "BestCheckpoint",
    "LastCheckpoint",
    "UnsafeCheckpointError",
    "find_last_checkpoint",
    "check_checkpoint_fits",
    "check_data_signature",
    "model_from_checkpoint",
    "read_checkpoint",
]


class AtomicCheckpointIO(TorchCheckpointIO):
    """Like Lightning's ``TorchCheckpointIO`` but local checkpoints are written to a temporary
    file beside the target, flushed and renamed: a crash (SIGKILL, a full disk) never leaves a
    truncated ``last.ckpt``. Remote paths (``s3://`` …) fall back to Lightning's writer.

    Checkpoints are always loaded with ``weights_only=True`` (plain tensors and containers; no
    pickled code runs). Use it with ``Trainer(plugins=[AtomicCheckpointIO()])``; the ``newsrec``
    CLI does.
    """

    def load_checkpoint(self, path, map_location: Any | None = None, weights_only: bool | None = None) -> dict:
        kwargs = {} if map_location is None else {"map_location": map_location}
        return super().load_checkpoint(path, weights_only=True, **kwargs)

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if "://" in str(path) and not str(path).startswith("file://"):
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(str(path).removeprefix("file://"))
        with atomic_path(path) as tmp:
            super().save_checkpoint(checkpoint, tmp, storage_options)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())


class BestCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` that keeps its best across a resume into another folder.

    A resumed ``newsrec fit`` logs to a new ``version_N`` folder; Lightning's ``ModelCheckpoint``
    then restores only ``best_model_path`` and forgets its score, so the first validation after
    the resume became the "best" even when it was worse. Here the best path and score are
    restored too (when that file still exists), and only a better checkpoint replaces it.
    """

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        score, path = state_dict.get("best_model_score"), state_dict.get("best_model_path")
        if not self.best_k_models and score is not None and path and os.path.isfile(path):
            self.best_model_score = score
            self.best_model_path = self.kth_best_model_path = path
            self.best_k_models = {path: score}
            self.kth_value = score


class LastCheckpoint(Checkpoint):
    """Keep ``last.ckpt`` the latest training state: after every training epoch (validation
    included), every ``every_n_train_steps`` optimiser steps when set, and when training stops
    early (``max_time``, ``max_steps``, a callback). Lightning's ``ModelCheckpoint(save_last=True)``
    with a ``monitor`` rewrites ``last.ckpt`` only when the monitored value improves, so a resume
    from it repeated epochs.

    A mid-epoch ``last.ckpt`` resumes exactly: newsrec's training loader records its epoch and
    position (``state_dict``) and every step's dropout is seeded from ``(seed, global step)``.

    Args:
        dirpath: folder of ``last.ckpt``; default: the folder of the trainer's other checkpoint
            callback (e.g. ``ModelCheckpoint``), else ``default_root_dir/checkpoints``.
        every_n_train_steps: also save every N optimiser steps (0: epoch ends only).
        filename: the file name (``last.ckpt``).
    """

    def __init__(self, dirpath: str | os.PathLike | None = None, every_n_train_steps: int = 0,
                 filename: str = "last.ckpt") -> None:  # fmt: skip
        if every_n_train_steps < 0:
            raise ValueError(f"every_n_train_steps must be >= 0, got {every_n_train_steps}")
        self.dirpath = None if dirpath is None else str(dirpath)
        self.every_n_train_steps = int(every_n_train_steps)
        self.filename = filename
        self._saved: tuple[int, str] | None = None  # (global step, where) of the last save

    @property
    def state_key(self) -> str:
        return f"LastCheckpoint[{self.filename}]"

    @property
    def path(self) -> str:
        assert self.dirpath is not None, "LastCheckpoint.path is known once the trainer is set up"
        return os.path.join(self.dirpath, self.filename)

    def _save(self, trainer, where: str) -> None:
        if trainer.sanity_checking or trainer.fast_dev_run or self._saved == (trainer.global_step, where):
            return
        if self.dirpath is None:  # resolved at the first save: the other callbacks are set up by then
            others = [c for c in trainer.checkpoint_callbacks if c is not self and getattr(c, "dirpath", None)]
            default = os.path.join(trainer.default_root_dir, "checkpoints")
            self.dirpath = trainer.strategy.broadcast(str(others[0].dirpath) if others else default)
        self._saved = (trainer.global_step, where)
        trainer.save_checkpoint(self.path)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        """Every N steps, and at the batch where training will stop (``max_steps``, or
        ``should_stop`` set by ``max_time``'s timer or a callback): saved here, the checkpoint is
        a mid-epoch state that resumes at the next batch. Saved after the loop ended, Lightning
        marks the epoch finished and a resume would skip the rest of it."""
        step, n = trainer.global_step, self.every_n_train_steps
        stopping = trainer.should_stop or (trainer.max_steps not in (None, -1) and step >= trainer.max_steps)
        if (n and step % n == 0 and step > 0) or stopping:
            self._save(trainer, "batch")

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # Lightning calls this also when max_steps ends the loop mid-epoch: that state was saved
        # at its batch end, and saving here would mark the unfinished epoch finished
        if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            self._save(trainer, "epoch")

    def on_train_end(self, trainer, pl_module) -> None:
        if self._saved is None or self._saved[0] != trainer.global_step:  # a stop not seen at a batch end
            self._save(trainer, "end")

    def state_dict(self) -> dict[str, Any]:
        return {"dirpath": self.dirpath, "every_n_train_steps": self.every_n_train_steps}


def find_last_checkpoint(*folders: str | os.PathLike, filename: str = "last.ckpt") -> Path | None:
    """The newest ``filename`` (by modification time) anywhere under ``folders``, or ``None``:
    what ``newsrec fit --ckpt_path last`` resumes from. Lightning's own ``"last"`` looks only in
    the *new* run's version folder, which a fresh invocation has just created empty."""
    found = [p for f in folders if f and Path(f).is_dir() for p in Path(f).rglob(filename) if p.is_file()]
    return max(found, key=lambda p: (p.stat().st_mtime_ns, str(p))) if found else None


class UnsafeCheckpointError(ValueError, pickle.UnpicklingError):
    """A checkpoint that holds more than plain tensors and values (refused by ``weights_only``)."""


def read_checkpoint(path: str | os.PathLike, *, mmap: bool = False) -> dict:
    """A Lightning checkpoint's content, loaded with ``weights_only=True`` (plain tensors and
    values; no pickled code runs). Every way a file can fail to be one (missing, empty,
    truncated, not a checkpoint at all, pickled objects) is a one-line error naming the file."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty: not a checkpoint (was its writing interrupted?)")
    with open(path, "rb") as f:
        head = f.read(4)
    if head != b"PK\x03\x04" and not head.startswith(b"\x80"):  # torch.save's zip, or a legacy pickle
        raise ValueError(f"{path} is not a checkpoint (not a file torch.save wrote)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        raise UnsafeCheckpointError(
            f"{path} holds more than plain tensors and values, so it is refused (weights_only=True): "
            f"only load checkpoints you trust ({str(e).splitlines()[0]})"
        ) from None
    except (RuntimeError, EOFError, OSError, IndexError, KeyError, ValueError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"{path} is not a readable checkpoint (truncated or another kind of file): {reason}") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ValueError(f"{path} is not a Lightning checkpoint (no state_dict)")
    return ckpt


def model_from_checkpoint(ckpt: dict, path: str | os.PathLike, model_class: type | None = None):
    """The model a checkpoint (:func:`read_checkpoint`) holds, built from its hyper-parameters
    and weights. Its class is the one the checkpoint names (a ``newsrec.models`` class) or
    ``model_class``; a class that does not match the checkpoint is a one-line error."""
    import importlib

    from newsrec.models.base import NewsRecModel

    hparams = dict(ckpt.get("hyper_parameters") or {})
    named = ckpt.get("newsrec_model") or hparams.get("_class_path")
    cls = model_class
    if cls is None:
        if not named:
            raise ValueError(f"{path} does not name its model class: pass model_class=… (e.g. newsrec.models.GLORY)")
        module, _, name = named.rpartition(".")
        if not module.startswith("newsrec."):
            raise ValueError(f"{path} names the class {named!r}, outside newsrec: pass model_class=… to load it")
        cls = getattr(importlib.import_module(module), name, None)
        if not (isinstance(cls, type) and issubclass(cls, NewsRecModel)):
            raise ValueError(f"{path} names {named!r}, which is not a newsrec model")
    elif named and named.rpartition(".")[2] != cls.__name__:
        raise ValueError(f"{path} holds a {named.rpartition('.')[2]} model, not a {cls.__name__}: drop model_class=…")
    try:
        model = cls(**{k: v for k, v in hparams.items() if not k.startswith("_")})
        model.load_state_dict(ckpt["state_dict"])
    except (TypeError, RuntimeError) as e:
        reason = str(e).splitlines()[0]
        raise ValueError(f"{path} does not fit {cls.__name__} (another model or other sizes): {reason}") from None
    return model


def check_data_signature(now: dict, recorded: dict, ckpt: str | os.PathLike) -> None:
    """The data's signature (``MINDDataModule.signature()``) against the one a checkpoint
    recorded at training: a different vocabulary or corpus is one error naming both, instead of
    a size-mismatch traceback or, worse, wrong word ids."""
    for key, what in (("vocabulary_crc32", "vocabulary"), ("news_ids_crc32", "corpus (news ids)")):
        if recorded and key in recorded and recorded[key] != now[key]:
            raise ValueError(
                f"the data root {now.get('root')} does not match {ckpt}: its {what} differs from the one the model "
                f"was trained with (crc32 {now[key]:08x}, expected {recorded[key]:08x}); pass the root and corpus "
                "settings of the training run"
            )


def check_checkpoint_fits(path: str | os.PathLike, model, data) -> None:
    """Before Lightning loads ``path`` into ``model``: a file that is not a readable checkpoint,
    a checkpoint of another model class, or one trained on other data (``data.signature()``) is
    one error naming the file and what differs."""
    ckpt = read_checkpoint(path, mmap=True)
    named = ckpt.get("newsrec_model") or (ckpt.get("hyper_parameters") or {}).get("_class_path")
    if named and named.rpartition(".")[2] != type(model).__qualname__:
        raise ValueError(
            f"{path} holds a {named.rpartition('.')[2]} model, but the config builds a {type(model).__name__}: use "
            "the config the checkpoint was trained with"
        )
    if hasattr(data, "signature"):
        check_data_signature(data.signature(), ckpt.get("newsrec_data") or {}, path)
    check_weights_fit(ckpt.get("state_dict") or {}, model, path)


def check_weights_fit(state_dict: dict, model, path: str | os.PathLike) -> None:
    """The checkpoint's ``state_dict`` holds exactly the model's weights and buffers, each with
    the model's shape, or one error naming the first that differs (a checkpoint of an older
    form of the model, of another configuration, or of other sizes), instead of a
    ``load_state_dict`` traceback."""
    own = model.state_dict()
    problem = None
    for name, tensor in own.items():
        saved = state_dict.get(name)
        if saved is None:
            problem = f"it has no {name}"
        elif tuple(saved.shape) != tuple(tensor.shape):
            problem = f"its {name} is {tuple(saved.shape)}, the model's {tuple(tensor.shape)}"
        if problem:
            break
    if problem is None:
        extra = sorted(set(state_dict) - set(own))
        if extra:
            problem = f"it has {extra[0]}, which the model has not" + (
                f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
            )
    if problem:
        raise ValueError(
            f"{path} does not fit {type(model).__name__} (an older form of the model, another configuration, or other "
            f"sizes): {problem}; retrain it with this version and configuration, or load it with the newsrec version "
            "and config that wrote it"
        )
