"""Configurations -> resolved plans: what model, training configuration and data each point trains.

A *plan* turns one configuration of the search space (a dict of axis values) into a
:class:`Resolved`: the model (a ``ModelSpec`` or the user's build function), the
:class:`~droplab.train.TrainConfig`, the data key and the *group* -- everything runs must share
to train in one population. :class:`SpecPlan` serves droplab's own models, :class:`ModulePlan`
a build function of your own. The engine (:mod:`droplab.sweep.engine`) resolves each
configuration once and groups runs by ``Resolved.group``.

Example:
    >>> from droplab.models import ModelSpec
    >>> from droplab.train import TrainConfig
    >>> plan = SpecPlan(ModelSpec(), {}, TrainConfig(), {"name": "mnist1d"}, True, None)
    >>> plan.resolve({"dropout.hidden": 0.3}).key
    'dropout.hidden=0.3'
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from droplab.errors import ConfigError, DataError
from droplab.sweep import selection
from droplab.sweep.population import MEMBER_FIELDS, Member, ModuleNet, mlp_positions, mlp_rates, population_net
from droplab.sweep.space import config_key
from droplab.train.config import TrainConfig

__all__ = [
    "MEMBER_FIELDS", "Resolved", "SpecPlan", "ModulePlan", "TensorData", "make_plan", "seed_list", "load_data",
    "user_data",
    "group_hash", "to_json",
]



@dataclasses.dataclass
class Resolved:
    """One configuration, resolved: its training config, data, population group and model."""

    params: dict[str, Any]
    key: str
    train: TrainConfig
    data_key: str
    group: dict[str, Any]  # JSON-friendly group description
    net: str  # "mlp" | "module"
    spec: Any = None  # ModelSpec for built-in models
    rates: tuple[float, ...] | None = None
    schedules: tuple[str | None, ...] | None = None  # MLPNet: per dropout position
    arch: str = ""
    strength: tuple = ()  # selection.strength: how regularized (for the one-SE rule)
    rate_axes: tuple[str, ...] = ()  # its dropout-rate axes: its baseline has none on them


def to_json(value: Any) -> str:
    """Canonical JSON (sorted keys, no spaces): how groups and data options are compared."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def group_hash(value: Any) -> str:
    """A short stable hash of a group description (population keys, stored group ids)."""
    return hashlib.sha1(to_json(value).encode()).hexdigest()[:10]


def _split_train(params: Mapping[str, Any], base: TrainConfig) -> TrainConfig:
    changes = {k[len("train.") :]: v for k, v in params.items() if k.startswith("train.")}
    if not changes:
        return base
    return base.replace(**changes)


def _group_train(cfg: TrainConfig) -> dict[str, Any]:
    d = cfg.to_dict()
    for name in (*MEMBER_FIELDS, "seed", "checkpoint_dir", "checkpoint_every"):
        d.pop(name, None)
    return d


def _strength(rates: Sequence[float], cfg: TrainConfig) -> tuple:
    return selection.strength(rates, weight_decay=cfg.weight_decay, l2=cfg.l2, l1=cfg.l1, max_norm=cfg.max_norm)


#: Spec layers built as droplab.nn.RATE_LAYERS (models/_dropout.make_dropout): their rates are
#: per-member ``rate`` buffers in a ModuleNet population (droplab.nn.rates_as_buffers).
_RATE_BUFFER_LAYERS = ("dropout", "classic", "alpha", "spatial")


def _module_group_spec(spec) -> dict[str, Any]:
    """The spec part of a :class:`ModuleNet` population's group: ``spec.to_dict()`` with the
    rates and schedules of places whose layers hold their rate in a per-member buffer left out,
    so configurations that differ only in those train as one population (as ``mlp_rates``
    does for the batched MLP). Other layers' rates and schedules stay: they are shared."""
    out = spec.to_dict()
    for d in out["dropout"].values():
        if d["layer"] in _RATE_BUFFER_LAYERS:
            d["p"] = 0.0
            d.pop("schedule", None)
    return out


