"""Training: one loop (:class:`Trainer`), its configuration, callbacks and early stopping.

- :class:`TrainConfig` -- optimizer, schedule, penalties, max-norm, epochs, seed, early stopping.
- :class:`Trainer`, :func:`fit`, :class:`FitResult` -- the loop and what it returns.
- :class:`Callback`, :class:`ProgressBar`, :class:`Checkpoint` -- hooks ``(trainer, **kwargs)``.
- :class:`EarlyStopping` -- patience, and Prechelt's (1998) GL, PQ and UP criteria.
- :class:`RunConfig` (``[data]`` :class:`DataConfig`, ``[model]`` ModelSpec, ``[train]``),
  :func:`build_run`, :func:`train_run`, :func:`save_model`, :func:`load_model` -- a whole run
  from a TOML file, as the ``droplab train`` command uses it (``droplab.train.run``).
  :class:`DataConfig` lives in :mod:`droplab.data` and is re-exported here.
"""

from droplab.train.callbacks import Callback, Checkpoint, ProgressBar
from droplab.train.config import DataConfig, RunConfig, TrainConfig
from droplab.train.run import RunResult, build_run, load_model, save_model, train_run
from droplab.train.early_stopping import EarlyStopping
from droplab.train.optim import build_optimizer, build_scheduler
from droplab.train.schedules import DropoutScheduler
from droplab.train.trainer import FitResult, Trainer, fit

__all__ = [
    "TrainConfig",
    "Trainer",
    "FitResult",
    "fit",
    "Callback",
    "ProgressBar",
    "Checkpoint",
    "EarlyStopping",
    "build_optimizer",
    "build_scheduler",
    "DataConfig",
    "RunConfig",
    "RunResult",
    "build_run",
    "train_run",
    "save_model",
    "load_model",
    "DropoutScheduler",
]
