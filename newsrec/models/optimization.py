"""The optimiser's part of :class:`~newsrec.models.NewsRecModel`: the base options ``lr``,
``warmup_fraction``, ``lr_schedule`` (a model's :attr:`base_defaults` fill the ones not given),
``weight_decay``, ``amsgrad`` and ``plm_lr``, and Lightning's ``configure_optimizers``."""

from __future__ import annotations

from newsrec.training.optim import LR_SCHEDULES, configure_adam, parameter_groups

__all__ = ["OptimizerMixin"]


class OptimizerMixin:
    """Adam with the model's schedule (:func:`~newsrec.training.configure_adam`)."""

    def _init_optimizer(
        self,
        defaults: dict,
        lr: float | None,
        warmup_fraction: float | None,
        lr_schedule: str | None,
        weight_decay: float,
        amsgrad: bool,
        plm_lr: float | None,
    ) -> None:
        given = {"lr": lr, "warmup_fraction": warmup_fraction, "lr_schedule": lr_schedule}
        self.lr, self.warmup_fraction, self.lr_schedule = (defaults[k] if v is None else v for k, v in given.items())
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        self.weight_decay, self.amsgrad, self.plm_lr = weight_decay, bool(amsgrad), plm_lr

    def configure_optimizers(self):
        """Adam with the model's schedule (:func:`~newsrec.training.configure_adam`), planned over
        the fit's ``estimated_stepping_batches``."""
        planned = self.trainer.estimated_stepping_batches if self._trainer is not None else None
        return configure_adam(
            self.parameter_groups(), lr=self.lr, weight_decay=self.weight_decay, schedule=self.lr_schedule,
            warmup_fraction=self.warmup_fraction, planned_steps=planned, amsgrad=self.amsgrad,
        )  # fmt: skip

    def parameter_groups(self) -> list[dict]:
        """One group, or two with ``plm_lr`` (:func:`~newsrec.training.parameter_groups`)."""
        return parameter_groups(self.parameters(), self.text_encoders.loaded_backbone, self.plm_lr)