class SpecPlan:
    """Configurations of droplab's own models: ``model``, ``model.*``, ``dropout.*``, ``train.*``, ``data.*``."""

    kind = "spec"

    def __init__(self, base_spec, models, base_train, base_data, population, data_loader, fixed_data=False,
                 regularization: Sequence[str] = ()):
        from droplab.models import ModelSpec

        self.regularization = selection.check_regularization(regularization)
        self.ModelSpec = ModelSpec
        self.base_spec = base_spec
        self.models = dict(models or {})
        self.base_train = base_train
        self.base_data = dict(base_data or {})
        self.population = population
        self._loader = data_loader
        self.fixed_data = fixed_data
        self._data: dict[str, Any] = {}

    def check_axis(self, name: str) -> None:
        ok = (
            name == "model"
            or name == "dropout"
            or name.startswith(("model.", "dropout.", "train.", "data."))
        )
        if not ok:
            raise ConfigError(
                f"unknown axis {name!r}; axes are 'dropout.<place>' (a rate), "
                f"'dropout.<place>.layer', 'dropout' (a whole dropout string), 'model' (a named "
                f"architecture), 'model.<field>', 'train.<field>' and 'data.<option>'"
            )
        if name.startswith("data.") and self.fixed_data:
            raise ConfigError(f"axis {name!r}: data axes need a named dataset, not tensors or a Splits")
        if name.startswith("train."):
            field = name[len("train.") :]
            if field not in TrainConfig.__dataclass_fields__ or field == "seed":
                from droplab._checks import did_you_mean

                fields = [f for f in TrainConfig.__dataclass_fields__ if f != "seed"]
                raise ConfigError(
                    f"unknown axis {name!r}{did_you_mean(field, fields)}; train axes are "
                    f"train.<field> for a TrainConfig field (seeds are given by 'seeds')"
                )

    def resolve(self, params: Mapping[str, Any]) -> Resolved:
        from droplab.models import parse_dropout

        params = dict(params)
        for name in params:
            self.check_axis(name)
        if "model" in params:
            name = params["model"]
            if name not in self.models:
                raise ConfigError(
                    f"axis 'model' names architecture {name!r}, which is not defined; "
                    f"defined: {', '.join(sorted(self.models)) or 'none'} (add a [models.{name}] table)"
                )
            spec_dict = self.models[name].to_dict()
        else:
            spec_dict = self.base_spec.to_dict()
        dropout = {place: dict(d) for place, d in spec_dict.get("dropout", {}).items()}
        for name, value in params.items():
            if name == "dropout":
                if not isinstance(value, str):
                    raise ConfigError(f"axis 'dropout' takes dropout strings like 'hidden=0.3', got {value!r}")
                parsed = parse_dropout(value) if value.strip() not in ("", "none") else {}
                dropout = {place: d.to_dict() for place, d in parsed.items()}
        for name, value in params.items():
            if name.startswith("dropout."):
                parts = name.split(".")
                if len(parts) == 2:
                    place = parts[1]
                    dropout.setdefault(place, {"p": 0.0, "layer": None, "options": {}})
                    dropout[place]["p"] = list(value) if isinstance(value, (list, tuple)) else value
                elif len(parts) == 3 and parts[2] in ("layer", "schedule"):
                    place = parts[1]
                    dropout.setdefault(place, {"p": 0.0, "layer": None, "options": {}})
                    dropout[place][parts[2]] = None if value in ("none", "constant") else value
                else:
                    raise ConfigError(
                        f"unknown axis {name!r}; use 'dropout.<place>' for a rate, "
                        f"'dropout.<place>.layer' for a layer type or "
                        f"'dropout.<place>.schedule' for a rate schedule"
                    )
            elif name.startswith("model."):
                spec_dict[name[len("model.") :]] = value
        spec_dict["dropout"] = dropout
        try:
            spec = self.ModelSpec.from_dict(spec_dict)
        except ConfigError as exc:
            raise ConfigError(f"configuration {config_key(params)}: {exc}") from None
        try:
            train = _split_train(params, self.base_train)
        except ConfigError as exc:
            raise ConfigError(f"configuration {config_key(params)}: {exc}") from None
        data = dict(self.base_data)
        data.update({k[len("data.") :]: v for k, v in params.items() if k.startswith("data.")})
        data_key = to_json(data)
        # The engine's choice is population_net's (the batched MLP when mlp_rates accepts the
        # spec); it is made here once per configuration, and the group key records it.
        rates = mlp_rates(spec) if self.population else None
        fast = rates is not None
        schedules: tuple[str | None, ...] | None = None
        all_rates: list[float] = []
        for place, d in spec.dropout.items():
            all_rates += list(d.p) if isinstance(d.p, tuple) else [d.p] * (
                spec.n_hidden_positions if place == "hidden" else 1
            )
        if fast:
            schedules = tuple(
                spec.dropout[place].schedule for place, _ in mlp_positions(spec)
            )
            zeroed = spec.to_dict()
            for d in zeroed["dropout"].values():
                d["p"] = 0.0
                d.pop("schedule", None)  # per member: members with other schedules share a population
            group = {"net": "mlp", "spec": zeroed}
        else:
            group = {"net": "module", "spec": _module_group_spec(spec) if self.population else spec.to_dict()}
        group.update({"train": _group_train(train), "data": data})
        arch_params = {k: v for k, v in params.items() if k == "model" or k.startswith("model.")}
        return Resolved(
            params=params,
            key=config_key(params),
            train=train,
            data_key=data_key,
            group=group,
            net="mlp" if fast else "module",
            spec=spec,
            rates=rates,
            schedules=schedules,
            arch=config_key(arch_params) if arch_params else "",
            strength=_strength(all_rates, train),
            rate_axes=tuple(selection.rate_axes(params, self.regularization)),
        )

    def data(self, r: Resolved):
        if r.data_key not in self._data:
            self._data[r.data_key] = self._loader(json.loads(r.data_key))
        return self._data[r.data_key]

    def builder(self, r: Resolved, splits) -> Callable[[Member], nn.Module]:
        from droplab.models import build_model

        def build(member: Member) -> nn.Module:
            # Members of one ModuleNet population may come from other configurations (other
            # rates, _module_group_spec): each builds its own spec.
            spec = r.spec if member.key == r.key else self.resolve(member.params).spec
            return build_model(spec, splits.input_shape, splits.n_outputs)

        return build

    def make_net(self, r: Resolved, members, splits):
        # Members carry rates exactly when resolve chose the batched MLP.
        return population_net(r.spec, splits.input_shape, splits.n_outputs, members, self.builder(r, splits))()

    def without_data(self) -> SpecPlan:
        """A copy holding no data (what a remote executor sends; the splits travel apart)."""
        plan = copy.copy(self)
        plan._data, plan._loader = {}, None
        return plan

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.base_spec.to_dict(),
            "models": {k: v.to_dict() for k, v in self.models.items()},
            "train": self.base_train.to_dict(),
            "data": self.base_data,
        }


