"""The sweep engine: configurations x seeds, trained as populations, stored, resumable.

:func:`run_sweep` does, in order:

1. **Validate everything first.** Every configuration the space will run (grid and random:
   all of them; TPE: every value and range end of every axis) is resolved into a model and a
   training configuration, and each distinct architecture is built and run forward on two
   examples. A bad rate, key, dataset or model is rejected before any training starts.
2. **Group** the runs (configuration x seed) into populations: runs that share an architecture
   and the group-level training options train together (see :mod:`droplab.sweep.population`);
   a memory budget splits a population that would not fit. Different architectures are
   different populations.
3. **Train** each population epoch by epoch. Every epoch the rows of all its members are
   committed to the study store in one transaction, together with a checkpoint of the whole
   population when ``checkpoint_seconds`` have passed since the last one (and always at the
   end). The trade-off: a checkpoint of K members costs a few times K models' weights in
   SQLite; writing one every epoch of a fast population would cost more than the epoch.
   After a crash, at most ``checkpoint_seconds`` of training are redone, and the epochs redone
   are bitwise identical to the ones already recorded, which they replace.
4. **Resume** is the same call on the same store: finished runs are read back, not rerun;
   an unfinished population is rebuilt from the plan and continues from its checkpoint (or
   from the start if it had none). ``droplab sweep --resume study.db`` reads the sweep's
   configuration back from the store.
5. **Summarize**: per configuration the validation metric's mean and 95% t-interval over
   seeds, the best configuration and the one-standard-error choice, paired differences
   against the configuration without dropout (same seeds), cost per run; with an
   architecture axis, each architecture at its own best configuration. The test split is
   evaluated only for those selected configurations, from the final weights kept in the
   store's checkpoints. The summary is stored (``Store.set_summary``) and returned.
6. **Compact**: a finished population's checkpoint is replaced by its members' final
   weights as soon as its runs are recorded; once the study is complete (summary stored, no
   run unfinished or failed) those go too and the file is vacuumed. A rerun of a complete
   study reads its test metrics back from the stored summary.

Models that cannot be stacked (``Unstackable``) and ``population=False`` train one run at a
time with :class:`droplab.train.Trainer`, still committing every epoch to the store.

**Where** populations train is an executor's business; the engine decides **what** trains
(each population: its members, their settings, the checkpoint to resume from) and alone
writes the store. Training is one function, ``_train_job``, that reports each step as an
event (a run started, an epoch's rows and maybe a checkpoint, runs finished); the driver
turns every event into the same store transaction as a local sweep. :class:`LocalExecutor`
(the default) calls it in this process, one population after another;
:class:`droplab.sweep.ray_executor.RayExecutor` runs it as Ray tasks across a cluster and
streams the events back. Either way the numbers are the same, and a sweep may be resumed
with the other executor.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from droplab.errors import ConfigError, DataError, StoreError
from droplab.sweep.population import (
    Member,
    MLPNet,
    ModuleNet,
    Population,
    make_population,
    mlp_fast_path,
    mlp_positions,
)
from droplab.sweep.space import GridSpace, OptunaSpace, SearchSpace, config_key
from droplab.stats import Estimate, clip_interval, mean_ci, one_standard_error, paired_difference, select_best
from droplab.stats import compare, interval, resolve_stat, rule_text
from droplab.sweep.store import FINAL_STATUSES, Store
from droplab.train.config import TrainConfig

__all__ = ["run_sweep", "SweepResult", "MEMBER_FIELDS", "EXECUTORS", "LocalExecutor"]

#: Training options that may differ between the members of one population.
MEMBER_FIELDS = ("lr", "weight_decay", "l1", "l2", "max_norm")
#: Where populations train: in this process, or as tasks on a Ray cluster.
EXECUTORS = ("local", "ray")
_STATUS = {"early_stopping": "early_stopped"}
#: Seeds per racing round with ``seeds="auto"`` (the first round included).
_RACE_STEP = 5


# --- plans: how a configuration becomes a model, a training config and data ---------------------
@dataclasses.dataclass
class _Resolved:
    """One configuration, resolved."""

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
    strength: tuple = ()
    baseline: dict[str, Any] | None = None


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _short_hash(value: Any) -> str:
    return hashlib.sha1(_json(value).encode()).hexdigest()[:10]


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
    """Regularization strength for the one-standard-error rule (larger = more regularized)."""
    max_norm = -cfg.max_norm if cfg.max_norm is not None else -math.inf
    return (round(sum(rates), 12), cfg.weight_decay, cfg.l2, cfg.l1, max_norm)


class _SpecPlan:
    """Configurations of droplab's own models: ``model``, ``model.*``, ``dropout.*``, ``train.*``, ``data.*``."""

    kind = "spec"

    def __init__(self, base_spec, models, base_train, base_data, population, data_loader, fixed_data=False):
        from droplab.models import ModelSpec

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

    def resolve(self, params: Mapping[str, Any]) -> _Resolved:
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
        data_key = _json(data)
        fast = self.population and mlp_fast_path(spec) is None
        rates: tuple[float, ...] | None = None
        schedules: tuple[str | None, ...] | None = None
        all_rates: list[float] = []
        for place, d in spec.dropout.items():
            all_rates += list(d.p) if isinstance(d.p, tuple) else [d.p] * (
                spec.n_hidden_positions if place == "hidden" else 1
            )
        if fast:
            rates = tuple(
                spec.dropout["input"].p if place == "input" else spec.dropout["hidden"].rate(i)
                for place, i in mlp_positions(spec)
            )
            schedules = tuple(
                spec.dropout[place].schedule for place, _ in mlp_positions(spec)
            )
            zeroed = spec.to_dict()
            for d in zeroed["dropout"].values():
                d["p"] = 0.0
                d.pop("schedule", None)  # per member: members with other schedules share a population
            group = {"net": "mlp", "spec": zeroed}
        else:
            group = {"net": "module", "spec": spec.to_dict()}
        group.update({"train": _group_train(train), "data": data})
        arch_params = {k: v for k, v in params.items() if k == "model" or k.startswith("model.")}
        baseline = None
        drop_axes = [k for k in params if k == "dropout" or k.startswith("dropout.")]
        if drop_axes:
            baseline = dict(params)
            for k in drop_axes:
                if k == "dropout":
                    baseline[k] = "none"
                elif k.endswith((".layer", ".schedule")):
                    continue
                else:
                    v = params[k]
                    baseline[k] = [0.0] * len(v) if isinstance(v, (list, tuple)) else (0 if isinstance(v, int) else 0.0)
        return _Resolved(
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
            baseline=baseline,
        )

    def data(self, r: _Resolved):
        if r.data_key not in self._data:
            self._data[r.data_key] = self._loader(json.loads(r.data_key))
        return self._data[r.data_key]

    def builder(self, r: _Resolved, splits) -> Callable[[Member], nn.Module]:
        from droplab.models import build_model

        spec = r.spec

        def build(member: Member) -> nn.Module:
            return build_model(spec, splits.input_shape, splits.n_outputs)

        return build

    def make_net(self, r: _Resolved, members, splits):
        if r.net == "mlp":
            return MLPNet(r.spec, splits.input_shape, splits.n_outputs, members)
        return ModuleNet(self.builder(r, splits), members)

    def without_data(self) -> _SpecPlan:
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


class _Data:
    """The user's tensors, in the shape of droplab.data.Splits."""

    def __init__(self, data: Any) -> None:
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
        if len(self.x_train) != len(self.y_train) or len(self.x_val) != len(self.y_val):
            raise DataError(
                f"x and y must have as many examples: train {len(self.x_train)} vs {len(self.y_train)}, "
                f"val {len(self.x_val)} vs {len(self.y_val)}"
            )
        if len(self.x_train) == 0 or len(self.x_val) == 0:
            raise DataError("a sweep needs non-empty training and validation data")
        if task is None:
            task = "regression" if self.y_train.is_floating_point() else "classification"
        self.task = task
        self.input_shape = tuple(self.x_train.shape[1:])
        if getattr(data, "n_outputs", None) is not None:
            self.n_outputs = int(data.n_outputs)
        elif task == "classification":
            self.n_outputs = int(max(self.y_train.max(), self.y_val.max())) + 1
        else:
            self.n_outputs = 1 if self.y_train.dim() == 1 else int(self.y_train.shape[1])

    def fingerprint(self) -> dict[str, Any]:
        h = hashlib.sha1()
        for name in ("x_train", "y_train", "x_val", "y_val"):
            t = getattr(self, name).detach().cpu().contiguous()
            h.update(str((tuple(t.shape), str(t.dtype))).encode())
            h.update(t.numpy().tobytes())
        return {"shapes": {n: list(getattr(self, n).shape) for n in ("x_train", "x_val")}, "sha1": h.hexdigest()}


