"""Lightning callbacks that make newsrec's training exact across resumes and clean under DDP.

They hold what is about the *run*, not about a model, so no model overrides a Lightning hook
to keep them working. The ``newsrec`` CLI installs :func:`training_callbacks`; a Python
``Trainer`` gets the same behaviour with ``pl.Trainer(callbacks=training_callbacks())``.
"""

from __future__ import annotations

import multiprocessing
import os
import time
import warnings

import pytorch_lightning as pl
import torch

from newsrec.training.optim import WarmupLinearDecay

__all__ = [
    "LearningRatePlanCheck",
    "ReleaseSpawnedProcessGroup",
    "ReseedEveryStep",
    "ResumeLoaderPosition",
    "TrainingThroughput",
    "release_spawned_process_group",
    "training_callbacks",
]


class ReseedEveryStep(pl.Callback):
    """Before every training batch, re-seed torch's generator from ``(seed, global step, batch
    index)``: a step's dropout then depends only on the seed and where the step is (not on what
    ran before it: creating the data iterator, a validation), so a run resumed from any
    checkpoint, mid-epoch included, reproduces the uninterrupted run exactly. The batch index
    tells apart the batches of one step under gradient accumulation.

    Args:
        seed: the base seed; ``None`` (default) reads ``PL_GLOBAL_SEED``, which
            ``seed_everything`` sets (0 when unset).
    """

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int) -> None:
        seed = self.seed if self.seed is not None else int(os.environ.get("PL_GLOBAL_SEED", "0"))
        torch.manual_seed((seed * 1_000_003 + trainer.global_step * 1_009 + batch_idx) % (2**63))


class ResumeLoaderPosition(pl.Callback):
    """Give a resumed training loader its checkpointed position. Lightning restores a stateful
    loader only when the loader is first built after the loop state is restored; the
    learning-rate plan (``estimated_stepping_batches``) builds it earlier, so Lightning would
    start a mid-epoch resume at the epoch's first batch. Loading the state at ``on_train_start``,
    before the first batch is drawn, resumes at the saved batch (loaders with
    ``load_state_dict``: :class:`~newsrec.data.batching.ResumableLoader`)."""

    def __init__(self) -> None:
        self._states: list | None = None

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        fit_loop = checkpoint.get("loops", {}).get("fit_loop", {}).get("state_dict", {})
        self._states = fit_loop.get("combined_loader") or None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        states, self._states = self._states, None
        loader = trainer.train_dataloader
        if states and len(states) == 1 and hasattr(loader, "load_state_dict"):
            loader.load_state_dict(states[0])


class LearningRatePlanCheck(pl.Callback):
    """A resumed fit keeps the learning-rate plan of its checkpoint (the
    :class:`~newsrec.training.WarmupLinearDecay` in the scheduler's state); this callback says
    so when the new run would plan another number of steps (steps past the plan run at its final
    rate, 0 for the linear decay). A checkpoint written before the plan lived in the scheduler
    (``newsrec_planned_steps``) has its plan applied here."""

    def __init__(self) -> None:
        self._legacy_plan: int | None = None

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        planned = checkpoint.get("newsrec_planned_steps")
        self._legacy_plan = int(planned) if planned is not None else None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        legacy, self._legacy_plan = self._legacy_plan, None
        estimated = trainer.estimated_stepping_batches
        for config in trainer.lr_scheduler_configs:
            for plan in getattr(config.scheduler, "lr_lambdas", ()):
                if not isinstance(plan, WarmupLinearDecay):
                    continue
                if legacy is not None and legacy != plan.total_steps:
                    warm = plan.warmup_steps / max(plan.total_steps, 1)
                    plan.total_steps, plan.warmup_steps = legacy, max(int(round(warm * legacy)), 0)
                if trainer.ckpt_path and int(estimated) != plan.total_steps:
                    warnings.warn(
                        f"the learning-rate schedule keeps the plan of {plan.total_steps} steps stored in the "
                        f"checkpoint (this run would plan {int(estimated)}): steps past the plan run at its final "
                        "rate. Start a new run (no --ckpt_path) to re-plan the schedule.",
                        UserWarning,
                        stacklevel=2,
                    )


def release_spawned_process_group() -> bool:
    """In a worker that multiprocessing started (Lightning's ``ddp_spawn``), wait for every rank
    and destroy the default process group while all of them are alive. Left to interpreter exit,
    the gloo group is torn down while a peer may have gone already, and the worker can abort
    (SIGABRT, ``terminate called without an active exception``) after its work was done, which
    fails the whole command. Returns whether a group was released; a no-op elsewhere (the main
    process, ``ddp`` workers started as subprocesses)."""
    import torch.distributed as dist

    if multiprocessing.parent_process() is None or not (dist.is_available() and dist.is_initialized()):
        return False
    dist.barrier()
    dist.destroy_process_group()
    return True


class ReleaseSpawnedProcessGroup(pl.Callback):
    """At the end of every run, in a ``ddp_spawn`` worker, leave the process group
    (:func:`release_spawned_process_group`)."""

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if trainer.world_size > 1:
            release_spawned_process_group()


class TrainingThroughput(pl.Callback):
    """Logs ``train/samples_per_s``: training samples (impressions' clicked news, each with its
    negatives) per second of this rank's training loop since the epoch began — batch loading
    included, validation runs excluded — shown in the progress bar and written to the loggers
    at every step."""

    def __init__(self) -> None:
        self._samples = 0
        self._seconds = 0.0
        self._last: float | None = None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._samples, self._seconds, self._last = 0, 0.0, time.perf_counter()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._last is not None:  # a validation inside the epoch is not training time
            self._last = time.perf_counter()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx: int
    ) -> None:
        if self._last is None:
            return
        now = time.perf_counter()
        self._seconds += now - self._last
        self._last = now
        candidates = batch.get("candidates") if hasattr(batch, "get") else None
        self._samples += len(candidates) if candidates is not None else 0
        if self._seconds > 0:
            rate = self._samples / self._seconds
            pl_module.log("train/samples_per_s", rate, prog_bar=True, on_step=True, on_epoch=False, batch_size=1)

    @property
    def samples_per_second(self) -> float:
        """The running epoch's rate so far (0 before the first batch)."""
        return self._samples / self._seconds if self._seconds > 0 else 0.0


def training_callbacks() -> list[pl.Callback]:
    """The callbacks every newsrec run wants (the CLI installs them):
    :class:`ReseedEveryStep`, :class:`ResumeLoaderPosition`, :class:`LearningRatePlanCheck`,
    :class:`ReleaseSpawnedProcessGroup` and :class:`TrainingThroughput`."""
    return [
        ReseedEveryStep(),
        ResumeLoaderPosition(),
        LearningRatePlanCheck(),
        ReleaseSpawnedProcessGroup(),
        TrainingThroughput(),
    ]
