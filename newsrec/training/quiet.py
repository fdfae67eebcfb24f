"""Quiet, useful output: the dependency notices newsrec's own use of Lightning and torch would
print on every run are hidden, precisely; the number of CPU threads is one setting.

:func:`quiet_dependency_notices` runs when :mod:`newsrec.training` is imported (every model
imports it). It hides exactly these, by message and raising module, never a whole category of warnings:

- Lightning's advertisements for its cloud packages (the ``💡 Tip: … litlogger`` and
  ``… litmodels`` lines, logged at INFO on every ``Trainer``);
- torch's ``isinstance(treespec, LeafSpec)`` ``FutureWarning``, raised inside
  ``pytorch_lightning.utilities._pytree`` (Lightning's code, not the user's);
- Lightning's "Couldn't infer the batch indices" warning in ``predict``: newsrec's loaders
  give whole batches and its prediction writers key rows by impression id.

``NEWSREC_DEBUG=1`` shows them again.
"""

from __future__ import annotations

import logging
import os
import warnings

import torch

__all__ = ["THREADS_ENV", "apply_threads", "quiet_dependency_notices"]

#: the environment variable that sets torch's CPU threads for every newsrec command
THREADS_ENV = "NEWSREC_THREADS"

#: Lightning's loggers that carry the advertisements
_LIGHTNING_LOGGERS = ("pytorch_lightning.utilities.rank_zero", "lightning.pytorch.utilities.rank_zero")
_ADVERTISEMENTS = ("💡 Tip: For seamless cloud",)


class _NoAdvertisements(logging.Filter):
    """Drops Lightning's ``💡 Tip`` advertisements for litlogger / litmodels, nothing else."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.getMessage())
        return not (message.startswith(_ADVERTISEMENTS) and ("litlogger" in message or "litmodels" in message))


def quiet_dependency_notices() -> None:
    """Hide Lightning's litlogger / litmodels tips and the dependency warnings raised by
    Lightning's own code listed above (idempotent: calling it again puts the filters first
    again; a no-op with ``NEWSREC_DEBUG=1``)."""
    if os.environ.get("NEWSREC_DEBUG", "") not in ("", "0"):
        return
    for name in _LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _NoAdvertisements) for f in logger.filters):
            logger.addFilter(_NoAdvertisements())
    warnings.filterwarnings(
        "ignore",
        message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        category=FutureWarning,
        module=r"(pytorch_)?lightning(\.pytorch)?\.utilities\._pytree",
    )
    # newsrec's loaders hand Lightning whole batches (batch_size=None); its prediction writers
    # key rows by impression id, never by the batch indices Lightning cannot infer
    warnings.filterwarnings(
        "ignore",
        message=r"Couldn't infer the batch indices fetched from your dataloader",
        module=r"(pytorch_)?lightning(\.pytorch)?\.loops\.prediction_loop",
    )


def apply_threads(threads: int | str | None = None) -> int | None:
    """Set torch's intra-op CPU threads to ``threads`` (default: the ``NEWSREC_THREADS``
    environment variable; unset: torch's own default is kept). Returns the number set, or
    ``None``. A value that is not a positive integer is one clear error."""
    source = "--threads"
    if threads is None:
        threads, source = os.environ.get(THREADS_ENV) or None, THREADS_ENV
        if threads is None:
            return None
    try:
        n = int(threads)
    except (TypeError, ValueError):
        n = 0
    if n < 1:
        raise ValueError(f"{source} must be a positive number of CPU threads, got {threads!r}")
    torch.set_num_threads(n)
    return n