class _ModulePlan:
    """Configurations of a user build function: ``train.*`` axes go to training, the rest to it."""

    kind = "module"

    def __init__(self, build, data, base_train, population):
        if not callable(build):
            raise ConfigError(f"build must be a callable (configuration dict -> nn.Module), got {build!r}")
        self.build = build
        self.splits = _Data(data)
        self.base_train = base_train
        self.population = population

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

    def resolve(self, params: Mapping[str, Any]) -> _Resolved:
        params = dict(params)
        for name in params:
            self.check_axis(name)
        try:
            train = _split_train(params, self.base_train)
        except ConfigError as exc:
            raise ConfigError(f"configuration {config_key(params)}: {exc}") from None
        build_params = {k: v for k, v in params.items() if not k.startswith("train.")}
        rates = [
            float(v) for k, v in build_params.items()
            if "dropout" in k and isinstance(v, (int, float)) and not isinstance(v, bool)
        ]
        arch_params = {k: v for k, v in params.items() if k == "model" or k.startswith("model.")}
        baseline = None
        drop_axes = [k for k, v in build_params.items() if "dropout" in k and isinstance(v, (int, float))]
        if drop_axes:
            baseline = dict(params)
            for k in drop_axes:
                baseline[k] = 0 if isinstance(params[k], int) else 0.0
        return _Resolved(
            params=params,
            key=config_key(params),
            train=train,
            data_key="user",
            group={"net": "module", "build": build_params, "train": _group_train(train)},
            net="module",
            arch=config_key(arch_params) if arch_params else "",
            strength=_strength(rates, train),
            baseline=baseline,
        )

    def data(self, r: _Resolved):
        return self.splits

    def builder(self, r: _Resolved, splits) -> Callable[[Member], nn.Module]:
        build, params = self.build, {k: v for k, v in r.params.items() if not k.startswith("train.")}

        def make(member: Member) -> nn.Module:
            model = build(dict(params))
            if not isinstance(model, nn.Module):
                raise ConfigError(
                    f"the build function must return an nn.Module, got {type(model).__name__} "
                    f"for configuration {r.key!r}"
                )
            return model

        return make

    def make_net(self, r: _Resolved, members, splits):
        return ModuleNet(self.builder(r, splits), members)

    def without_data(self) -> _ModulePlan:
        """A copy holding no data (what a remote executor sends; the splits travel apart)."""
        plan = copy.copy(self)
        plan.splits = None
        return plan

    def describe(self) -> dict[str, Any]:
        name = getattr(self.build, "__qualname__", type(self.build).__name__)
        return {
            "build": f"{getattr(self.build, '__module__', '?')}.{name}",
            "train": self.base_train.to_dict(),
            "data": self.splits.fingerprint(),
        }


# --- results ---------------------------------------------------------------------------------------
@dataclasses.dataclass
class SweepResult:
    """What :func:`run_sweep` returns (and stores as the study's summary).

    Attributes:
        store: path of the study store.
        metric: the selection metric (a history key such as ``val_acc``).
        maximize: whether larger values of ``metric`` are better.
        rows: one dict per configuration: ``key``, ``params``, ``arch``, ``n`` (seeds with a
            finite metric), ``mean``, ``lo``, ``hi``, ``sd`` (95% t-interval over seeds),
            ``values`` (seed -> metric), ``diff`` (paired difference against the
            configuration without dropout: ``mean``, ``lo``, ``hi``, ``n``; None without a
            baseline), ``seconds`` and ``peak_mem_mb`` (mean per run), ``statuses``.
        best: key of the configuration with the best mean.
        one_se: key of the one-standard-error choice.
        per_arch: architecture -> key of its best configuration (with an architecture axis).
        test: selected key -> ``{"mean", "lo", "hi", "n", "values", "loss_mean", ...}`` on the
            test split (only selected configurations are ever evaluated on it).
        notes: messages about how the sweep ran (e.g. a model trained one by one, and why).
        stat: the decision rule the intervals and ``diff`` verdicts used (``"t"`` or
            ``"bootstrap"``, :func:`droplab.stats.compare`); ``stat_text`` says it in words.
            ``diff`` then also has ``p``, ``p_holm`` (Holm across the configurations sharing
            the baseline), ``decided``, ``better``, ``worse``, ``prob`` (P(better than the
            baseline)) and ``seeds_needed``.
        step_cost: configuration key -> its cost trained alone (per-step wall time and memory,
            ratio to its no-dropout baseline; :func:`droplab.sweep.cost.measure_step_costs`).
        racing: with ``seeds="auto"``, configuration key -> ``{"seeds", "why"}``: how many
            seeds it got and why it stopped there; ``{}`` otherwise.
    """

    store: str
    metric: str
    maximize: bool
    rows: list[dict[str, Any]]
    best: str | None
    one_se: str | None
    per_arch: dict[str, str]
    test: dict[str, dict[str, Any]]
    notes: list[str]
    confidence: float = 0.95
    stat: str = "t"
    stat_text: str = ""
    step_cost: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    racing: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (what ``Store.summary()`` returns)."""
        return dataclasses.asdict(self)

    def row(self, key: str) -> dict[str, Any]:
        """The table row of configuration ``key``."""
        for r in self.rows:
            if r["key"] == key:
                return r
        raise KeyError(key)

    def table(self):
        """A ``rich.table.Table`` of the results (what ``droplab sweep`` prints)."""
        from rich.table import Table

        pct = int(round(self.confidence * 100))
        t = Table(title=f"{self.metric} ({'higher' if self.maximize else 'lower'} is better), mean and {pct}% CI over seeds",
                  caption=self.stat_text or None)
        t.add_column("configuration")
        t.add_column("n", justify="right")
        t.add_column(self.metric, justify="right")
        t.add_column(f"{pct}% CI", justify="right")
        t.add_column("vs no dropout", justify="right")
        t.add_column("s/run", justify="right")
        t.add_column("MB/run", justify="right")
        t.add_column("", justify="left")
        for r in self.rows:
            marks = []
            if r["key"] == self.best:
                marks.append("best")
            if r["key"] == self.one_se:
                marks.append("1-SE")
            if r["key"] in self.per_arch.values() and r["key"] != self.best and self.per_arch:
                marks.append("best of arch")
            diff = r.get("diff")
            diff_text = ""
            if diff is not None and diff["n"]:
                diff_text = f"{diff['mean']:+.4f}"
                if math.isfinite(diff["lo"]):
                    diff_text += f" [{diff['lo']:+.4f}, {diff['hi']:+.4f}]"
                if "decided" in diff:
                    diff_text += " better" if diff["better"] else " worse" if diff["worse"] else " undecided"
            ci = f"[{r['lo']:.4f}, {r['hi']:.4f}]" if math.isfinite(r["lo"]) else "-"
            t.add_row(
                r["key"],
                str(r["n"]),
                f"{r['mean']:.4f}" if math.isfinite(r["mean"]) else "nan",
                ci,
                diff_text,
                f"{r['seconds']:.2f}",
                f"{r['peak_mem_mb']:.1f}",
                ", ".join(marks),
            )
        return t

    def test_table(self):
        """A ``rich.table.Table`` of the selected configurations' test metrics."""
        from rich.table import Table

        # Each column is named by the value under it: ``mean`` is the task's metric (test_acc or
        # test_rmse) whatever the selection metric; a loss-selected sweep also shows test_loss.
        metric = next((info["metric"] for info in self.test.values()), self.metric.replace("val_", "test_", 1))
        with_loss = self.metric.endswith("loss") and metric != "test_loss"
        pct = int(round(self.confidence * 100))
        t = Table(title=f"test split, selected configurations only ({pct}% CI over seeds)")
        t.add_column("selected as")
        t.add_column("configuration")
        t.add_column(metric, justify="right")
        t.add_column(f"{pct}% CI", justify="right")
        if with_loss:
            t.add_column("test_loss", justify="right")
            t.add_column(f"{pct}% CI ", justify="right")
        for key, info in self.test.items():
            ci = f"[{info['lo']:.4f}, {info['hi']:.4f}]" if math.isfinite(info["lo"]) else "-"
            cells = [", ".join(info["selected_as"]), key, f"{info['mean']:.4f}", ci]
            if with_loss:
                lci = f"[{info['loss_lo']:.4f}, {info['loss_hi']:.4f}]" if math.isfinite(info["loss_lo"]) else "-"
                cells += [f"{info['loss_mean']:.4f}", lci]
            t.add_row(*cells)
        return t