class TensorData:
    """The user's tensors (a Splits-like object or a tuple), checked, in the shape of droplab.data.Splits."""

    def __init__(self, data: Any, task: str | None = None) -> None:
        override = task
        if all(hasattr(data, a) for a in ("x_train", "y_train", "x_val", "y_val")):
            self.x_train, self.y_train = data.x_train, data.y_train
            self.x_val, self.y_val = data.x_val, data.y_val
            self.x_test = getattr(data, "x_test", None)
            self.y_test = getattr(data, "y_test", None)
            task = getattr(data, "task", None)
        elif isinstance(data, (tuple, list)) and len(data) in (4, 6):
            self.x_train, self.y_train, self.x_val, self.y_val = data[:4]
            self.x_test, self.y_test = (data[4], data[5]) if len(data) == 6 else (None, None)
            task = None
        else:
            raise DataError(
                "data must be a droplab.data.Splits (or an object with x_train, y_train, x_val, "
                "y_val[, x_test, y_test]) or a tuple (x_train, y_train, x_val, y_val[, x_test, y_test])"
            )
        for name in ("x_train", "y_train", "x_val", "y_val"):
            if not isinstance(getattr(self, name), torch.Tensor):
                raise DataError(f"{name} must be a torch.Tensor, got {type(getattr(self, name)).__name__}")
        for name in ("x_train", "x_val", "x_test"):
            t = getattr(self, name)
            if isinstance(t, torch.Tensor) and t.is_floating_point() and t.dtype != torch.float32:
                # float64 inputs would meet float32 weights deep inside the model
                print(f"droplab: {name} cast from {t.dtype} to torch.float32", file=sys.stderr)
                setattr(self, name, t.float())
        if len(self.x_train) != len(self.y_train) or len(self.x_val) != len(self.y_val):
            raise DataError(
                f"x and y must have as many examples: train {len(self.x_train)} vs {len(self.y_train)}, "
                f"val {len(self.x_val)} vs {len(self.y_val)}"
            )
        if len(self.x_train) == 0 or len(self.x_val) == 0:
            raise DataError("a sweep needs non-empty training and validation data")
        if override is not None:
            from droplab.data import infer_task

            width = getattr(data, "n_outputs", None)
            task = infer_task(self.y_train, width, task=override).task
            if task == "binary":
                self.y_train, self.y_val = self.y_train.float(), self.y_val.float()
                if self.y_test is not None:
                    self.y_test = self.y_test.float()
        if task is None:
            task = "regression" if self.y_train.is_floating_point() else "classification"
        self.task = task
        self.input_shape = tuple(self.x_train.shape[1:])
        if getattr(data, "n_outputs", None) is not None:
            self.n_outputs = int(data.n_outputs)
        elif task == "classification":
            self.n_outputs = int(max(self.y_train.max(), self.y_val.max())) + 1
        elif task == "binary":
            self.n_outputs = 1
        else:
            self.n_outputs = 1 if self.y_train.dim() == 1 else int(self.y_train.shape[1])

    def fingerprint(self) -> dict[str, Any]:
        h = hashlib.sha1()
        for name in ("x_train", "y_train", "x_val", "y_val"):
            t = getattr(self, name).detach().cpu().contiguous()
            h.update(str((tuple(t.shape), str(t.dtype))).encode())
            h.update(t.numpy().tobytes())
        return {"shapes": {n: list(getattr(self, n).shape) for n in ("x_train", "x_val")}, "sha1": h.hexdigest()}


