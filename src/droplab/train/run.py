"""One whole run from its configuration: :func:`build_run`, :func:`train_run`, what it returns
(:class:`RunResult`), and the model file (:func:`save_model`, :func:`load_model`) that
``droplab train --save`` writes and ``droplab audit`` reads."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from droplab._checks import check_writable_file
from droplab.data import Splits
from droplab.errors import ConfigError
from droplab.models import ModelSpec, build_model
from droplab.train.callbacks import Callback
from droplab.train.config import RunConfig
from droplab.train.trainer import FitResult, Trainer

__all__ = ["RunResult", "build_run", "train_run", "save_model", "load_model", "MODEL_FORMAT"]


@dataclasses.dataclass
class RunResult:
    """What :func:`train_run` returns: the configuration, the data, the trained model, the fit."""

    config: RunConfig
    splits: Splits
    model: nn.Module
    fit: FitResult

    def summary(self) -> dict[str, Any]:
        """``fit.summary()`` plus the dataset and model kind."""
        return {
            "dataset": self.config.data.name,
            "model": self.config.model.kind,
            **self.fit.summary(),
        }


def build_run(config: RunConfig) -> tuple[Splits, nn.Module]:
    """Load the data and build the model of a run (initial weights seeded by ``config.seed``)."""
    splits = config.data.load(default_seed=config.seed)
    model = build_model(config.model, splits.input_shape, splits.n_outputs, seed=config.seed)
    return splits, model


def train_run(
    config: RunConfig, *, callbacks: Iterable[Callback] = (), resume: str | None = None
) -> RunResult:
    """Load, build and train one run: what ``droplab train`` does.

    Example:
        >>> result = train_run(RunConfig.from_dict({"train": {"epochs": 2}}))  # doctest: +SKIP
        >>> result.fit.test["acc"]  # doctest: +SKIP
    """
    splits, model = build_run(config)
    fit = Trainer(model, config.train, callbacks).fit(splits, resume=resume)
    return RunResult(config=config, splits=splits, model=model, fit=fit)


MODEL_FORMAT = "droplab-model-v1"


def save_model(path: str | os.PathLike[str], result: RunResult) -> None:
    """Save the trained model with what rebuilds it: spec, input shape, outputs, config, summary.

    Loads with ``torch.load(weights_only=True)``; see :func:`load_model`.
    """
    path = os.fspath(path)
    check_writable_file("model file", path)
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    state = {
        "format": MODEL_FORMAT,
        "model": result.model.state_dict(),
        "spec": result.config.model.to_dict(),
        "input_shape": list(result.splits.input_shape),
        "n_outputs": int(result.splits.n_outputs),
        "task": result.splits.task,
        "config": result.config.to_dict(),
        "summary": result.summary(),
    }
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:  # a full disk, a path that changed since the check
        if os.path.exists(tmp):
            os.remove(tmp)
        raise ConfigError(f"cannot write model file {path}: {str(exc).strip().splitlines()[0]}") from None


def load_model(path: str | os.PathLike[str]) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a model saved by :func:`save_model`; returns ``(model, metadata)`` (model in eval mode)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ConfigError(f"model file not found: {path}")
    import pickle
    import zipfile

    foreign = f"{path} is not a droplab model file (one written by `droplab train --save`)"
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; anything else is foreign
        raise ConfigError(foreign)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # objects beyond tensors: e.g. a whole module from torch.save
        raise ConfigError(f"{foreign}: it holds Python objects, not only tensors") from None
    except Exception as exc:  # a corrupt or foreign file is the user's problem, not a bug
        import re

        first = re.sub(r"\x1b\[[0-9;]*m", "", (str(exc).strip().splitlines() or [type(exc).__name__])[0])
        raise ConfigError(f"cannot read model file {path}: {first}") from None
    if not isinstance(state, dict) or state.get("format") != MODEL_FORMAT:
        raise ConfigError(foreign)
    model = build_model(
        ModelSpec.from_dict(state["spec"]), tuple(state["input_shape"]), state["n_outputs"]
    )
    model.load_state_dict(state["model"])
    model.eval()
    meta = {k: v for k, v in state.items() if k not in ("model", "format")}
    return model, meta