# --- the engine ------------------------------------------------------------------------------------
def _default_metric(task: str) -> str:
    return "val_acc" if task == "classification" else "val_loss"


def _maximize(metric: str) -> bool:
    name = metric.rsplit("_", 1)[-1]
    if name in ("acc", "accuracy"):
        return True
    if name in ("loss", "rmse"):
        return False
    raise ConfigError(f"metric must be val_acc, val_loss or val_rmse, got {metric!r}")


def _estimate_mb(net_kind: str, r: _Resolved, splits, k: int) -> float:
    """Rough memory of a population of k members (params, grads, optimizer, best copy, activations)."""
    cfg = r.train
    if net_kind == "mlp":
        widths = [math.prod(splits.input_shape), *r.spec.hidden, splits.n_outputs]
        n_params = sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))
        act = cfg.batch_size * sum(widths) * 3 + cfg.eval_batch_size * max(widths) * 2
    else:
        n_params = 0
        act = cfg.batch_size * math.prod(splits.input_shape) * 64  # unknown model: a generous guess
    per_member = (n_params * 6 + act) * 4
    return k * per_member / 2**20


class _Progress:
    """One rich progress bar for the whole sweep (member-epochs done / planned)."""

    def __init__(self, enabled: bool, console: Any) -> None:
        self.enabled = enabled
        self.console = console
        self._progress = None
        self._task = None

    def __enter__(self) -> _Progress:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("[bold]sweep[/bold] {task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("member-epochs"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task("", total=0)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def plan(self, n: int) -> None:
        if self._progress is not None:
            task = self._progress.tasks[0]
            self._progress.update(self._task, total=(task.total or 0) + n)

    def advance(self, n: int, text: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, advance=n, description=text)

    def note(self, text: str) -> None:
        if self.console is not None:
            self.console.print(f"[yellow]note:[/yellow] {text}")


def _rows_for_store(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v) for k, v in row.items() if k != "epoch"}


# --- executors: what to train is decided here, where it trains by an executor ----------------------
#: Statuses of runs a resume reads back instead of training; "failed" runs are trained again.
_RECORDED = tuple(s for s in FINAL_STATUSES if s != "failed")


@dataclasses.dataclass
class _Job:
    """One population of a round, as the driver tracks it across attempts."""

    pkey: str
    label: str
    part: list[tuple[_Resolved, int]]
    run_ids: list[int | None] = dataclasses.field(init=False)
    shown: list[int] = dataclasses.field(init=False)  # epochs on the progress bar, per member
    failures: int = dataclasses.field(default=0, init=False)  # failed attempts (remote executors)

    def __post_init__(self) -> None:
        self.run_ids = [None] * len(self.part)
        self.shown = [0] * len(self.part)

    @property
    def epochs(self) -> int:
        return self.part[0][0].train.epochs


@dataclasses.dataclass
class _Work:
    """What one attempt at a job needs, wherever it runs: picklable, no store, no data.

    ``checkpoint`` is the population's last checkpoint and ``run_checkpoints`` those of runs
    trained one by one (member index -> (epoch, blob)); ``recorded`` are members already
    finished. The driver reads them from the store before every attempt.
    """

    pkey: str
    plan: Any
    part: list[tuple[_Resolved, int]]
    checkpoint: tuple[int, bytes] | None
    run_checkpoints: dict[int, tuple[int, bytes]]
    recorded: frozenset[int]
    checkpoint_seconds: float


def _members(part) -> list[Member]:
    return [Member(r.key, r.params, s, r.train, r.rates, schedules=r.schedules) for r, s in part]


def _make_population(plan, part, splits) -> tuple[Population | None, str]:
    """The population of ``part``, or None and the reason it must train one run at a time."""
    r0 = part[0][0]
    if not plan.population:
        return None, "population training is off (population=False)"
    members = _members(part)
    data = (splits.x_train, splits.y_train, splits.x_val, splits.y_val)
    return make_population(
        lambda: plan.make_net(r0, members, splits), members, data, splits.task,
        device=r0.train.resolve_device(),
    )


def _worker_info() -> dict[str, Any]:
    import socket

    return {"host": socket.gethostname(), "pid": os.getpid()}


def _train_job(
    work: _Work, splits, emit: Callable[[dict[str, Any]], None], worker: dict[str, Any] | None = None
) -> Population | None:
    """Train one job and report every step to ``emit``; the same code for every executor.

    Events (dicts, by ``"kind"``), in order: ``note`` (the population trains one run at a
    time, and why); per run trained alone ``recorded`` (already finished) or ``start``; then
    ``start`` (``members``, the ``epoch`` the checkpoint resumed at); per epoch ``epoch``
    (``rows``: member index -> history row; ``checkpoint``: bytes or None; ``single``;
    ``worker``); ``weights`` (final weights of a run trained alone); ``finish`` (``items``:
    ``(member, status, result, cost)``). The driver turns them into store transactions.

    Returns the finished population (its state is the final checkpoint's), or None when the
    runs trained one by one.
    """
    worker = _worker_info() if worker is None else worker
    part = work.part
    pop, why = _make_population(work.plan, part, splits)
    if pop is None:
        emit({"kind": "note", "text": (
            f"{len({r.key for r, _ in part})} configuration(s) of population {work.pkey} train one by one "
            f"with the Trainer: {why}"
        )})
        for i, (r, s) in enumerate(part):
            if i in work.recorded:
                emit({"kind": "recorded", "member": i})
            else:
                _train_single(work, i, splits, emit, worker)
        return None
    if work.checkpoint is not None:
        pop.load_bytes(work.checkpoint[1])
    emit({"kind": "start", "members": list(range(len(part))), "epoch": pop.epoch})
    last_ck = time.perf_counter()
    while not pop.done:
        rows = pop.run_epoch()
        blob = None
        if pop.done or time.perf_counter() - last_ck >= work.checkpoint_seconds:
            blob = pop.to_bytes()
            last_ck = time.perf_counter()
        emit({"kind": "epoch", "epoch": pop.epoch, "rows": rows, "checkpoint": blob, "single": False, "worker": worker})
    items = [(i, pop.status[i], pop.result(i), pop.cost(i)) for i in range(len(part))]
    emit({"kind": "finish", "items": items, "single": False, "weights": pop.final_bytes()})
    return pop


def _train_single(work: _Work, i: int, splits, emit, worker: dict[str, Any]) -> None:
    """Member ``i`` of ``work`` trained alone by the :class:`~droplab.train.Trainer`."""
    from droplab.train import Callback, Trainer

    r, seed = work.part[i]
    ck = work.run_checkpoints.get(i)
    emit({"kind": "start", "members": [i], "epoch": 0 if ck is None else ck[0]})
    member = Member(r.key, r.params, seed, r.train, r.rates, schedules=r.schedules)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = work.plan.builder(r, splits)(member)
    cfg = r.train.replace(seed=seed, checkpoint_dir=None)
    every = work.checkpoint_seconds

    class _Emit(Callback):
        def __init__(self) -> None:
            self.last = time.perf_counter()

        def on_epoch_end(self, trainer, *, epoch, logs, **kwargs):
            blob = None
            if epoch >= cfg.epochs or trainer.should_stop or time.perf_counter() - self.last >= every:
                blob = _trainer_blob(trainer)
                self.last = time.perf_counter()
            emit({"kind": "epoch", "epoch": epoch, "rows": {i: logs}, "checkpoint": blob, "single": True,
                  "worker": worker})

    trainer = Trainer(model, cfg, [_Emit()])
    with tempfile.TemporaryDirectory(prefix="droplab-run-") as tmp:
        resume = None
        if ck is not None:
            resume = os.path.join(tmp, "resume.pt")
            with open(resume, "wb") as fh:
                fh.write(ck[1])
        result = trainer.fit(
            (splits.x_train, splits.y_train), val=(splits.x_val, splits.y_val), task=splits.task, resume=resume
        )
    if result.stop_reason == "interrupted":
        raise KeyboardInterrupt
    status = _STATUS.get(result.stop_reason, result.stop_reason)
    metric = "acc" if splits.task == "classification" else "rmse"
    res = {
        "best_epoch": result.best_epoch,
        "weights_epoch": result.best_epoch if result.restored else result.epochs_run,
        "epochs_run": result.epochs_run,
        "stop_reason": status,
        "restored": result.restored,
    }
    for split in ("train", "val"):
        values = getattr(result, split) or {}
        prefix = "train_eval" if split == "train" else "val"
        for k in ("loss", metric):
            if k in values:
                res[f"{prefix}_{k}"] = values[k]
    cost = {
        "seconds": sum(row["seconds"] for row in result.history),
        "peak_mem_mb": max((row.get("peak_mem_mb", 0.0) for row in result.history), default=0.0),
        "population_size": 1,
        "population_seconds": result.seconds,
    }
    emit({"kind": "weights", "member": i, "epoch": result.epochs_run, "blob": _state_blob(model.state_dict())})
    emit({"kind": "finish", "items": [(i, status, res, cost)], "single": True})


