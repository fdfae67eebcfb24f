"""Checkpoints that appear under their final name only once completely written."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from newsrec.core.files import atomic_path

__all__ = ["AtomicCheckpointIO"]


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
