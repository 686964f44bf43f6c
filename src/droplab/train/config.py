"""Training configuration (:class:`TrainConfig`) and whole-run configuration (:class:`RunConfig`).

The ``[data]`` section is :class:`droplab.data.DataConfig`; running a whole configuration
(:func:`~droplab.train.train_run`, :func:`~droplab.train.save_model`) lives in
:mod:`droplab.train.run`.

Both are dataclasses that validate themselves on construction and round-trip through plain
dictionaries (TOML/JSON); an unknown key raises :class:`~droplab.errors.ConfigError` with a
did-you-mean hint. A run file has three sections::

    [data]
    name = "mnist1d"

    [model]
    kind = "mlp"
    hidden = [256, 256]
    dropout = "hidden=0.3"

    [train]
    optimizer = "adam"
    lr = 1e-3
    epochs = 30
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from typing import Any

import torch

from droplab._checks import (
    check_bool,
    check_choice,
    check_keys,
    check_nonneg_float,
    check_nonneg_int,
    check_positive_float,
    check_positive_int,
    check_probability,
)
from droplab.data import DataConfig
from droplab.errors import ConfigError
from droplab.train.early_stopping import CRITERIA, EarlyStopping

__all__ = [
    "TrainConfig",
    "DataConfig",  # lives in droplab.data; kept importable from here
    "RunConfig",
    "merge_overrides",
    "read_toml",
    "OPTIMIZERS",
    "SCHEDULES",
    "DEVICES",
]

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
SCHEDULES = ("constant", "step", "cosine", "onecycle")
DEVICES = ("auto", "cpu", "cuda")


def read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a TOML config file; a missing or malformed file raises ConfigError in one line."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None


def _optional(check: Any, name: str, value: Any) -> Any:
    return None if value is None else check(name, value)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything the :class:`~droplab.train.Trainer` needs besides the model and the data.

    Weight decay has one meaning in droplab: *decoupled* decay on weights only (Loshchilov &
    Hutter, ICLR 2019, arXiv:1711.05101), in torch's convention ``theta -= lr * weight_decay *
    theta``; biases and normalization parameters are never decayed
    (:func:`droplab.regularize.param_groups`). ``sgd`` uses :class:`droplab.regularize.SGDW`,
    ``adamw`` uses ``torch.optim.AdamW``. ``adam`` and ``rmsprop`` with ``weight_decay > 0``
    raise, because torch would silently turn it into an L2 penalty coupled with the adaptive
    step: ask for ``adamw`` (decoupled decay) or ``l2`` (a penalty in the loss) instead.

    Args:
        optimizer: ``"sgd"``, ``"adam"``, ``"adamw"`` or ``"rmsprop"``. Default ``"adam"``.
        lr: learning rate (the peak rate for ``onecycle``), > 0. Default 1e-3.
        momentum: momentum for ``sgd`` and ``rmsprop``, in [0, 1). Default 0.
        nesterov: Nesterov momentum (``sgd`` with momentum > 0). Default False.
        weight_decay: decoupled decay on weights (``sgd``, ``adamw``), >= 0. Default 0.
        l1: strength of ``l1 * sum |w|`` added to the loss (weights only), >= 0. Default 0.
        l2: strength of ``l2 * sum w**2`` added to the loss (weights only, no 1/2). Default 0.
        max_norm: max-norm bound c applied after every step (Srivastava et al. 2014). Default None.
        epochs: number of epochs, >= 1. Default 10.
        batch_size: examples per step, >= 1. Default 100.
        eval_batch_size: examples per forward pass when evaluating. Default 1000.
        lr_schedule: ``"constant"``, ``"step"`` (x ``gamma`` every ``step_size`` epochs),
            ``"cosine"`` (per epoch, to 0 after ``epochs``) or ``"onecycle"`` (per step,
            Smith & Topin 2019, arXiv:1708.07120; momentum is cycled only where the optimizer
            has one in use). Default ``"constant"``.
        step_size: epochs between decays of ``"step"``. Default 30.
        gamma: decay factor of ``"step"``, in (0, 1]. Default 0.1.
        grad_clip: clip the global gradient L2 norm to this value. Default None.
        seed: seeds the data order and, inside a forked RNG, torch's global RNG for dropout
            masks; ``None`` leaves both to chance. Default 0.
        device: ``"auto"`` (cuda if available), ``"cpu"`` or ``"cuda"``. Default ``"auto"``.
        eval_train: also evaluate the training split in eval mode every epoch. Default True.
        early_stopping: ``None``, ``"patience"``, ``"gl"``, ``"pq"`` or ``"up"`` (Prechelt 1998),
            see :class:`~droplab.train.EarlyStopping`. Default None.
        monitor: history key watched by early stopping. Default ``"val_loss"``.
        patience: epochs without improvement (``"patience"``). Default 10.
        min_delta: smallest improvement (``"patience"``). Default 0.
        alpha: threshold of ``"gl"`` (default 5) or ``"pq"`` (default 3).
        strip_length: Prechelt's strip length k. Default 5.
        s: successive strip-end rises for ``"up"``. Default 4.
        start_from_epoch: warm-up epochs ignored by early stopping. Default 0.
        restore_best: with early stopping, restore the best weights at the end. Default True.
        checkpoint_dir: folder for resumable checkpoints (``last.pt``). Default None.
        checkpoint_every: save every this many epochs. Default 1.
        rdrop: R-Drop weight alpha (Liang et al. 2021, arXiv:2106.14448): two dropout passes
            per step plus alpha times their symmetric KL, see :mod:`droplab.train.rdrop`;
            about twice the cost of a step. 0 (default) trains plainly.

    Example:
        >>> cfg = TrainConfig(optimizer="sgd", lr=0.1, momentum=0.9, epochs=50, max_norm=3.0)
        >>> TrainConfig.from_dict({"lr": 0.01, "epochs": 5}).lr
        0.01
    """

    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    l1: float = 0.0
    l2: float = 0.0
    max_norm: float | None = None
    epochs: int = 10
    batch_size: int = 100
    eval_batch_size: int = 1000
    lr_schedule: str = "constant"
    step_size: int = 30
    gamma: float = 0.1
    grad_clip: float | None = None
    seed: int | None = 0
    device: str = "auto"
    eval_train: bool = True
    early_stopping: str | None = None
    monitor: str = "val_loss"
    patience: int = 10
    min_delta: float = 0.0
    alpha: float | None = None
    strip_length: int = 5
    s: int | None = None
    start_from_epoch: int = 0
    restore_best: bool = True
    checkpoint_dir: str | None = None
    checkpoint_every: int = 1
    rdrop: float = 0.0

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        set_(self, "lr", check_positive_float("lr", self.lr))
        set_(self, "momentum", check_probability("momentum", self.momentum))
        check_bool("nesterov", self.nesterov)
        set_(self, "weight_decay", check_nonneg_float("weight_decay", self.weight_decay))
        set_(self, "l1", check_nonneg_float("l1", self.l1))
        set_(self, "l2", check_nonneg_float("l2", self.l2))
        set_(self, "max_norm", _optional(check_positive_float, "max_norm", self.max_norm))
        check_positive_int("epochs", self.epochs)
        check_positive_int("batch_size", self.batch_size)
        check_positive_int("eval_batch_size", self.eval_batch_size)
        check_choice("lr_schedule", self.lr_schedule, SCHEDULES)
        check_positive_int("step_size", self.step_size)
        gamma = check_positive_float("gamma", self.gamma)
        if gamma > 1:
            raise ConfigError(f"gamma must be in (0, 1], got {self.gamma!r}")
        set_(self, "gamma", gamma)
        set_(self, "grad_clip", _optional(check_positive_float, "grad_clip", self.grad_clip))
        _optional(check_nonneg_int, "seed", self.seed)
        check_choice("device", self.device, DEVICES)
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ConfigError(
                "device 'cuda' was requested but torch sees no CUDA device; use 'cpu' or 'auto'"
            )
        check_bool("eval_train", self.eval_train)
        set_(self, "rdrop", check_nonneg_float("rdrop", self.rdrop))
        check_bool("restore_best", self.restore_best)
        if self.early_stopping is not None:
            check_choice("early_stopping", self.early_stopping, CRITERIA)
        check_nonneg_int("start_from_epoch", self.start_from_epoch)
        check_positive_int("checkpoint_every", self.checkpoint_every)
        if self.checkpoint_dir is not None and (
            not isinstance(self.checkpoint_dir, str) or not self.checkpoint_dir
        ):
            raise ConfigError(
                f"checkpoint_dir must be a folder path or None, got {self.checkpoint_dir!r}"
            )

        uses_momentum = self.optimizer in ("sgd", "rmsprop")
        if self.momentum > 0 and not uses_momentum:
            raise ConfigError(
                f"momentum applies to optimizer 'sgd' or 'rmsprop'; {self.optimizer!r} has its own betas"
            )
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0):
            raise ConfigError("nesterov needs optimizer 'sgd' with momentum > 0")
        if self.weight_decay > 0 and self.optimizer in ("adam", "rmsprop"):
            raise ConfigError(
                f"weight_decay is decoupled decay in droplab, which {self.optimizer!r} does not do; "
                f"use optimizer 'adamw' (decoupled) or l2 (a penalty in the loss)"
            )
        # Building the callback validates the early-stopping options in one place.
        self.make_early_stopping()
        defaults = TrainConfig.__dataclass_fields__
        if (
            self.early_stopping not in (None, "patience")
            and self.patience != defaults["patience"].default
        ):
            raise ConfigError(
                f"patience is an early-stopping option of 'patience', not {self.early_stopping!r} "
                f"(which uses alpha, strip_length, s)"
            )
        if self.early_stopping is None:
            for name in ("patience", "min_delta", "alpha", "s", "start_from_epoch"):
                if getattr(self, name) != defaults[name].default:
                    raise ConfigError(f"{name} is an early-stopping option; set early_stopping too")

    def make_early_stopping(self) -> EarlyStopping | None:
        """The :class:`EarlyStopping` callback these options describe, or ``None``."""
        if self.early_stopping is None:
            return None
        return EarlyStopping(
            monitor=self.monitor,
            criterion=self.early_stopping,
            patience=self.patience,
            min_delta=self.min_delta,
            alpha=self.alpha,
            strip_length=self.strip_length,
            s=self.s,
            start_from_epoch=self.start_from_epoch,
            restore_best_weights=self.restore_best,
        )

    def resolve_device(self) -> torch.device:
        """The torch device this configuration runs on."""
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], where: str = "[train]") -> TrainConfig:
        """Build from a mapping; unknown keys raise with a did-you-mean hint."""
        if not isinstance(values, Mapping):
            raise ConfigError(f"{where} must be a table of options, got {type(values).__name__}")
        check_keys(where, values, cls.__dataclass_fields__)
        return cls(**dict(values))

    def to_dict(self) -> dict[str, Any]:
        """Plain dictionary (TOML/JSON/``torch.load(weights_only=True)`` friendly)."""
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (validated); unknown names raise with a hint."""
        check_keys("TrainConfig", changes, self.__dataclass_fields__)
        return dataclasses.replace(self, **changes)


_SECTIONS = ("data", "model", "train")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """One training run: ``[data]`` (:class:`DataConfig`), ``[model]``
    (:class:`droplab.models.ModelSpec`) and ``[train]`` (:class:`TrainConfig`).

    ``train.seed`` drives the whole run: the data split (unless ``[data] seed`` is set), the
    model's initial weights (``build_model(..., seed=...)``, inside a forked RNG) and the
    trainer (data order and dropout masks). ``[model] dropout`` may be a table or the compact
    string of :func:`droplab.models.parse_dropout` (``"input=0.1,hidden=0.5"``).

    Example:
        >>> cfg = RunConfig.from_dict({"model": {"kind": "mlp", "hidden": [64]}, "train": {"epochs": 3}})
        >>> cfg.train.epochs
        3
    """

    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: Any = None  # a ModelSpec; None means ModelSpec()
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        from droplab.models import ModelSpec

        if self.model is None:
            object.__setattr__(self, "model", ModelSpec())
        for name, cls in (("data", DataConfig), ("model", ModelSpec), ("train", TrainConfig)):
            if not isinstance(getattr(self, name), cls):
                raise ConfigError(
                    f"{name} must be a {cls.__name__}, got {type(getattr(self, name)).__name__}"
                )

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> RunConfig:
        """Build from ``{"data": {...}, "model": {...}, "train": {...}}`` (each optional)."""
        from droplab.models import ModelSpec, parse_dropout

        if not isinstance(values, Mapping):
            raise ConfigError(f"a run configuration must be a table, got {type(values).__name__}")
        check_keys("the run configuration (sections)", values, _SECTIONS)
        for name in _SECTIONS:
            if name in values and not isinstance(values[name], Mapping):
                raise ConfigError(f"[{name}] must be a table of options, got {values[name]!r}")
        model = dict(values.get("model", {}))
        if isinstance(model.get("dropout"), str):
            model["dropout"] = parse_dropout(model["dropout"])
        return cls(
            data=DataConfig.from_dict(values.get("data", {})),
            model=ModelSpec.from_dict(model),
            train=TrainConfig.from_dict(values.get("train", {})),
        )

    @classmethod
    def from_toml(
        cls, path: str | os.PathLike[str], overrides: Mapping[str, Mapping[str, Any]] | None = None
    ) -> RunConfig:
        """Read a TOML file and apply ``overrides`` (``{"train": {"lr": 0.1}}``) on top."""
        return cls.from_dict(merge_overrides(read_toml(path), overrides or {}))

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dictionary; ``RunConfig.from_dict(cfg.to_dict()) == cfg``."""
        train = {k: v for k, v in self.train.to_dict().items() if v is not None}
        return {"data": self.data.to_dict(), "model": self.model.to_dict(), "train": train}

    @property
    def seed(self) -> int:
        """The run's seed (``train.seed``, 0 when it is ``None``) for data and initial weights."""
        return 0 if self.train.seed is None else self.train.seed


def merge_overrides(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` on top (flags over TOML): tables merge key by key, recursively;
    other values are replaced."""
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_overrides(out[key], value)
        else:
            out[key] = value
    return out
