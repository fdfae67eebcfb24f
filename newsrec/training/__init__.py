"""What a training run needs besides the model: the optimiser and schedule, and the callbacks
that make resumes exact and DDP teardown clean (:func:`training_callbacks`)."""

from newsrec.training.callbacks import (
    LearningRatePlanCheck,
    ReleaseSpawnedProcessGroup,
    ReseedEveryStep,
    ResumeLoaderPosition,
    release_spawned_process_group,
    training_callbacks,
)
from newsrec.training.optim import LR_SCHEDULES, WarmupLinearDecay, configure_adam, parameter_groups
from newsrec.training.prediction import PredictionFileWriter, candidate_ranks, write_prediction_file

__all__ = [
    "LR_SCHEDULES",
    "LearningRatePlanCheck",
    "PredictionFileWriter",
    "ReleaseSpawnedProcessGroup",
    "ReseedEveryStep",
    "ResumeLoaderPosition",
    "WarmupLinearDecay",
    "candidate_ranks",
    "configure_adam",
    "parameter_groups",
    "release_spawned_process_group",
    "training_callbacks",
    "write_prediction_file",
]