def _is_tensor_data(data: Any) -> bool:
    if all(hasattr(data, a) for a in ("x_train", "y_train", "x_val", "y_val")):
        return True
    return (
        isinstance(data, (tuple, list)) and len(data) in (4, 6)
        and all(isinstance(t, torch.Tensor) for t in data)
    )


def user_data(data: Any, *, target: str | None = None, task: str | None = None, val_fraction: float = 0.2,
              data_seed: int = 0) -> TensorData:
    """The user's data in any form :func:`droplab.data.as_splits` reads, as :class:`TensorData`.

    A ``Splits`` (or an object with ``x_train, y_train, x_val, y_val``) or a tuple of 4 or 6
    tensors is taken as it is (float inputs cast to float32, ``task=`` checked against the
    targets). Anything else -- a DataFrame with ``target=``, a numpy or tensor pair ``(x, y)``,
    a ``Dataset``, a ``DataLoader`` or a function returning batches -- goes through
    :func:`droplab.data.as_splits` with a validation split of ``val_fraction`` drawn with
    ``data_seed``, so every form of the same examples gives the same splits and the same sweep.

    Example:
        >>> x, y = torch.randn(20, 3), torch.arange(20) % 2
        >>> user_data((x, y), task="classification", data_seed=1).n_outputs
        2
    """
    if _is_tensor_data(data):
        if target is not None:
            raise ConfigError("target= names a DataFrame's target column; tensors carry their targets")
        return TensorData(data, task)
    from droplab.data import as_splits

    return TensorData(as_splits(data, target=target, task=task, val_fraction=val_fraction, seed=data_seed))


