"""A whole sweep as one validated object: :class:`SweepConfig`, from TOML and/or flags.

A sweep file adds a ``[space]`` table (the axes) and a few top-level keys to a run file::

    name = "rates"
    seeds = 5                      # a count (seeds 0..4) or a list [0, 7, 9]
    sampler = "grid"               # grid | random | tpe
    metric = "val_acc"             # val_acc | val_loss | val_rmse (default by task)
    store = "study.db"

    [data]                         # droplab.train.config.DataConfig (load_dataset options)
    name = "mnist1d"

    [model]                        # droplab.models.ModelSpec; dropout may be a string
    kind = "mlp"
    hidden = [256, 256]

    [models.wide]                  # named architectures for a "model" axis (optional)
    kind = "mlp"
    hidden = [512, 512]

    [train]                        # droplab.train.TrainConfig
    epochs = 20

    [space]
    "dropout.hidden" = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    "train.weight_decay" = [0.0, 1e-4]

Axes: ``dropout.<place>`` (a rate, or a list of per-layer rates), ``dropout.<place>.layer``,
``dropout`` (a whole dropout string such as ``"input=0.2,hidden=0.5"``; ``"none"`` for none),
``model`` (names of ``[models.*]`` tables), ``model.<field>``, ``train.<field>``,
``data.<option>``. The data split uses ``[data] seed`` (default 0) for every run, so all seeds
see the same train/validation/test examples; the sweep's seeds vary initialization, data order
and dropout draws.

Everything is validated when the object is built (unknown keys with a did-you-mean hint, bad
values with the expected range); the engine then resolves every configuration and builds each
architecture before training anything.

Example:
    >>> cfg = SweepConfig.from_dict({"space": {"dropout.hidden": [0.0, 0.5]}, "seeds": 2})
    >>> len(cfg.make_space().configurations())
    2
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from droplab._checks import check_choice, check_keys, check_nonneg_float, check_positive_int
from droplab.errors import ConfigError
from droplab.sweep.executors import EXECUTORS
from droplab.sweep.plan import SpecPlan, seed_list
from droplab.sweep.selection import METRICS, maximize
from droplab.sweep.space import SAMPLERS, SearchSpace, make_space, parse_axis
from droplab.train.config import DataConfig, TrainConfig, merge_overrides, read_toml

__all__ = ["SweepConfig", "apply_overrides", "parse_values", "parse_axis_flag", "parse_dropout_flag"]

_TOP = (
    "name", "seeds", "sampler", "trials", "sampler_seed", "batch", "metric", "store",
    "memory_mb", "population", "checkpoint_seconds", "data", "model", "models", "train", "space",
    "executor", "address",
    "stat",
    "max_seeds",
    "regularization",
    "model_file",
    "folds",
)


def _model_spec(values: Any, where: str):
    from droplab.models import ModelSpec, parse_dropout

    if isinstance(values, ModelSpec):
        return values
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where} must be a table of model options, got {values!r}")
    values = dict(values)
    if isinstance(values.get("dropout"), str):
        values["dropout"] = parse_dropout(values["dropout"])
    try:
        return ModelSpec.from_dict(values)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """Everything a sweep needs; validated on construction.

    Args:
        name: study name. Default ``"sweep"``.
        data: a :class:`~droplab.train.config.DataConfig` (``[data]``); its ``seed`` defaults
            to 0 for the whole sweep.
        model: base :class:`~droplab.models.ModelSpec` (``[model]``).
        models: named architectures for a ``model`` axis (``[models.<name>]``). Default none.
        train: base :class:`~droplab.train.TrainConfig` (``[train]``; its seed is ignored).
        space: axis name -> list of values or distribution table (``[space]``). Default none
            (one configuration: the base).
        sampler: ``"grid"`` (default), ``"random"`` or ``"tpe"`` (Optuna, optional).
        trials: configurations drawn by ``random`` / ``tpe``.
        sampler_seed: seed of the random / TPE sampler. Default 0.
        batch: TPE trials per round. Default 8.
        seeds: a count or a list of seeds. Default 3.
        metric: ``val_acc``, ``val_loss`` or ``val_rmse``; default ``val_acc`` for
            classification, ``val_loss`` for regression.
        store: path of the study store. Default ``None`` (a temporary store).
        memory_mb: memory budget of one population in MB. Default ``None`` (2048).
        population: vectorized population training. Default True.
        checkpoint_seconds: minimum seconds between checkpoints. Default 10.
        executor: where populations train: ``"local"`` (default) or ``"ray"`` (a Ray cluster;
            needs ``droplab[ray]``).
        address: the Ray cluster for ``executor = "ray"``: ``"auto"`` or ``"HOST:PORT"``.
            Default ``None`` (``RAY_ADDRESS``, else a cluster started on this machine, else a
            new Ray here).
        stat: the decision rule, ``"t"`` or ``"bootstrap"`` (see :func:`droplab.stats.compare`);
            default ``None``: bootstrap from 5 seeds on, t below. Stored with the study.
        max_seeds: with ``seeds = "auto"``, the most seeds a configuration may get (racing:
            seeds are added in rounds only where the decision is open; see
            :func:`droplab.sweep.run_sweep`). Default 20.
        regularization: more axes that are regularization (``regularization = ["train.label_smoothing"]``):
            their value 0 is the baseline, the one-SE rule may trade them. Default none
            (dropout axes and ``train.weight_decay/l1/l2/max_norm`` always are).
        model_file: ``"my_model.py:build"``: your own build function (configuration dict ->
            ``nn.Module``) instead of ``[model]``; every axis but ``train.*`` goes to it, and
            the data come from ``[data]``. Default ``None`` (droplab's models).
        folds: k-fold cross-validation (``folds = 5``; :mod:`droplab.sweep.folds`): train and
            validation pooled, each fold a member of the population, metrics the mean over
            folds. Default ``None``.

    Example:
        >>> SweepConfig.from_dict({"train": {"epochs": 2}}).train.epochs
        2
    """

    name: str = "sweep"
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: Any = None
    models: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    space: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    sampler: str = "grid"
    trials: int | None = None
    sampler_seed: int = 0
    batch: int = 8
    seeds: int | tuple[int, ...] = 3
    metric: str | None = None
    store: str | None = None
    memory_mb: float | None = None
    population: bool = True
    checkpoint_seconds: float = 10.0
    executor: str = "local"
    address: str | None = None
    stat: str | None = None
    max_seeds: int = 20
    regularization: tuple[str, ...] = ()
    model_file: str | None = None
    folds: int | None = None

    def __post_init__(self) -> None:
        from droplab.models import ModelSpec

        set_ = object.__setattr__
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"name must be a non-empty string, got {self.name!r}")
        if not isinstance(self.data, DataConfig):
            raise ConfigError(f"data must be a DataConfig, got {type(self.data).__name__}")
        set_(self, "model", ModelSpec() if self.model is None else _model_spec(self.model, "[model]"))
        if not isinstance(self.models, Mapping):
            raise ConfigError(f"[models] must be a table of named architectures, got {self.models!r}")
        set_(self, "models", {k: _model_spec(v, f"[models.{k}]") for k, v in self.models.items()})
        if not isinstance(self.train, TrainConfig):
            raise ConfigError(f"train must be a TrainConfig, got {type(self.train).__name__}")
        if not isinstance(self.space, Mapping):
            raise ConfigError(f"[space] must be a table of axes, got {self.space!r}")
        for axis, value in self.space.items():
            parse_axis(axis, value)
        check_choice("sampler", self.sampler, SAMPLERS)
        if self.trials is not None:
            check_positive_int("trials", self.trials)
        if isinstance(self.sampler_seed, bool) or not isinstance(self.sampler_seed, int) or self.sampler_seed < 0:
            raise ConfigError(f"sampler_seed must be a non-negative integer, got {self.sampler_seed!r}")
        check_positive_int("batch", self.batch)
        seeds = self.seeds
        if isinstance(seeds, (list, tuple)):
            set_(self, "seeds", tuple(seeds))
        check_positive_int("max_seeds", self.max_seeds)
        from droplab.sweep.selection import check_regularization

        set_(self, "regularization", check_regularization(self.regularization))
        from droplab.sweep.folds import check_folds

        check_folds(self.folds)
        if self.model_file is not None:
            _split_model_file(self.model_file)
            if self.models:
                raise ConfigError("model_file builds your own model; [models] applies to droplab's models")
        if self.seeds != "auto":
            seed_list(self.seeds)
        elif self.sampler == "tpe":
            raise ConfigError("seeds = 'auto' races the configurations of a grid or random space; "
                              "TPE already chooses what to train next")
        if self.metric is not None:
            check_choice("metric", self.metric, METRICS)
        if self.stat is not None:
            from droplab.stats import STATS

            check_choice("stat", self.stat, STATS)
        if self.store is not None and (not isinstance(self.store, str) or not self.store):
            raise ConfigError(f"store must be a file path, got {self.store!r}")
        if self.memory_mb is not None:
            if isinstance(self.memory_mb, bool) or not isinstance(self.memory_mb, (int, float)) or self.memory_mb <= 0:
                raise ConfigError(f"memory_mb must be a number > 0, got {self.memory_mb!r}")
        if not isinstance(self.population, bool):
            raise ConfigError(f"population must be true or false, got {self.population!r}")
        set_(self, "checkpoint_seconds", check_nonneg_float("checkpoint_seconds", self.checkpoint_seconds))
        check_choice("executor", self.executor, EXECUTORS)
        if self.address is not None:
            if not isinstance(self.address, str) or not self.address.strip():
                raise ConfigError(f"address must be 'auto' or HOST:PORT of a Ray cluster, got {self.address!r}")
            if self.executor != "ray":
                raise ConfigError(f"address applies to executor 'ray' (a Ray cluster), got executor {self.executor!r}")
        if "model" in self.space and not self.models:
            raise ConfigError("axis 'model' names architectures; define them as [models.<name>] tables")
        # Building the space checks sampler/trials combinations now, not at run time; it is
        # built once, here, and each sweep takes a copy (a space remembers what it asked).
        set_(self, "_space", self._build_space())

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> SweepConfig:
        """Build from a TOML-shaped dictionary; unknown keys raise with a did-you-mean hint."""
        if not isinstance(values, Mapping):
            raise ConfigError(f"a sweep configuration must be a table, got {type(values).__name__}")
        check_keys("the sweep configuration", values, _TOP)
        values = dict(values)
        for section in ("data", "model", "models", "train", "space"):
            if section in values and not isinstance(values[section], Mapping):
                raise ConfigError(f"[{section}] must be a table, got {values[section]!r}")
        data = dict(values.pop("data", {}))
        data.setdefault("seed", 0)
        values["data"] = DataConfig.from_dict(data)
        values["train"] = TrainConfig.from_dict(values.pop("train", {}))
        if "model" in values:
            values["model"] = _model_spec(values["model"], "[model]")
        return cls(**values)

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str], overrides: Mapping[str, Any] | None = None) -> SweepConfig:
        """Read a TOML file, apply ``overrides`` (flags: top-level keys and section tables) on top."""
        overrides = overrides or {}
        return cls.from_dict(apply_overrides(read_toml(path), overrides))

    def to_dict(self) -> dict[str, Any]:
        """TOML/JSON-shaped dictionary; ``SweepConfig.from_dict(cfg.to_dict()) == cfg``.

        ``store``, ``checkpoint_seconds``, ``executor`` and ``address`` are left out: they say
        where and how often to write and where to train, not what to train, so a study may be
        moved and resumed with other values (a local sweep resumed on a Ray cluster, say).
        """
        out: dict[str, Any] = {
            "name": self.name,
            "data": self.data.to_dict(),
            "model": self.model.to_dict(),
            "models": {k: v.to_dict() for k, v in self.models.items()},
            "train": {k: v for k, v in self.train.to_dict().items() if v is not None},
            "space": {k: _plain(v) for k, v in self.space.items()},
            "sampler": self.sampler,
            "sampler_seed": self.sampler_seed,
            "batch": self.batch,
            "seeds": list(self.seeds) if isinstance(self.seeds, tuple) else self.seeds,
            "population": self.population,
        }
        for key in ("trials", "metric", "memory_mb"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.stat is not None:
            out["stat"] = self.stat
        if self.seeds == "auto":
            out["max_seeds"] = self.max_seeds
        if self.regularization:
            out["regularization"] = list(self.regularization)
        if self.model_file is not None:
            out["model_file"] = self.model_file
        if self.folds is not None:
            out["folds"] = self.folds
        return out

    def replace(self, **changes: Any) -> SweepConfig:
        """A copy with some fields changed (validated)."""
        check_keys("SweepConfig", changes, [f.name for f in dataclasses.fields(self)])
        return dataclasses.replace(self, **changes)

    # -- what the engine needs -------------------------------------------------------------------
    def seed_list(self) -> list[int]:
        """The seeds as a list."""
        if self.seeds == "auto":
            return list(range(self.max_seeds))
        return seed_list(list(self.seeds) if isinstance(self.seeds, tuple) else self.seeds)

    def make_space(self) -> SearchSpace:
        """The search space (a fresh copy of the one built at validation: spaces remember what they asked)."""
        return copy.deepcopy(self._space)

    def _build_space(self) -> SearchSpace:
        # Without a metric the direction follows the task's default, which the engine sets once
        # it has seen the data (an accuracy until then).
        up = True if self.metric is None else maximize(self.metric)
        return make_space(
            dict(self.space), self.sampler, trials=self.trials, seed=self.sampler_seed,
            batch=self.batch, maximize=up,
        )

    def plan(self):
        """The engine's plan: droplab's own models, or the build function of ``model_file``
        (data from ``[data]`` either way)."""

        if self.model_file is not None:
            from droplab.sweep.plan import ModulePlan, TensorData

            return ModulePlan(load_build_function(self.model_file), TensorData(self.data.load()), self.train,
                              self.population, regularization=self.regularization)

        def load(options: dict[str, Any]):
            return DataConfig.from_dict(options).load()

        return SpecPlan(self.model, self.models, self.train, self.data.to_dict(), self.population, load,
                        regularization=self.regularization)


def _split_model_file(text: Any) -> tuple[str, str]:
    if not isinstance(text, str) or text.count(":") < 1:
        raise ConfigError(f"model_file must be 'FILE.py:FUNCTION', got {text!r}")
    path, func = text.rsplit(":", 1)
    if not path.endswith(".py") or not func.isidentifier():
        raise ConfigError(f"model_file must be 'FILE.py:FUNCTION', got {text!r}")
    return path, func


def load_build_function(text: str):
    """The build function named by ``"my_model.py:build"`` (the file is run as a module).

    Raises:
        ConfigError: no such file, the file fails to import, or it has no such callable.
    """
    import importlib.util

    path, func = _split_model_file(text)
    if not os.path.isfile(path):
        raise ConfigError(f"model_file {path!r}: no such file")
    spec = importlib.util.spec_from_file_location(f"droplab_user_model_{abs(hash(os.path.abspath(path)))}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the user's file failing to import is a config problem
        raise ConfigError(f"model_file {path!r} failed to import: {type(exc).__name__}: {exc}") from None
    build = getattr(module, func, None)
    if not callable(build):
        raise ConfigError(f"model_file {path!r} has no function {func!r}")
    return build


def apply_overrides(values: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A sweep file's ``values`` with the flags' ``overrides`` on top (flags win).

    Every file axis whose key the flags set -- as the base or as an axis -- is removed first;
    a dropout place set by the flags also removes the file's whole-string ``dropout`` axis,
    and ``--axis dropout=...`` removes the file's per-place dropout axes. A file's ``[model]
    dropout`` string is read into its table so that flags change only the places they name.
    """
    from droplab.models import parse_dropout
    from droplab.train.config import merge_overrides

    values = copy.deepcopy(dict(values))
    keys = {f"{section}.{k}" for section, table in overrides.items() if section != "space"
            and isinstance(table, Mapping) for k in table}
    keys |= {f"dropout.{p}" for p in (overrides.get("model") or {}).get("dropout", {})}
    keys |= set(overrides.get("space") or {})
    places = {k for k in keys if k.startswith("dropout.") and not k.endswith(".layer")}
    space = values.get("space")
    if isinstance(space, Mapping):
        kept = {}
        for name, axis in space.items():
            per_place = name.startswith("dropout.") and not name.endswith(".layer")
            if name in keys or (name == "dropout" and places) or (per_place and "dropout" in keys):
                continue
            kept[name] = axis
        values["space"] = kept
    model = values.get("model")
    if isinstance(model, Mapping) and isinstance(model.get("dropout"), str) and places:
        model = dict(model)
        model["dropout"] = {p: s.to_dict() for p, s in parse_dropout(model["dropout"]).items()}
        values["model"] = model
    return merge_overrides(values, overrides)


def _plain(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return value


# --- command-line flags -----------------------------------------------------------------------------
def _scalar(text: str) -> Any:
    """A flag value: JSON (numbers, lists, true/false) when it parses, else the text itself."""
    import json

    text = text.strip()
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_values(text: str) -> list[Any]:
    """``"0,0.1,0.2"`` -> ``[0, 0.1, 0.2]``; items separated by ``;`` when any is a list.

    Example:
        >>> parse_values("[256,256];[512]")
        [[256, 256], [512]]
    """
    sep = ";" if ";" in text else ","
    items = [t for t in text.split(sep) if t.strip()]
    if not items:
        raise ConfigError(f"expected a list of values separated by commas, got {text!r}")
    return [_scalar(t) for t in items]


def parse_axis_flag(text: str) -> tuple[str, list[Any]]:
    """``"train.lr=1e-3,1e-2"`` -> ``("train.lr", [0.001, 0.01])``.

    Example:
        >>> parse_axis_flag("model.hidden=[64];[64,64]")
        ('model.hidden', [[64], [64, 64]])
    """
    name, eq, values = text.partition("=")
    if not eq or not name.strip():
        raise ConfigError(f"cannot parse axis {text!r}; expected NAME=v1,v2,... e.g. train.lr=1e-3,1e-2")
    return name.strip(), parse_values(values)


def parse_dropout_flag(text: str) -> tuple[str, list[Any], str | None]:
    """``"hidden=0,0.1,0.2:gaussian"`` -> ``("hidden", [0, 0.1, 0.2], "gaussian")``: one place
    of the dropout grammar (``droplab.models.grammar``), its rates and its layer.

    Per-layer rates are written with ``/``: ``hidden=0.5/0.3,0.2/0.1``.

    Example:
        >>> parse_dropout_flag("hidden=0,0.5")
        ('hidden', [0.0, 0.5], None)
    """
    from droplab.models import PLACES, parse_dropout_entries

    entries = parse_dropout_entries(text, places=PLACES, what="--dropout")
    if len(entries) != 1:
        raise ConfigError(f"cannot parse --dropout {text!r}; expected one PLACE=RATES[:LAYER], e.g. hidden=0,0.1,0.2")
    (place, entry), = entries.items()
    return place, [list(r) if isinstance(r, tuple) else r for r in entry.rates], entry.layer
