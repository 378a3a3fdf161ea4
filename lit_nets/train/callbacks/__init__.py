"""Callbacks the CLI adds to every run, and Throughput, which the benchmark adds, by kind: ``outputs`` (predictions,
figures), ``monitoring`` (progress, learning rate, throughput, profiler), ``saving`` (checkpoints, lock, interrupt),
``tracking`` (MLflow); ``averaging`` (the weights' moving average, which a config adds)."""

from lit_nets.train.callbacks.averaging import EMAWeights
from lit_nets.train.callbacks.monitoring import (
    EpochLines,
    LearningRateFinder,
    LearningRateLogger,
    ProgressBar,
    QuietProfiler,
    ThreadsFollowLoad,
    Throughput,
    progress_bar,
    say,
    steepest_descent,
)
from lit_nets.train.callbacks.outputs import (
    FigureLogger,
    PredictionWriter,
    label_table,
    prediction_table,
    value_table,
)
from lit_nets.train.callbacks.saving import (
    LastCheckpoint,
    PeriodicCheckpoint,
    SaveOnInterrupt,
    TrainingLock,
    last_checkpoint,
    main_checkpoint,
)
from lit_nets.train.callbacks.tracking import MLflowTracking

__all__ = [
    "EMAWeights",
    "EpochLines",
    "FigureLogger",
    "LastCheckpoint",
    "LearningRateFinder",
    "LearningRateLogger",
    "MLflowTracking",
    "PeriodicCheckpoint",
    "PredictionWriter",
    "ProgressBar",
    "QuietProfiler",
    "SaveOnInterrupt",
    "ThreadsFollowLoad",
    "Throughput",
    "TrainingLock",
    "label_table",
    "last_checkpoint",
    "main_checkpoint",
    "prediction_table",
    "progress_bar",
    "say",
    "steepest_descent",
    "value_table",
]