class LocalExecutor:
    """Train the populations one after another in this process (the default executor).

    An executor decides *where* populations train; the engine decides *what* (the
    populations, their members and settings) and alone writes the study store. An executor
    is any object with ``run(jobs, driver)``: for each job, ``driver.prepare(job)`` gives the
    work of one attempt (None when all its runs are recorded), which ``_train_job`` trains
    where the executor likes, handing each event, in order, to ``driver.apply(job, event)``
    in the driver's process. See :class:`droplab.sweep.ray_executor.RayExecutor` for one that
    trains on a Ray cluster.

    Example::

        run_sweep(cfg, executor=LocalExecutor())   # what executor="local" does
    """

    name = "local"

    def run(self, jobs: Sequence[_Job], driver: _Engine) -> None:
        """Train ``jobs`` in order, in this process."""
        for job in jobs:
            driver.keep_final(job.pkey, None)  # free the last population before the next trains
            work = driver.prepare(job)
            if work is not None:
                pop = _train_job(work, driver.splits(job), lambda event, job=job: driver.apply(job, event))
                if pop is not None:
                    driver.keep_final(job.pkey, pop)


def _make_executor(executor: Any, address: str | None) -> Any:
    """``"local"``, ``"ray"`` or an executor object -> an executor object."""
    if executor is None or executor == "local":
        if address is not None:
            raise ConfigError(
                f"address applies to executor 'ray' (a Ray cluster), got address {address!r} with executor 'local'"
            )
        return LocalExecutor()
    if executor == "ray":
        from droplab.sweep.ray_executor import RayExecutor

        return RayExecutor(address=address)
    if isinstance(executor, str):
        from droplab._checks import check_choice

        check_choice("executor", executor, EXECUTORS)
    if not callable(getattr(executor, "run", None)):
        raise ConfigError(f"executor must be 'local', 'ray' or an object with run(jobs, driver), got {executor!r}")
    if address is not None:
        raise ConfigError("address applies to executor 'ray'; give an executor object its own address")
    return executor


def run_sweep(
    build: Any = None,
    data: Any = None,
    space: SearchSpace | Mapping[str, Any] | None = None,
    *,
    seeds: int | Sequence[int] = 3,
    train: TrainConfig | None = None,
    store: str | os.PathLike[str] | None = None,
    metric: str | None = None,
    name: str = "sweep",
    models: Mapping[str, Any] | None = None,
    memory_mb: float | None = None,
    population: bool = True,
    checkpoint_seconds: float = 10.0,
    confidence: float = 0.95,
    progress: bool = True,
    console: Any = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    executor: Any = None,
    address: str | None = None,
    stat: str | None = None,
    max_seeds: int = 20,
) -> SweepResult:
    """Train every configuration of ``space`` with every seed; store, select, summarize.

    Three ways to say what to train:

    * ``run_sweep(SweepConfig)`` -- a whole sweep from TOML/flags (what ``droplab sweep``
      does); the other arguments but ``progress``, ``console`` and ``on_epoch`` come from it.
    * ``run_sweep(ModelSpec, data={"name": "mnist1d"}, space=...)`` -- droplab's models;
      axes ``dropout.<place>``, ``dropout.<place>.layer``, ``dropout``, ``model`` (a name in
      ``models``), ``model.<field>``, ``train.<field>``, ``data.<option>``.
    * ``run_sweep(build_fn, data=(x_train, y_train, x_val, y_val[, x_test, y_test]), space=...)``
      -- your own model: ``build_fn(configuration) -> nn.Module`` (droplab or torch layers),
      called inside ``torch.random.fork_rng`` with ``torch.manual_seed(seed)`` so that the
      initialization is reproducible and runs with equal seeds start equal. Axes named
      ``train.<field>`` set the training configuration; every other axis is passed to
      ``build_fn``. ``data`` may also be a :class:`droplab.data.Splits`.

    Args:
        build: a :class:`~droplab.sweep.config.SweepConfig`, a ``ModelSpec`` or a callable.
        data: see above; for a ``ModelSpec`` a dict of :func:`droplab.data.load_dataset`
            arguments (``name`` plus options) or a ``Splits``.
        space: a :class:`~droplab.sweep.space.SearchSpace` or a dict of axes (a grid).
        seeds: number of seeds (``0..n-1``), the seeds themselves, or ``"auto"``: racing
            (Maron & Moore 1994; Birattari et al., F-race, GECCO 2002). Every configuration
            starts with 5 seeds; after each round the configurations decided worse than the
            best (:func:`droplab.stats.compare`, Holm within the round, the level split
            Bonferroni-wise over the planned rounds) stop, and the others -- plus the
            no-dropout baseline while the best's comparison with it is open -- get 5 more,
            up to ``max_seeds``. Default 3.
        train: base :class:`TrainConfig` (its ``seed`` is ignored). Default ``TrainConfig()``.
        store: path of the SQLite study store; ``None`` uses a temporary file removed at the
            end. Rerunning with the same store resumes.
        metric: selection metric: ``val_acc`` (default for classification), ``val_loss``
            (default for regression) or ``val_rmse``.
        name: study name. Default ``"sweep"``.
        models: name -> ``ModelSpec`` for a ``model`` axis (architectures as an axis).
        memory_mb: memory budget of one population in MB; larger ones are split. Default
            ``None``: 2048.
        population: train populations vectorized (default True); ``False`` trains one run at
            a time with the Trainer.
        checkpoint_seconds: minimum seconds between population checkpoints (>= 0; 0 = every
            epoch). Default 10.
        confidence: level of the intervals. Default 0.95.
        progress: show a rich progress bar (on stderr). Default True.
        console: a ``rich.console.Console`` for the progress bar and notes.
        on_epoch: called after every committed population epoch with
            ``{"population", "epoch", "members", "rows", "worker"}`` (``worker``: the
            ``host`` and ``pid`` that trained it, and on Ray its ``node``), e.g. to stop or
            inspect a sweep.
        executor: where populations train: ``"local"`` (default: one after another in this
            process), ``"ray"`` (as tasks on a Ray cluster, see
            :class:`~droplab.sweep.ray_executor.RayExecutor`) or an executor object. Not part
            of the study: a sweep may be resumed with another executor. Default ``None``:
            the ``SweepConfig``'s, else ``"local"``.
        address: the Ray cluster for ``executor="ray"``: ``"auto"`` or ``"HOST:PORT"``.
            Default ``None``: the ``SweepConfig``'s, else ``RAY_ADDRESS``, a cluster started
            on this machine, or a new Ray here.
        stat: the decision rule of the summary: ``"t"`` or ``"bootstrap"``
            (:func:`droplab.stats.compare`); stored with the study. Default ``None``: the
            ``SweepConfig``'s, else bootstrap from 5 seeds on, t below.
        max_seeds: the most seeds a configuration gets with ``seeds="auto"``. Default 20.

    Returns:
        A :class:`SweepResult`.

    Example::

        def build(cfg):
            return nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Dropout(cfg["p"]), nn.Linear(64, 3))
        result = run_sweep(build, data=(x, y, xv, yv), space={"p": [0.0, 0.3]}, seeds=3,
                           train=TrainConfig(epochs=5))
        result.best, result.row(result.best)["mean"]
    """
    from droplab.sweep.config import SweepConfig

    if isinstance(build, SweepConfig):
        cfg = build
        if executor is None:
            executor, address = cfg.executor, cfg.address if address is None else address
        return _Engine(
            plan=cfg.plan(),
            space=cfg.make_space(),
            seeds=cfg.seed_list(),
            store=cfg.store,
            metric=cfg.metric,
            name=cfg.name,
            memory_mb=cfg.memory_mb,
            checkpoint_seconds=cfg.checkpoint_seconds,
            confidence=confidence,
            spec=cfg.to_dict(),
            progress=progress,
            console=console,
            on_epoch=on_epoch,
            executor=_make_executor(executor, address),
            stat=cfg.stat if stat is None else stat,
            race=cfg.max_seeds if cfg.seeds == "auto" else None,
        ).run()
    train = TrainConfig() if train is None else train
    if not isinstance(train, TrainConfig):
        raise ConfigError(f"train must be a TrainConfig, got {type(train).__name__}")
    if space is None:
        space = {}
    if not isinstance(space, SearchSpace):
        space = GridSpace(space)
    from droplab.models import ModelSpec

    if isinstance(build, ModelSpec):
        if data is None:
            raise ConfigError("data is required: a dict of load_dataset options like {'name': 'mnist1d'}, or a Splits")
        if isinstance(data, Mapping):
            plan: Any = _SpecPlan(build, models, train, dict(data), population, _load_data)
        else:
            splits = _Data(data)
            plan = _SpecPlan(
                build, models, train, {"tensors": splits.fingerprint()}, population,
                lambda opts: splits, fixed_data=True,
            )
    elif build is None:
        raise ConfigError("run_sweep needs a build function, a ModelSpec or a SweepConfig")
    else:
        if models:
            raise ConfigError("models applies to droplab's ModelSpec sweeps; a build function builds its own")
        if data is None:
            raise ConfigError("data is required: (x_train, y_train, x_val, y_val[, x_test, y_test]) or a Splits")
        plan = _ModulePlan(build, data, train, population)
    race = None
    if isinstance(seeds, str) and seeds == "auto":
        from droplab._checks import check_positive_int

        race = check_positive_int("max_seeds", max_seeds)
        if isinstance(space, OptunaSpace):
            raise ConfigError("seeds='auto' races the configurations of a grid or random space; "
                              "TPE already chooses what to train next")
        seeds = max_seeds
    seed_list = _seed_list(seeds)
    spec = {"plan": plan.describe(), "space": space.spec(), "seeds": seed_list, "metric": metric,
            "population": population}
    if stat is not None:
        spec["stat"] = stat
    if race is not None:
        spec["seeds"], spec["max_seeds"] = "auto", race
    runner = _make_executor(executor, address)
    return _Engine(
        plan=plan,
        space=space,
        seeds=seed_list,
        store=store,
        metric=metric,
        name=name,
        memory_mb=memory_mb,
        checkpoint_seconds=checkpoint_seconds,
        confidence=confidence,
        spec=spec,
        progress=progress,
        console=console,
        on_epoch=on_epoch,
        executor=runner,
        stat=stat,
        race=race,
    ).run()