class ModulePlan:
    """Configurations of a user build function: ``train.*`` axes go to training, the rest to it."""

    kind = "module"

    def __init__(self, build, data, base_train, population, *, regularization: Sequence[str] = (),
                 convert: bool = True):
        if not callable(build):
            raise ConfigError(f"build must be a callable (configuration dict -> nn.Module), got {build!r}")
        self.build = build
        self.splits = data if isinstance(data, TensorData) else TensorData(data)
        self.base_train = base_train
        self.population = population
        self.regularization = selection.check_regularization(regularization)
        self.convert = bool(convert)
        self._structures: dict[str, Any] = {}  # build parameters (JSON) -> structure key

    def check_axis(self, name: str) -> None:
        if name.startswith("train."):
            field = name[len("train.") :]
            if field not in TrainConfig.__dataclass_fields__ or field == "seed":
                from droplab._checks import did_you_mean

                raise ConfigError(
                    f"unknown axis {name!r}{did_you_mean(field, list(TrainConfig.__dataclass_fields__))}; "
                    f"train axes are train.<TrainConfig field>"
                )
        if name.startswith("data."):
            raise ConfigError(f"axis {name!r}: data axes need a named dataset; with your own tensors, sweep them yourself")

    def resolve(self, params: Mapping[str, Any]) -> Resolved:
        params = dict(params)
        for name in params:
            self.check_axis(name)
        try:
            train = _split_train(params, self.base_train)
        except ConfigError as exc:
            raise ConfigError(f"configuration {config_key(params)}: {exc}") from None
        build_params = {k: v for k, v in params.items() if not k.startswith("train.")}
        structure, found = self._structure(build_params)
        axes = selection.rate_axes(build_params, self.regularization + found)
        rates = [float(build_params[k]) for k in axes if isinstance(build_params[k], (int, float))]
        arch_params = {k: v for k, v in params.items() if k == "model" or k.startswith("model.")}
        return Resolved(
            params=params,
            key=config_key(params),
            train=train,
            data_key="user",
            group={"net": "module", **structure, "train": _group_train(train)},
            net="module",
            arch=config_key(arch_params) if arch_params else "",
            strength=_strength(rates, train),
            rate_axes=tuple(axes),
        )

    def data(self, r: Resolved):
        return self.splits

    def _make(self, params: Mapping[str, Any], key: str) -> nn.Module:
        """The user's model for ``params`` (its build parameters), torch's dropout converted."""
        model = self.build(dict(params))
        if not isinstance(model, nn.Module):
            raise ConfigError(
                f"the build function must return an nn.Module, got {type(model).__name__} "
                f"for configuration {key!r}"
            )
        if self.convert:
            from droplab.nn import convert

            model = convert(model)
        return model

    def _structure(self, params: Mapping[str, Any]) -> tuple[dict[str, Any], tuple[str, ...]]:
        """The population group of a configuration's model, and the axes found to set a dropout rate.

        Models that differ only in the rates of droplab's unit, channel and alpha dropout
        layers (held per member in ``rate`` buffers, :func:`droplab.nn.rates_as_buffers`) share
        a group: the group is :func:`module_signature` plus every module's plain attributes (a
        rate kept in any other attribute keeps its configuration apart). A numeric axis whose
        value changes a rate buffer (the model built with the axis at another value) counts as a
        regularization axis. A model that cannot be built here keeps the build parameters as its
        group: the validation reports the error.
        """
        pkey = to_json(params)
        if pkey not in self._structures:
            try:
                sig, rates = self._signature(params)
            except Exception:  # noqa: BLE001 - reported by the engine's validation, with context
                self._structures[pkey] = ({"build": dict(params)}, ())
            else:
                found = []
                for name, value in params.items():
                    if name in self.regularization or not selection.is_probability(value):
                        continue
                    other = 0.5 if value != 0.5 else 0.25
                    try:
                        sig2, rates2 = self._signature({**params, name: other})
                    except Exception:  # noqa: BLE001 - the other value is only a probe
                        continue
                    if sig2 == sig and rates2 != rates:
                        found.append(name)
                self._structures[pkey] = ({"structure": sig}, tuple(found))
        return self._structures[pkey]

    def _signature(self, params: Mapping[str, Any]) -> tuple[str, tuple[float, ...]]:
        from droplab.nn import rates_as_buffers
        from droplab.sweep.population import module_signature
        from droplab.train.schedules import scheduled_layers

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = self._make(params, config_key(params))
        rates_as_buffers(model)
        # ModuleNet's rule: a schedule of a layer with a rate buffer is per member; the others
        # are shared by a population, so they are part of its group.
        attrs: list = [
            ("schedule", str(s), p) for layer, p, s in scheduled_layers(model) if "rate" not in layer._buffers
        ]
        for name, mod in model.named_modules():
            own = {
                k: v for k, v in vars(mod).items()
                if not k.startswith("_") and k != "training" and isinstance(v, (bool, int, float, str, type(None)))
                and not (k == "p" and "rate" in mod._buffers)
            }
            attrs.append((name, sorted(own.items())))
        rates = tuple(float(b) for n, b in model.named_buffers() if n.rsplit(".", 1)[-1] == "rate")
        return group_hash([repr(module_signature(model)), attrs]), rates

    def builder(self, r: Resolved, splits) -> Callable[[Member], nn.Module]:
        """``member -> model``: each member's own configuration (members of one group differ in rates)."""

        def make(member: Member) -> nn.Module:
            params = {k: v for k, v in member.params.items() if not k.startswith("train.")}
            return self._make(params, member.key)

        return make

    def make_net(self, r: Resolved, members, splits):
        return ModuleNet(self.builder(r, splits), members)

    def without_data(self) -> ModulePlan:
        """A copy holding no data (what a remote executor sends; the splits travel apart)."""
        plan = copy.copy(self)
        plan.splits = None
        return plan

    def describe(self) -> dict[str, Any]:
        name = getattr(self.build, "__qualname__", type(self.build).__name__)
        out = {
            "build": f"{getattr(self.build, '__module__', '?')}.{name}",
            "train": self.base_train.to_dict(),
            "data": self.splits.fingerprint(),
        }
        if not self.convert:
            out["convert"] = False
        return out


