"""Training helpers of the reproduction suite: cached datasets, one group of arms x seeds, models.

A *group* is a set of arms (configurations) that share an architecture, trained with every seed
of the run. Groups train as one vectorized population (:mod:`droplab.sweep.population`):
droplab MLPs with Bernoulli dropout through :class:`~droplab.sweep.MLPNet` (per-member rates,
lr, weight decay, L1/L2, max-norm), other models through :class:`~droplab.sweep.ModuleNet`;
models the population cannot stack (concrete dropout, or ``engine="trainer"`` where vmap is
slower than a plain loop, as for GRUs) train one by one with :class:`droplab.train.Trainer`.
Runs with one seed share initialization and data order in every engine; the MLPNet members of
one seed also share their dropout uniforms (masks nested across rates), so paired differences
between arms are common-random-number comparisons.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from droplab.errors import DataError
from droplab.models import ModelSpec, build_model
from droplab.train import Callback, TrainConfig, Trainer

__all__: list[str] = []  # private module; used by droplab.reproduce.findings


class Skip(Exception):
    """A finding (or one part of it) cannot run here; the message says why and how to fix it."""


# --- data -------------------------------------------------------------------------------------
def load(ctx: Any, name: str, **options: Any):
    """``load_dataset(name, seed=0, **options)``, cached per context; a missing dataset -> Skip.

    Fashion-MNIST is looked up, never downloaded: the suite runs offline and says how to
    install the files instead.
    """
    from droplab.data import load_dataset

    key = (name, json.dumps(options, sort_keys=True, default=str))
    if key in ctx.cache:
        return ctx.cache[key]
    extra: dict[str, Any] = {}
    if name == "fashion_mnist":
        from droplab.data.fashion import find_fashion_mnist
        from droplab.data.sources import default_cache_dir

        cache_dir = ctx.cache_dir if ctx.cache_dir is not None else default_cache_dir()
        try:
            found = find_fashion_mnist(ctx.data_dir, cache_dir)
        except DataError as exc:
            raise Skip(f"Fashion-MNIST not found: {exc}") from None
        if found is None:
            raise Skip(
                "Fashion-MNIST is not installed: install the Debian package "
                "(apt-get install dataset-fashion-mnist), put the four idx files in "
                "$DROPLAB_DATA/fashion-mnist, or pass --data-dir DIR"
            )
        extra = {"data_dir": str(found["train_images"].parent)}
    if ctx.cache_dir is not None:
        extra["cache_dir"] = ctx.cache_dir
    try:
        splits = load_dataset(name, seed=0, **extra, **options)
    except DataError as exc:
        raise Skip(f"dataset {name!r} is not available: {exc}") from None
    ctx.cache[key] = splits
    return splits


def as_sequence(splits, length: int):
    """MNIST-1D ``(N, 40)`` read as a sequence ``(N, length, 40 // length)`` (time, features)."""
    features = splits.input_shape[0] // length

    def view(x: torch.Tensor) -> torch.Tensor:
        return x.reshape(len(x), length, features)

    return dataclasses.replace(
        splits,
        x_train=view(splits.x_train),
        x_val=view(splits.x_val),
        x_test=view(splits.x_test),
        input_shape=(length, features),
    )


# --- groups -----------------------------------------------------------------------------------
@dataclasses.dataclass
class Arm:
    """One configuration of a group.

    Attributes:
        key: its label in the finding's results.
        train: its training configuration (``seed`` is replaced by each run's seed).
        rates: MLP fast path only: the drop rate at each dropout position of the group's spec
            (input first when the spec has input dropout, then one per hidden layer).
        spec: the model of this arm when it differs from the group's (Trainer engine only).
        schedules: MLP fast path only: the rate schedule at each dropout position (text such as
            ``"early@10"``, or ``None`` for a constant rate); ``None``: all constant.
    """

    key: str
    train: TrainConfig
    rates: tuple[float, ...] | None = None
    spec: ModelSpec | None = None
    schedules: tuple[str | None, ...] | None = None


@dataclasses.dataclass
class GroupResult:
    """What :func:`train_group` returns.

    Attributes:
        test: arm key -> seed -> ``{"acc", "loss", "error"}`` on the test split (error in %).
        history: (arm key, seed) -> the run's epoch rows.
        seconds: wall time of the group.
        engine: ``"mlp"``, ``"module"`` or ``"trainer"``.
    """

    test: dict[str, dict[int, dict[str, float]]]
    history: dict[tuple[str, int], list[dict[str, Any]]]
    seconds: float
    engine: str
    _models: Callable[[str, int], nn.Module] | None = None

    def model(self, key: str, seed: int) -> nn.Module:
        """The trained model of one run, in eval mode (droplab layers, final weights)."""
        if self._models is None:  # a bug in the finding: it asked without keep_models
            raise RuntimeError("train_group(..., keep_models=True) is needed for model()")
        return self._models(key, seed).eval()

    def errors(self, key: str) -> dict[int, float]:
        """seed -> test error (%) of one arm."""
        return {s: v["error"] for s, v in self.test[key].items()}


def _metrics(acc: float, loss: float) -> dict[str, float]:
    return {"acc": acc, "loss": loss, "error": 100.0 * (1.0 - acc)}


def with_rates(
    spec: ModelSpec, rates: Sequence[float], schedules: Sequence[str | None] | None = None
) -> ModelSpec:
    """The MLP spec with these per-position rates (the inverse of the MLP fast path's rates)
    and, if given, per-position schedules (the hidden layers must share one)."""
    from droplab.sweep.population import mlp_positions

    d = spec.to_dict()
    positions = mlp_positions(spec)
    hidden = [r for (place, _), r in zip(positions, rates) if place == "hidden"]
    for place, i in positions:
        if place == "input":
            d["dropout"]["input"]["p"] = rates[0]
    if hidden:
        d["dropout"]["hidden"]["p"] = hidden
    for (place, _), schedule in zip(positions, schedules or ()):
        d["dropout"][place]["schedule"] = schedule
    return ModelSpec.from_dict(d)


def _load_mlp_weights(model: nn.Module, weights: dict[str, torch.Tensor]) -> None:
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    with torch.no_grad():
        for i, lin in enumerate(linears):
            lin.weight.copy_(weights[f"W{i}"].t())
            lin.bias.copy_(weights[f"b{i}"].reshape(-1))


def train_group(
    ctx: Any,
    splits,
    spec: ModelSpec,
    arms: Sequence[Arm],
    *,
    span: tuple[float, float] = (0.0, 1.0),
    engine: str = "auto",
    keep_models: bool = False,
    validation: bool = False,
    on_epoch: Callable[[Any, dict[int, dict[str, Any]]], None] | None = None,
) -> GroupResult:
    """Train every arm with every seed of ``ctx`` and evaluate the final weights on the test split.

    Args:
        ctx: the run context (seeds, progress).
        splits: the data (:class:`droplab.data.Splits`).
        spec: the architecture shared by the arms. For the MLP fast path it must hold a
            dropout entry at each place an arm gives rates for.
        arms: the configurations; they may differ in rates (MLP fast path), lr, weight decay,
            L1, L2 and max-norm; every other training option must be equal.
        span: the part of the finding's progress this group covers (start, end fractions).
        engine: ``"auto"`` (population when possible) or ``"trainer"`` (one run at a time).
        keep_models: keep what :meth:`GroupResult.model` needs.
        validation: evaluate the validation split every epoch (for early stopping); without it
            the population skips validation entirely (the findings judge on the test split of
            the final weights, chosen in advance, not by validation).
        on_epoch: population engines only: called after every epoch with the population and
            its rows (e.g. to record per-epoch test curves).
    """
    from droplab.sweep import Member, MLPNet, make_population
    from droplab.sweep.population import population_net

    t0 = time.perf_counter()
    seeds = list(ctx.seeds)
    x, y = splits.x_train, splits.y_train
    xv, yv = (splits.x_val, splits.y_val) if validation else (splits.x_val[:0], splits.y_val[:0])
    epochs = max(a.train.epochs for a in arms)
    pop = None
    kind = "trainer"
    if engine == "auto" and all(a.spec is None for a in arms):
        members = [
            Member(a.key, {}, s, a.train.replace(seed=s), a.rates,
                   schedules=a.schedules or (None,) * len(a.rates or ()))
            for a in arms for s in seeds
        ]
        make_net = population_net(spec, splits.input_shape, splits.n_outputs, members)
        pop, _ = make_population(make_net, members, (x, y, xv, yv), splits.task)
        if pop is not None:
            kind = "mlp" if isinstance(pop.net, MLPNet) else "module"

    test: dict[str, dict[int, dict[str, float]]] = {a.key: {} for a in arms}
    history: dict[tuple[str, int], list[dict[str, Any]]] = {}
    start, stop = span
    if pop is not None:
        while not pop.done:
            rows = pop.run_epoch()
            if on_epoch is not None:
                on_epoch(pop, rows)
            ctx.advance(start + (stop - start) * pop.epoch / epochs)
        # Seeded: evaluation may draw (moment-matching DropConnect samples its activations).
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seeds[0])
            ev = pop.evaluate_members(range(pop.k), splits.x_test, splits.y_test)
        index = {}
        for i, m in enumerate(pop.members):
            test[m.key][m.seed] = _metrics(ev["acc"][i], ev["loss"][i])
            history[(m.key, m.seed)] = pop.history[i]
            index[(m.key, m.seed)] = i
        models = None
        if keep_models:
            rates = {a.key: a.rates for a in arms}

            def models(key: str, seed: int) -> nn.Module:
                weights = pop.final_weights(index[(key, seed)])
                if kind == "mlp":
                    model = build_model(
                        with_rates(spec, rates[key]), splits.input_shape, splits.n_outputs
                    )
                    _load_mlp_weights(model, weights)
                    return model
                model = build_model(spec, splits.input_shape, splits.n_outputs)
                state = {k.removeprefix("buffer:"): v for k, v in weights.items()}
                model.load_state_dict(state)
                return model

        return GroupResult(test, history, time.perf_counter() - t0, kind, models)

    kept: dict[tuple[str, int], nn.Module] = {}
    total = len(arms) * len(seeds)
    done = 0

    class _Tick(Callback):
        def on_epoch_end(self, trainer: Any, *, epoch: int, **kwargs: Any) -> None:
            frac = (done + epoch / trainer.config.epochs) / total
            ctx.advance(start + (stop - start) * frac)

    for a in arms:
        arm_spec = a.spec or (with_rates(spec, a.rates, a.schedules) if a.rates is not None else spec)
        for s in seeds:
            model = build_model(arm_spec, splits.input_shape, splits.n_outputs, seed=s)
            val = (xv, yv) if validation else None
            fit = Trainer(model, a.train.replace(seed=s), [_Tick()]).fit(
                (x, y), val=val, test=(splits.x_test, splits.y_test), task=splits.task
            )
            if splits.task == "classification":
                test[a.key][s] = _metrics(fit.test["acc"], fit.test["loss"])
            else:
                test[a.key][s] = {"loss": fit.test["loss"], "rmse": fit.test["rmse"]}
            history[(a.key, s)] = fit.history
            kept[(a.key, s)] = model
            done += 1
    return GroupResult(
        test, history, time.perf_counter() - t0, "trainer",
        (lambda key, seed: kept[(key, seed)]) if keep_models else None,
    )


def finite(values: Sequence[float]) -> list[float]:
    """The finite numbers of ``values``."""
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]
