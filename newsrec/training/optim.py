"""The optimiser and learning-rate schedule every newsrec model trains with.

:func:`configure_adam` is what :meth:`NewsRecModel.configure_optimizers
<newsrec.models.NewsRecModel.configure_optimizers>` returns: Adam over the model's parameter
groups and, for ``"linear"`` (warm-up then linear decay) and ``"warmup_constant"`` (warm-up then
constant: the official GLORY code), a per-step :class:`WarmupLinearDecay` schedule. The schedule is a
callable object, so its plan (total and warm-up steps) is part of the scheduler's
``state_dict``: a resumed fit restores the plan with the scheduler and keeps it even when the
new run would plan another number of steps (:class:`~newsrec.training.LearningRatePlanCheck`
says so).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable

import torch
from torch import nn

__all__ = ["LR_SCHEDULES", "WarmupLinearDecay", "configure_adam", "parameter_groups"]

#: the schedules :func:`configure_adam` knows
LR_SCHEDULES = ("linear", "constant", "warmup_constant")


class WarmupLinearDecay:
    r"""The learning-rate factor of step :math:`t` for ``torch.optim.lr_scheduler.LambdaLR``:
    :math:`(t + 1) / W` for :math:`t < W` (linear warm-up), then
    :math:`\max(0, (T - t) / \max(T - W, 1))` (linear decay to zero at :math:`T`), or 1 with
    ``decay=False`` (warm-up then constant, as the official GLORY code's ``LambdaLR``).

    A plain object with two integers, so ``LambdaLR.state_dict`` stores it and a resumed fit
    gets the plan back (a function or lambda would be left out).

    Args:
        total_steps: ``T``, the planned optimiser steps.
        warmup_steps: ``W``.
        decay: decay linearly after the warm-up (``False``: stay at 1).
    """

    def __init__(self, total_steps: int, warmup_steps: int, decay: bool = True) -> None:
        self.total_steps, self.warmup_steps, self.decay = int(total_steps), int(warmup_steps), bool(decay)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if not getattr(self, "decay", True):  # a plan saved before ``decay`` existed decays
            return 1.0
        return max(0.0, (self.total_steps - step) / max(self.total_steps - self.warmup_steps, 1))


def configure_adam(
    parameter_groups: Iterable[dict],
    *,
    lr: float,
    weight_decay: float = 0.0,
    schedule: str = "linear",
    warmup_fraction: float = 0.1,
    planned_steps: float | None = None,
    amsgrad: bool = False,
) -> torch.optim.Optimizer | dict:
    """Adam, and for ``schedule="linear"`` a per-step warm-up + decay over ``planned_steps``.

    Args:
        parameter_groups: the optimiser's parameter groups (a group may carry its own ``lr``).
        lr: Adam's learning rate.
        weight_decay: Adam's weight decay.
        schedule: ``"linear"`` (warm-up, then linear decay), ``"constant"`` (no warm-up) or
            ``"warmup_constant"`` (warm-up, then constant).
        warmup_fraction: the share of the planned steps spent warming up.
        planned_steps: the fit's optimiser steps (``trainer.estimated_stepping_batches``);
            unknown or infinite falls back to a constant rate, with a warning.
        amsgrad: Adam's AMSGrad variant (the maximum of past second moments), as the official
            KRED and HieRec codes train.

    Returns:
        What Lightning's ``configure_optimizers`` returns: the optimiser, or
        ``{"optimizer": ..., "lr_scheduler": {"scheduler": LambdaLR, "interval": "step"}}``.
    """
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {schedule!r}")
    optimizer = torch.optim.Adam(list(parameter_groups), lr=lr, weight_decay=weight_decay, amsgrad=amsgrad)
    if schedule == "constant":
        return optimizer
    if planned_steps is None or not math.isfinite(planned_steps) or planned_steps <= 0:
        warnings.warn("unknown number of training steps: using a constant learning rate", stacklevel=2)
        return optimizer
    total = int(planned_steps)
    plan = WarmupLinearDecay(total, max(int(round(warmup_fraction * total)), 0), decay=schedule == "linear")
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, plan)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def parameter_groups(
    parameters: Iterable[nn.Parameter], submodule: nn.Module | None = None, submodule_lr: float | None = None
) -> list[dict]:
    """The optimiser's parameter groups: one, or, with ``submodule`` and ``submodule_lr``, every
    parameter but ``submodule``'s at the optimiser's rate and ``submodule``'s at
    ``submodule_lr`` (a PLM fine-tuned at a smaller rate than the layers trained from scratch)."""
    params = list(parameters)
    if submodule_lr is None or submodule is None:
        return [{"params": params}]
    inner = {id(p) for p in submodule.parameters()}
    return [
        {"params": [p for p in params if id(p) not in inner]},
        {"params": [p for p in params if id(p) in inner], "lr": submodule_lr},
    ]
