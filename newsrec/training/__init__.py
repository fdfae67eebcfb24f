"""What a training run needs besides the model: the optimiser and schedule, and the callbacks
that make resumes exact and DDP teardown clean and log the training throughput
(:func:`training_callbacks`), the prediction files, the thread setting (:func:`apply_threads`)
and the hiding of dependency notices (:func:`quiet_dependency_notices`)."""

from newsrec.training.callbacks import (
    LearningRatePlanCheck,
    ReleaseSpawnedProcessGroup,
    ReseedEveryStep,
    ResumeLoaderPosition,
    TrainingThroughput,
    release_spawned_process_group,
    training_callbacks,
)
from newsrec.training.optim import LR_SCHEDULES, WarmupLinearDecay, configure_adam, parameter_groups
from newsrec.training.prediction import PredictionFileWriter, candidate_ranks, write_prediction_file
from newsrec.training.quiet import THREADS_ENV, apply_threads, quiet_dependency_notices
from newsrec.training.scores import (
    SCORE_COLUMNS,
    ScoresFileWriter,
    gather_predictions,
    predict_scores,
    scores_table,
    write_scores_file,
)

quiet_dependency_notices()

__all__ = [
    "LR_SCHEDULES",
    "LearningRatePlanCheck",
    "PredictionFileWriter",
    "ReleaseSpawnedProcessGroup",
    "ReseedEveryStep",
    "ResumeLoaderPosition",
    "SCORE_COLUMNS",
    "ScoresFileWriter",
    "THREADS_ENV",
    "TrainingThroughput",
    "WarmupLinearDecay",
    "apply_threads",
    "candidate_ranks",
    "configure_adam",
    "gather_predictions",
    "parameter_groups",
    "predict_scores",
    "quiet_dependency_notices",
    "release_spawned_process_group",
    "scores_table",
    "training_callbacks",
    "write_prediction_file",
    "write_scores_file",
]
