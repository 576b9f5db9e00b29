"""Ensemble training: AdamW with per-member hyper-parameters, fixed-norm mode, schedules, stop rules."""
from .adamw import EnsembleAdamW
from .schedule import checkpoint_steps, metric_steps
from .trainer import EnsembleTrainer, RunResult, parse_device, train_ensemble, train_run

__all__ = ["EnsembleAdamW", "EnsembleTrainer", "RunResult", "checkpoint_steps", "metric_steps", "parse_device",
           "train_ensemble", "train_run"]