def _seed_list(seeds: int | Sequence[int]) -> list[int]:
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


def _load_data(options: dict[str, Any]):
    from droplab.train.config import DataConfig

    return DataConfig.from_dict({"seed": 0, **options}).load()


class _Engine:
    def __init__(self, *, plan, space, seeds, store, metric, name, memory_mb, checkpoint_seconds,
                 confidence, spec, progress, console, on_epoch, executor, stat=None, race=None):
        self.plan = plan
        self.race = race  # max seeds of a racing sweep (seeds="auto"), else None
        self.racing: dict[str, dict[str, Any]] = {}
        if stat is not None:
            from droplab._checks import check_choice
            from droplab.stats import STATS

            check_choice("stat", stat, STATS)
        self.stat = stat
        self.executor = executor
        self.space = space
        self.seeds = seeds
        self.store_path = store
        self.metric = metric
        self.name = name
        if memory_mb is not None and (
            isinstance(memory_mb, bool) or not isinstance(memory_mb, (int, float)) or memory_mb <= 0
        ):
            raise ConfigError(f"memory_mb must be a number > 0, got {memory_mb!r}")
        self.memory_mb = 2048.0 if memory_mb is None else float(memory_mb)
        if isinstance(checkpoint_seconds, bool) or not isinstance(checkpoint_seconds, (int, float)) or checkpoint_seconds < 0:
            raise ConfigError(f"checkpoint_seconds must be a number >= 0, got {checkpoint_seconds!r}")
        self.checkpoint_seconds = float(checkpoint_seconds)
        self.confidence = confidence
        self.spec = spec
        self.on_epoch = on_epoch
        if console is None and progress:
            from rich.console import Console

            console = Console(stderr=True)
        self.console = console
        self.progress_enabled = bool(progress)
        self.notes: list[str] = []
        self.resolved: dict[str, _Resolved] = {}
        self.config_ids: dict[str, int] = {}
        self.pop_keys: dict[tuple[str, int], str] = {}  # (config key, seed) -> population key
        self._finals: dict[str, Population | None] = {}  # one finished population, for the test split
        self._stored_test: dict[str, dict[str, Any]] = {}  # test metrics of a summary already stored
        self.parts: dict[str, list[tuple[_Resolved, int]]] = {}  # population key -> members

    # -- validation ------------------------------------------------------------------------------
    def validate(self) -> None:
        if isinstance(self.space, OptunaSpace):
            self.space.check_available()
        for name in self.space.axes:
            self.plan.check_axis(name)
        points = self.space.validation_points()
        seen_arch: set[str] = set()
        task = None
        for params in points:
            r = self.plan.resolve(params)
            splits = self.plan.data(r)
            task = splits.task
            arch = _json(r.group)
            if arch in seen_arch:
                continue
            seen_arch.add(arch)
            self._check_model(r, splits)
        self.task = task or "classification"
        if self.metric is None:
            self.metric = _default_metric(self.task)
        self.maximize = _maximize(self.metric)
        if self.task == "classification" and self.metric.endswith("rmse"):
            raise ConfigError(f"metric {self.metric!r} is for regression; use val_acc or val_loss")
        if self.task == "regression" and self.metric.endswith("acc"):
            raise ConfigError(f"metric {self.metric!r} is for classification; use val_loss or val_rmse")
        if isinstance(self.space, OptunaSpace):
            self.space.maximize = self.maximize

    def _check_model(self, r: _Resolved, splits) -> None:
        member = Member(r.key, r.params, self.seeds[0], r.train, r.rates, schedules=r.schedules)
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                model = self.plan.builder(r, splits)(member)
                model.eval()
                with torch.no_grad():
                    out = model(splits.x_train[:2])
        except (ConfigError, DataError):
            raise
        except Exception as exc:  # the user's model failing on their data is a config problem
            raise ConfigError(f"configuration {r.key!r}: building or running the model failed: {exc}") from None
        if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[1] != splits.n_outputs:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ConfigError(
                f"configuration {r.key!r}: the model must return (N, {splits.n_outputs}) outputs, got {shape}"
            )

    # -- main ----------------------------------------------------------------------------------
    def run(self) -> SweepResult:
        if self.store_path is not None:
            from droplab._checks import check_writable_file

            check_writable_file("study", self.store_path)
        self.validate()
        tmp = None
        path = self.store_path
        if path is None:
            tmp = tempfile.TemporaryDirectory(prefix="droplab-sweep-")
            path = os.path.join(tmp.name, "study.db")
        try:
            with Store.open(path) as store, _Progress(self.progress_enabled, self.console) as prog:
                self.store = store
                self.progress = prog
                spec = dict(self.spec)
                spec["metric"] = self.metric
                store.init_study(self.name, spec)
                round_no = 0
                if self.race is not None:
                    self._race()
                while self.race is None:
                    configs = self.space.ask()
                    if not configs:
                        break
                    self._run_round(round_no, configs)
                    if self.space.adaptive:
                        for params in configs:
                            values = self._values(config_key(params))
                            est = mean_ci(list(values.values()), self.confidence)
                            self.space.tell(params, est.mean)
                    round_no += 1
                self._stored_test = (store.summary() or {}).get("test") or {}
                step_cost = self._step_costs()
                result = self._summarize(str(path))
                result.step_cost = step_cost
                result.racing = self.racing
                store.set_summary(result.to_dict())
                if tmp is None and store.is_complete():
                    # Every result and the test metrics are committed: the weights kept for the
                    # test split are needed no more (a resume of a complete study reads the
                    # summary). Dropping them shrinks a study from tens of MB to what it records.
                    try:
                        store.drop_checkpoints()
                    except StoreError as exc:  # the results are committed: only the space is lost
                        self.note(f"the study file could not be compacted: {exc}")
                return result
        finally:
            if tmp is not None:
                tmp.cleanup()

    def _register(self, configs: list[dict[str, Any]]) -> list[_Resolved]:
        out = []
        for params in configs:
            r = self.plan.resolve(params)
            self.resolved[r.key] = r
            self.config_ids[r.key] = self.store.add_configuration(r.key, r.params, _short_hash(r.group))
            out.append(r)
        return out

    def _race(self) -> None:
        """``seeds="auto"``: seeds in rounds, only where the decision is still open (see run_sweep)."""
        configs = self.space.ask()
        while more := self.space.ask():
            configs += more
        keys = [self.plan.resolve(p).key for p in configs]
        by_key = dict(zip(keys, configs))
        targets = list(range(min(_RACE_STEP, self.race), self.race, _RACE_STEP)) + [self.race]
        confidence = 1.0 - (1.0 - self.confidence) / len(targets)  # Bonferroni over the planned looks
        n = {k: 0 for k in keys}
        open_keys = list(keys)
        why: dict[str, str] = {}
        stop = f"max_seeds ({self.race}) reached with the decision still open"
        for k, target in enumerate(targets):
            seeds_for = {key: list(range(n[key], target)) for key in open_keys}
            self._run_round(k, [by_key[key] for key in open_keys], seeds_for)
            for key in open_keys:
                n[key] = target
            if k == len(targets) - 1:
                break
            open_keys, decided = self._still_open(keys, n, confidence, why)
            if not open_keys:
                stop = decided
                break
        for key in keys:
            why.setdefault(key, f"raced to the end ({n[key]} seeds): {stop}")
        self.racing = {key: {"seeds": n[key], "why": why[key]} for key in keys}
        self.note(f"seeds=auto ({self.race} at most, rounds of {_RACE_STEP}): {stop}; "
                  + ", ".join(f"{key}: {n[key]}" for key in keys)
                  + f" seeds, {sum(n.values())} runs (fixed {self.race} seeds: {self.race * len(keys)})")

    def _still_open(self, keys: list[str], n: dict[str, int], confidence: float,
                    why: dict[str, str]) -> tuple[list[str], str]:
        """The configurations that get more seeds: not decided worse than the best, plus the
        baseline and the best while their comparison is open. Records why the others stopped;
        with none open, also says what was decided."""
        values = {k: {s: v for s, v in self._values(k).items() if s < n[k]} for k in keys}
        means = {k: mean_ci(list(v.values())) for k, v in values.items()}
        best = select_best(means, maximize=self.maximize)
        if best is None:
            return [], "no configuration has a finite metric"
        out = {best}
        against_best = compare(values, best, maximize=self.maximize, stat=self.stat, confidence=confidence)
        for k, c in against_best.items():
            if c.worse:
                why.setdefault(k, f"stopped at {n[k]} seeds: decided worse than {best} "
                                  f"(p = {c.p_holm:.2g} after Holm, level {1 - confidence:.3g} per round)")
            else:
                out.add(k)
        r = self.resolved[best]
        bkey = self._baseline_key(r) if r.baseline is not None else None
        if bkey in values and bkey != best:
            c = compare({bkey: values[bkey], best: values[best]}, bkey, maximize=self.maximize, stat=self.stat,
                        confidence=confidence)[best]
            decided = f"{best} is the best, decided {'better' if c.better else 'worse'} than {bkey}"
            if not c.decided:
                out |= {bkey}
        else:
            decided = f"{best} is the best"
        if out == {best}:
            return [], decided + ", every other configuration decided worse"
        return [k for k in keys if k in out], ""

    def _run_round(self, round_no: int, configs: list[dict[str, Any]],
                   seeds_for: Mapping[str, list[int]] | None = None) -> None:
        resolved = self._register(configs)
        groups: dict[str, list[_Resolved]] = {}
        for r in resolved:
            groups.setdefault(_json(r.group), []).append(r)
        plan = []
        for gkey, rs in groups.items():
            # Members with equal per-member hyper-parameters next to each other: one optimizer each.
            rs = sorted(rs, key=lambda r: tuple(_sortable(getattr(r.train, f)) for f in MEMBER_FIELDS))
            members = [(r, s) for r in rs for s in (self.seeds if seeds_for is None else seeds_for[r.key])]
            splits = self.plan.data(rs[0])
            per = _estimate_mb(rs[0].net, rs[0], splits, 1)
            chunk = max(1, int(self.memory_mb // max(per, 1e-9)))
            for c in range(0, len(members), chunk):
                part = members[c : c + chunk]
                pkey = f"r{round_no}/{_short_hash(rs[0].group)}/{c // chunk}"
                for r, s in part:
                    self.pop_keys[(r.key, s)] = pkey
                self.parts[pkey] = part
                plan.append((pkey, part))
        self.progress.plan(sum(len(p) for _, p in plan) * max(r.train.epochs for r in resolved))
        label = f"round {round_no + 1} " if self.space.adaptive or seeds_for is not None else ""
        jobs = [
            _Job(pkey, f"{label}population {i + 1}/{len(plan)} ({len(part)} runs)", part)
            for i, (pkey, part) in enumerate(plan)
        ]
        self.executor.run(jobs, self)

    def _run_states(self, part) -> list[dict | None]:
        return [self.store.run_state(self.config_ids[r.key], s) for r, s in part]

    # -- what executors call (on the driver, the only process that writes the store) ------------
    def splits(self, job: _Job):
        """The data the job's population trains on."""
        return self.plan.data(job.part[0][0])

    def prepare(self, job: _Job) -> _Work | None:
        """The work of one attempt at ``job``, from the store as it is now; None if all recorded."""
        states = self._run_states(job.part)
        recorded = [st is not None and st["status"] in _RECORDED for st in states]
        if all(recorded):
            self._progress_to(job, range(len(job.part)), job.epochs, f"{job.label} (recorded)")
            return None
        run_checkpoints = {}
        for i, st in enumerate(states):
            if st is not None and not recorded[i]:
                ck = self.store.load_checkpoint(f"run/{st['id']}")
                if ck is not None:
                    run_checkpoints[i] = ck
        return _Work(
            pkey=job.pkey,
            plan=self.plan,
            part=job.part,
            checkpoint=self.store.load_checkpoint(job.pkey),
            run_checkpoints=run_checkpoints,
            recorded=frozenset(i for i, done in enumerate(recorded) if done),
            checkpoint_seconds=self.checkpoint_seconds,
        )

    def apply(self, job: _Job, event: dict[str, Any]) -> None:
        """Record one event of ``job``'s training (see :func:`_train_job`) in the store."""
        kind, part, epochs = event["kind"], job.part, job.epochs
        if kind == "note":
            self.note(event["text"])
        elif kind == "recorded":
            i = event["member"]
            self._progress_to(job, [i], epochs, f"{part[i][0].key} seed {part[i][1]} (recorded)")
        elif kind == "start":
            for i in event["members"]:
                r, s = part[i]
                job.run_ids[i] = self.store.start_run(self.config_ids[r.key], s)
            self._progress_to(job, event["members"], event["epoch"], job.label)
        elif kind == "epoch":
            epoch, rows, blob = event["epoch"], event["rows"], event["checkpoint"]
            store_rows = [(job.run_ids[i], epoch, _rows_for_store(row)) for i, row in rows.items()]
            if event["single"]:
                (i,) = rows
                r, s = part[i]
                ckey = f"run/{job.run_ids[i]}"
                info = {"population": ckey, "epoch": epoch, "members": 1, "rows": {0: rows[i]}}
                members, text = [i], f"{r.key} seed {s} epoch {epoch}/{epochs}"
            else:
                ckey = job.pkey
                info = {"population": ckey, "epoch": epoch, "members": len(part), "rows": rows}
                members, text = range(len(part)), f"{job.label} epoch {epoch}/{epochs}{self._best_text(rows)}"
            self.store.commit_epoch(store_rows, checkpoint=None if blob is None else (ckey, epoch, blob))
            self._progress_to(job, members, epoch, text)
            if self.on_epoch is not None:
                self.on_epoch({**info, "worker": event["worker"]})
        elif kind == "weights":
            # The final weights of a run trained alone, for the test evaluation of selected configurations.
            i = event["member"]
            self.store.commit_epoch([], checkpoint=(f"final/{job.run_ids[i]}", event["epoch"], event["blob"]))
        elif kind == "finish":
            # A finished population keeps only its members' final weights (for the test split),
            # not its checkpoint (optimizer state, copies, history: several times the weights);
            # a run trained alone has them under final/<run id> already. The weights are
            # committed before the runs finish, the checkpoint dropped after: a crash in between
            # leaves at worst a stale checkpoint, which the end of the sweep drops.
            items = event["items"]
            if event.get("weights") is not None:
                self.store.commit_epoch([], checkpoint=(f"weights/{job.pkey}", epochs, event["weights"]))
            self.store.finish_runs([(job.run_ids[i], status, res, cost) for i, status, res, cost in items])
            stale = [f"run/{job.run_ids[i]}" for i, *_ in items] if event["single"] else [job.pkey]
            for key in stale:
                self.store.delete_checkpoint(key)
            text = part[items[0][0]][0].key if event["single"] else job.label
            self._progress_to(job, [i for i, *_ in items], epochs, text)
        else:  # pragma: no cover - a bug, not a user error
            raise ValueError(f"unknown training event {kind!r}")

    def fail(self, job: _Job, message: str) -> None:
        """Mark the unfinished runs of ``job`` failed (an executor gave up on it); a resume retries them."""
        items = []
        for i, ((r, s), st) in enumerate(zip(job.part, self._run_states(job.part))):
            if st is not None and st["status"] in _RECORDED:
                continue
            run_id = st["id"] if st is not None else self.store.start_run(self.config_ids[r.key], s)
            items.append((run_id, "failed", {"error": message}, {}))
        if items:
            self.store.finish_runs(items)
        self.note(f"{len(items)} run(s) of population {job.pkey} failed: {message}; --resume retries them")
        self._progress_to(job, range(len(job.part)), job.epochs, f"{job.label} (failed)")

    def note(self, text: str) -> None:
        """A message about how the sweep ran: kept in the result and shown under the progress bar."""
        self.notes.append(text)
        self.progress.note(text)

    def _progress_to(self, job: _Job, members, epoch: int, text: str) -> None:
        """Move the bar to ``epoch`` for ``members``; epochs replayed after a failure count once."""
        n = 0
        for i in members:
            if epoch > job.shown[i]:
                n += epoch - job.shown[i]
                job.shown[i] = epoch
        self.progress.advance(n, text)

    def _best_text(self, rows: dict[int, dict[str, Any]]) -> str:
        values = [row.get(self.metric) for row in rows.values()]
        values = [v for v in values if v is not None and math.isfinite(v)]
        if not values:
            return ""
        best = max(values) if self.maximize else min(values)
        return f"  best {self.metric} {best:.4f}"

    # -- summary ---------------------------------------------------------------------------------
    def _values(self, key: str) -> dict[int, float]:
        cid = self.config_ids.get(key)
        out = {}
        for run in self._runs_by_config().get(cid, []):
            res = run["result"] or {}
            v = res.get(self.metric)
            out[run["seed"]] = math.nan if v is None else float(v)
        return out

    def _runs_by_config(self) -> dict[int, list[dict]]:
        by: dict[int, list[dict]] = {}
        for run in self.store.runs():
            if run["seed"] in self.seeds and run["status"] in FINAL_STATUSES:
                by.setdefault(run["config_id"], []).append(run)
        return by

    def _summarize(self, path: str) -> SweepResult:
        by = self._runs_by_config()
        estimates: dict[str, Estimate] = {}
        rows = []
        n_seeds = min((len(by.get(self.config_ids[k], [])) for k in self.resolved), default=0)
        sizes: dict[str, int] = {}
        for key, r in self.resolved.items():
            bkey = self._baseline_key(r) if r.baseline is not None else None
            if bkey is not None and bkey != key and bkey in self.resolved:
                sizes[bkey] = sizes.get(bkey, 0) + 1
        rule = self._rule = resolve_stat(self.stat, n_seeds, max(sizes.values(), default=1), self.confidence)
        for key, r in self.resolved.items():
            runs = by.get(self.config_ids[key], [])
            values = {run["seed"]: _num((run["result"] or {}).get(self.metric)) for run in runs}
            est = interval([values[s] for s in sorted(values)], rule, self.confidence)
            if self.metric.endswith("acc"):
                est = clip_interval(est)  # an accuracy's interval within [0, 1]
            estimates[key] = est
            costs = [run["cost"] or {} for run in runs]
            rows.append(
                {
                    "key": key,
                    "params": r.params,
                    "arch": r.arch,
                    "n": est.n,
                    "mean": est.mean,
                    "lo": est.lo,
                    "hi": est.hi,
                    "sd": est.sd,
                    "values": {str(s): v for s, v in sorted(values.items())},
                    "seconds": _mean([c.get("seconds") for c in costs]),
                    "peak_mem_mb": _mean([c.get("peak_mem_mb") for c in costs]),
                    "statuses": {
                        st: sum(run["status"] == st for run in runs) for st in sorted({run["status"] for run in runs})
                    },
                    "diff": None,
                }
            )
        # Paired differences against the same configuration without dropout.
        for row in rows:
            r = self.resolved[row["key"]]
            if r.baseline is None:
                continue
            bkey = self._baseline_key(r)
            if bkey is None or bkey == row["key"]:
                continue
            base_values = {int(s): v for s, v in self.row_values(rows, bkey).items()}
            d = paired_difference({int(s): v for s, v in row["values"].items()}, base_values, self.confidence)
            row["diff"] = {"baseline": bkey, "mean": d.mean, "lo": d.lo, "hi": d.hi, "n": d.n}
        family = self._decide(rows, rule)
        best = select_best(estimates, maximize=self.maximize)
        one_se = None
        per_arch: dict[str, str] = {}
        if best is not None:
            b = self.resolved[best]
            same = [
                k for k, r in self.resolved.items()
                if _json(_non_reg(r.params)) == _json(_non_reg(b.params))
            ]
            one_se = one_standard_error(
                estimates, maximize=self.maximize, strength=lambda k: self.resolved[k].strength, candidates=same
            )
            archs = sorted({r.arch for r in self.resolved.values()})
            if len(archs) > 1:
                for arch in archs:
                    sub = {k: e for k, e in estimates.items() if self.resolved[k].arch == arch}
                    pick = select_best(sub, maximize=self.maximize)
                    if pick is not None:
                        per_arch[arch] = pick
        selected: dict[str, list[str]] = {}
        if best is not None:
            selected.setdefault(best, []).append("best")
        if one_se is not None:
            selected.setdefault(one_se, []).append("1-SE")
        for arch, key in per_arch.items():
            selected.setdefault(key, []).append(f"best of {arch}")
        test = self._test(selected, by)
        return SweepResult(
            store=path,
            metric=self.metric,
            maximize=self.maximize,
            rows=rows,
            best=best,
            one_se=one_se,
            per_arch=per_arch,
            test=test,
            notes=list(self.notes),
            confidence=self.confidence,
            stat=rule,
            stat_text=rule_text(rule, self.confidence, family, self.stat),
        )

    def _baseline_key(self, r: _Resolved) -> str | None:
        """The configuration like ``r`` without dropout, if the sweep has it.

        A whole dropout string without dropout may be written ``"none"`` or with zero rates
        (``"hidden=0"``): any configuration that differs from ``r.baseline`` only in such a
        string is the baseline.
        """
        bkey = config_key(r.baseline)
        if bkey in self.resolved or "dropout" not in r.params:
            return bkey if bkey in self.resolved else None
        rest = _json({k: v for k, v in r.baseline.items() if k != "dropout"})
        for key, other in self.resolved.items():
            if (
                "dropout" in other.params and other.spec is not None
                and _json({k: v for k, v in other.params.items() if k != "dropout"}) == rest
                and all(p == 0 for d in other.spec.dropout.values()
                        for p in (d.p if isinstance(d.p, tuple) else (d.p,)))
            ):
                return key
        return None

    def _step_costs(self) -> dict[str, dict[str, Any]]:
        """Each configuration's per-step time and memory trained alone (see :mod:`droplab.sweep.cost`).

        Configurations on the same data are timed interleaved on one batch of the first one's
        batch size; the global RNG is left as it was.
        """
        import torch.nn.functional as F

        from droplab.sweep.cost import measure_step_costs
        from droplab.train.optim import build_optimizer

        groups: dict[str, list[_Resolved]] = {}
        for r in self.resolved.values():
            groups.setdefault(r.data_key, []).append(r)
        out: dict[str, dict[str, Any]] = {}
        for rs in groups.values():
            splits = self.plan.data(rs[0])
            device = rs[0].train.resolve_device()
            bs = min(rs[0].train.batch_size, len(splits.x_train))
            x, y = splits.x_train[:bs].to(device), splits.y_train[:bs].to(device)
            if splits.task == "classification":
                loss = F.cross_entropy
            else:
                y, loss = y.float().reshape(len(y), -1), F.mse_loss

            def maker(r: _Resolved, splits=splits, device=device):
                def make():
                    member = Member(r.key, r.params, self.seeds[0], r.train, r.rates)
                    torch.manual_seed(self.seeds[0])
                    model = self.plan.builder(r, splits)(member).to(device)
                    return model, build_optimizer(model, r.train)
                return make

            baseline = {}
            for r in rs:
                bkey = self._baseline_key(r) if r.baseline is not None else None
                if bkey is not None and bkey != r.key and bkey in self.resolved:
                    baseline[r.key] = bkey
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                torch.manual_seed(0)
                out.update(measure_step_costs({r.key: maker(r) for r in rs}, x, y, loss=loss, baseline=baseline))
        return out

    def _decide(self, rows: list[dict[str, Any]], rule: str) -> int:
        """The decision rule on every ``diff``: each baseline's configurations form one Holm family.

        Returns the size of the largest family (for the sentence naming the rule).
        """
        families: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            if row["diff"] is not None:
                families.setdefault(row["diff"]["baseline"], []).append(row)
        for bkey, members in families.items():
            values = {bkey: {int(s): v for s, v in self.row_values(rows, bkey).items()}}
            values.update({row["key"]: {int(s): v for s, v in row["values"].items()} for row in members})
            out = compare(values, bkey, maximize=self.maximize, stat=rule, confidence=self.confidence)
            for row in members:
                c = out[row["key"]]
                row["diff"].update(
                    mean=c.diff.mean, lo=c.diff.lo, hi=c.diff.hi, n=c.n, p=c.p, p_holm=c.p_holm,
                    decided=c.decided, better=c.better, worse=c.worse, prob=c.prob.mean,
                    prob_lo=c.prob.lo, prob_hi=c.prob.hi, seeds_needed=c.seeds_needed,
                )
        return max((len(m) for m in families.values()), default=1)

    @staticmethod
    def row_values(rows, key):
        for row in rows:
            if row["key"] == key:
                return row["values"]
        return {}

    def _test(self, selected: dict[str, list[str]], by) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        metric = "acc" if self.task == "classification" else "rmse"
        for key, reasons in selected.items():
            r = self.resolved[key]
            splits = self.plan.data(r)
            x_test, y_test = getattr(splits, "x_test", None), getattr(splits, "y_test", None)
            if x_test is None or y_test is None or len(x_test) == 0:
                continue
            runs = {run["seed"]: run for run in by.get(self.config_ids[key], []) if run["status"] in _RECORDED}
            values: dict[int, float] = {}
            losses: dict[int, float] = {}
            for seed, ev in self._test_runs(r, runs, splits).items():
                values[seed], losses[seed] = ev[metric], ev["loss"]
            stored = self._stored_test.get(key)
            if not values and stored is not None:
                # A complete study keeps no weights: its test metrics were committed with its
                # summary, from the same weights, and are read back instead of evaluated again.
                out[key] = {**stored, "selected_as": reasons}
                continue
            est = interval([values[s] for s in sorted(values)], self._rule, self.confidence)
            if metric == "acc":
                est = clip_interval(est)
            lest = interval([losses[s] for s in sorted(losses)], self._rule, self.confidence)
            out[key] = {
                "selected_as": reasons,
                "metric": f"test_{metric}",
                "mean": est.mean, "lo": est.lo, "hi": est.hi, "n": est.n,
                "values": {str(s): v for s, v in values.items()},
                "loss_mean": lest.mean, "loss_lo": lest.lo, "loss_hi": lest.hi,
            }
        return out

    def _test_runs(self, r: _Resolved, runs: dict[int, dict], splits) -> dict[int, dict[str, float]]:
        """Evaluate the final weights of some runs of one configuration on the test split.

        Runs trained one by one have their weights under ``final/<run id>``; population runs
        are evaluated together from their population's final checkpoint (loaded once).
        """
        out: dict[int, dict[str, float]] = {}
        by_pop: dict[str, list[int]] = {}
        for seed in sorted(runs):
            final = self.store.load_checkpoint(f"final/{runs[seed]['id']}")
            if final is None:
                pkey = self.pop_keys.get((r.key, seed))
                if pkey is not None:
                    by_pop.setdefault(pkey, []).append(seed)
                continue
            from droplab.train import Trainer

            member = Member(r.key, r.params, seed, r.train, r.rates, schedules=r.schedules)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = self.plan.builder(r, splits)(member)
            model.load_state_dict(torch.load(_bytes_io(final[1]), weights_only=True))
            trainer = Trainer(model, r.train.replace(seed=seed, checkpoint_dir=None))
            trainer.task = splits.task
            y = splits.y_test if splits.task == "classification" else splits.y_test.float().reshape(len(splits.y_test), -1)
            out[seed] = trainer.evaluate(splits.x_test.to(trainer.device), y.to(trainer.device))
        for pkey, seeds in by_pop.items():
            pop = self._final_population(pkey, splits)
            if pop is None:
                continue
            index = {(m.key, m.seed): i for i, m in enumerate(pop.members)}
            ev = pop.evaluate_members([index[(r.key, s)] for s in seeds], splits.x_test, splits.y_test)
            for j, seed in enumerate(seeds):
                out[seed] = {k: v[j] for k, v in ev.items()}
        return out

    def keep_final(self, pkey: str, pop: Population | None) -> None:
        """Hold a population an executor finished in this process, for the test evaluation.

        Its state is the final checkpoint's, so the test split needs no reload from the store.
        One population is held at a time; ``None`` releases the one held.
        """
        self._finals = {} if pop is None else {pkey: pop}

    def _final_population(self, pkey: str, splits) -> Population | None:
        """The population ``pkey`` as its final checkpoint left it (cached: loaded once)."""
        cache = self._finals
        if pkey not in cache:
            ck = self.store.load_checkpoint(f"weights/{pkey}")
            full = ck is None  # a study written before final weights were kept apart
            if full:
                ck = self.store.load_checkpoint(pkey)
            pop = None
            if ck is not None:
                pop, _ = _make_population(self.plan, self.parts[pkey], splits)
                if pop is not None:
                    (pop.load_bytes if full else pop.load_final_bytes)(ck[1])
            cache.clear()  # keep one population in memory at a time
            cache[pkey] = pop
        return cache[pkey]


def _non_reg(params: Mapping[str, Any]) -> dict[str, Any]:
    """A configuration without its regularization axes (dropout rates, decay, penalties, max-norm)."""
    reg = tuple(f"train.{f}" for f in ("weight_decay", "l1", "l2", "max_norm"))
    return {
        k: v for k, v in params.items()
        if not (k == "dropout" or (k.startswith("dropout.") and not k.endswith(".layer")) or k in reg
                or ("dropout" in k and not k.startswith(("model", "data", "train"))))
    }


def _sortable(value: Any) -> tuple:
    return (value is None, 0.0 if value is None else float(value))


def _num(value: Any) -> float:
    return math.nan if value is None else float(value)


def _mean(values: Sequence[Any]) -> float:
    vs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return math.fsum(vs) / len(vs) if vs else math.nan


def _bytes_io(blob: bytes):
    import io

    return io.BytesIO(blob)


def _state_blob(state: dict[str, torch.Tensor]) -> bytes:
    import io

    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in state.items()}, buf)
    return buf.getvalue()


def _trainer_blob(trainer) -> bytes:
    with tempfile.TemporaryDirectory(prefix="droplab-ck-") as tmp:
        path = os.path.join(tmp, "ck.pt")
        trainer.save_checkpoint(path)
        with open(path, "rb") as fh:
            return fh.read()