def make_plan(build: Any, data: Any, train: TrainConfig, *, models: Mapping[str, Any] | None = None,
              population: bool = True, regularization: Sequence[str] = (), convert: bool = True,
              data_options: Mapping[str, Any] | None = None) -> SpecPlan | ModulePlan:
    """The plan of ``run_sweep(build, data, ...)``: a :class:`SpecPlan` for a ``ModelSpec``
    (``data``: ``load_dataset`` options, or data in any form :func:`user_data` reads), a
    :class:`ModulePlan` for a build function. ``data_options``: :func:`user_data`'s ``target``,
    ``task``, ``val_fraction`` and ``data_seed``."""
    from droplab.models import ModelSpec

    opts = dict(data_options or {})
    if isinstance(build, ModelSpec):
        if data is None:
            raise ConfigError("data is required: a dict of load_dataset options like {'name': 'mnist1d'}, or a Splits")
        if isinstance(data, Mapping):
            if opts:
                raise ConfigError(f"{', '.join(sorted(opts))} apply to your own data; give load_dataset options in data")
            return SpecPlan(build, models, train, dict(data), population, load_data, regularization=regularization)
        splits = user_data(data, **opts)
        return SpecPlan(
            build, models, train, {"tensors": splits.fingerprint()}, population,
            lambda opts: splits, fixed_data=True, regularization=regularization,
        )
    if build is None:
        raise ConfigError("run_sweep needs a build function, a ModelSpec or a SweepConfig")
    if models:
        raise ConfigError("models applies to droplab's ModelSpec sweeps; a build function builds its own")
    if data is None:
        raise ConfigError("data is required: (x_train, y_train, x_val, y_val[, x_test, y_test]) or a Splits")
    return ModulePlan(build, user_data(data, **opts), train, population, regularization=regularization,
                      convert=convert)

def seed_list(seeds: int | Sequence[int]) -> list[int]:
    """A count ``n`` (seeds ``0..n-1``) or a list of distinct non-negative seeds -> the list.

    Example:
        >>> seed_list(3), seed_list([7, 2])
        ([0, 1, 2], [7, 2])
    """
    if isinstance(seeds, bool):
        raise ConfigError(f"seeds must be a positive count or a list of seeds, got {seeds!r}")
    if isinstance(seeds, int):
        if seeds < 1:
            raise ConfigError(f"seeds must be a positive count or a list of seeds, got {seeds!r}")
        return list(range(seeds))
    out = list(seeds)
    if not out or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in out):
        raise ConfigError(f"seeds must be non-negative integers, got {list(seeds)!r}")
    if len(set(out)) != len(out):
        raise ConfigError(f"seeds must not repeat, got {out!r}")
    return out


def load_data(options: dict[str, Any]):
    """The splits of a dataset given as ``load_dataset`` options (split seed 0 unless given)."""
    from droplab.train.config import DataConfig

    return DataConfig.from_dict({"seed": 0, **options}).load()
