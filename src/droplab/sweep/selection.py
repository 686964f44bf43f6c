"""Which configuration wins: the selection rules of a sweep and of its report, in one place.

The sweep engine (:mod:`droplab.sweep.engine`), :class:`~droplab.sweep.config.SweepConfig` and
the report (:mod:`droplab.report.study`) all ask this module, so ``droplab sweep`` and
``droplab report`` cannot disagree on:

* the **direction** of a metric (:func:`maximize`) and the **default metric** of a task
  (:func:`default_metric`; :func:`score_name`: accuracy or RMSE);
* the **interval** of a metric over seeds (:func:`metric_interval`: an accuracy's stays in
  [0, 1]);
* what counts as a **dropout-rate axis** (:func:`rate_axes`) and a **regularization axis**
  (:func:`is_regularization_axis`), and how **strong** a configuration's regularization is
  (:func:`strength`);
* the **baseline** of a configuration: the one with the same other parameters and no dropout
  on the rate axes (:func:`find_baseline`), where "no dropout" is :func:`no_dropout`
  (``0``, ``[0, 0]``, ``"none"``, ``"hidden=0"``);
* the **best** configuration and the **one-standard-error** choice (:func:`best`,
  :func:`one_se`; Breiman et al., *Classification and Regression Trees*, 1984, section 3.4.3):
  the most regularized configuration within one standard error of the best, among those that
  differ from the best only in regularization.

Example:
    >>> maximize("val_acc"), maximize("val_rmse")
    (True, False)
    >>> find_baseline({"dropout.hidden": 0.5}, {"dropout.hidden=0.0": {"dropout.hidden": 0.0},
    ...               "dropout.hidden=0.5": {"dropout.hidden": 0.5}}, ["dropout.hidden"])
    'dropout.hidden=0.0'
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any

from droplab.data.tasks import score_name
from droplab.errors import ConfigError
from droplab.stats import Estimate, clip_interval, interval, one_standard_error, select_best
from droplab.sweep.space import config_key

__all__ = [
    "METRICS",
    "REGULARIZATION_FIELDS",
    "maximize",
    "default_metric",
    "score_name",
    "check_metric",
    "metric_interval",
    "check_regularization",
    "is_probability",
    "is_rate_axis",
    "rate_axes",
    "is_regularization_axis",
    "without_regularization",
    "strength",
    "no_dropout",
    "is_baseline",
    "find_baseline",
    "best",
    "one_se",
]

#: The selection metrics a sweep accepts.
METRICS = ("val_acc", "val_loss", "val_rmse", "val_auroc", "val_f1", "val_mae")
#: Metrics a population computes only when a sweep selects by them (:mod:`droplab.train.metrics`).
EXTRA_METRICS = ("auroc", "f1", "mae")
#: Training options that regularize, besides dropout (fields of TrainConfig; ``train.<field>`` axes).
REGULARIZATION_FIELDS = ("weight_decay", "l1", "l2", "max_norm")


# --- metrics ------------------------------------------------------------------------------------
def _is_accuracy(metric: str) -> bool:
    return metric.rsplit("_", 1)[-1] in ("acc", "accuracy")


def maximize(metric: str) -> bool:
    """Whether larger values of ``metric`` are better: accuracies yes, losses and RMSE no.

    Args:
        metric: a metric name such as ``val_acc``, ``val_loss``, ``val_rmse`` or ``test_acc``.

    Raises:
        ConfigError: a metric that is none of these.

    Example:
        >>> maximize("val_acc"), maximize("test_loss")
        (True, False)
    """
    name = metric.rsplit("_", 1)[-1]
    if name in ("acc", "accuracy", "auroc", "f1"):
        return True
    if name in ("loss", "rmse", "mae"):
        return False
    raise ConfigError(
        f"metric must be val_acc, val_loss or val_rmse, got {metric!r} (val_auroc, val_f1 and val_mae also work)"
    )


def default_metric(task: str) -> str:
    """The selection metric when a sweep names none: ``val_acc`` (classification), else ``val_loss``.

    Example:
        >>> default_metric("regression")
        'val_loss'
    """
    return "val_acc" if task in ("classification", "binary") else "val_loss"


def check_metric(metric: str, task: str) -> bool:
    """Check that ``metric`` suits ``task``; return :func:`maximize` of it.

    Example:
        >>> check_metric("val_rmse", "regression")
        False
    """
    up = maximize(metric)
    if task in ("classification", "binary") and metric.endswith(("rmse", "mae")):
        raise ConfigError(f"metric {metric!r} is for regression; use val_acc or val_loss (or val_auroc, val_f1)")
    if task == "regression" and metric.endswith(("acc", "auroc", "f1")):
        raise ConfigError(f"metric {metric!r} is for classification; use val_loss or val_rmse")
    return up


def metric_interval(values: Sequence[float], metric: str, stat: str, confidence: float = 0.95) -> Estimate:
    """Mean and interval of ``metric`` over seeds under the rule ``stat`` (:func:`droplab.stats.interval`).

    An accuracy's interval is clipped to [0, 1] (:func:`droplab.stats.clip_interval`): the one
    place that decides it, for the sweep's table, its test split and the report.

    Example:
        >>> metric_interval([1.0, 1.0, 0.9], "val_acc", "t").hi
        1.0
    """
    est = interval(list(values), stat, confidence)
    return clip_interval(est) if _is_accuracy(metric) else est


# --- axes -----------------------------------------------------------------------------------------
def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_regularization(names: Any) -> tuple[str, ...]:
    """The axes a user names as regularization (``regularization=["p"]``), checked: a tuple of names.

    Example:
        >>> check_regularization(["p", "wd"])
        ('p', 'wd')
    """
    if names is None:
        return ()
    if isinstance(names, str) or not all(isinstance(n, str) and n for n in names):
        raise ConfigError(f"regularization must be a list of axis names, got {names!r}")
    return tuple(dict.fromkeys(names))


def is_probability(value: Any) -> bool:
    """Whether ``value`` is a number in [0, 1): what a dropout rate can be.

    Example:
        >>> is_probability(0.3), is_probability(64), is_probability(True)
        (True, False, False)
    """
    return _number(value) and 0 <= value < 1


def is_rate_axis(name: str, value: Any) -> bool:
    """Whether the axis ``name`` (with ``value``) sets a dropout rate.

    ``dropout.<place>`` (a rate or per-layer rates), ``dropout`` (a whole dropout string, or a
    number for a build function of your own) and, for a build function, any other numeric
    parameter whose name contains ``dropout``. ``dropout.<place>.layer`` and ``.schedule``
    choose a layer or a schedule, not a rate.

    Example:
        >>> is_rate_axis("dropout.hidden", 0.3), is_rate_axis("dropout.hidden.layer", "gaussian")
        (True, False)
    """
    if name == "dropout":
        return isinstance(value, str) or _number(value)
    if name.startswith("dropout."):
        return not name.endswith((".layer", ".schedule"))
    return "dropout" in name and not name.startswith(("model.", "data.", "train.")) and _number(value)


def rate_axes(params: Mapping[str, Any], regularization: Iterable[str] = ()) -> list[str]:
    """The dropout-rate axes of a configuration (see :func:`is_rate_axis`), in parameter order.

    ``regularization`` names more axes (any name) whose value 0 means "off": the user's
    ``regularization=[...]``, or axes the engine found to set a droplab rate.

    Example:
        >>> rate_axes({"p": 0.3, "width": 64}, ["p"])
        ['p']
    """
    extra = set(regularization)
    return [k for k, v in params.items() if is_rate_axis(k, v) or (k in extra and _number(v))]


def is_regularization_axis(name: str, regularization: Iterable[str] = ()) -> bool:
    """Whether an axis is a kind of regularization: the one-SE rule may trade it.

    Every dropout axis (rates, whole strings, layer types, rate schedules, a build function's
    ``*dropout*`` parameters) and ``train.<f>`` for ``f`` in :data:`REGULARIZATION_FIELDS`.

    Example:
        >>> is_regularization_axis("train.weight_decay"), is_regularization_axis("train.lr")
        (True, False)
    """
    return name in set(regularization) or name in {f"train.{f}" for f in REGULARIZATION_FIELDS} or (
        "dropout" in name and not name.startswith(("model", "data", "train"))
    )


def without_regularization(params: Mapping[str, Any], regularization: Iterable[str] = ()) -> dict[str, Any]:
    """A configuration without its regularization axes (:func:`is_regularization_axis`)."""
    extra = tuple(regularization)
    return {k: v for k, v in params.items() if not is_regularization_axis(k, extra)}


def strength(
    rates: Iterable[float], *, weight_decay: float = 0.0, l2: float = 0.0, l1: float = 0.0,
    max_norm: float | None = None,
) -> tuple:
    """Sort key for "more regularized" (larger = more).

    The total dropout rate, then weight decay, L2, L1 and a tighter max-norm constraint, in
    that order of precedence: the order the one-standard-error rule picks by.

    Example:
        >>> strength([0.1, 0.2], weight_decay=1e-4) > strength([0.3])
        True
    """
    tight = -float(max_norm) if max_norm is not None else -math.inf
    return (round(sum(rates), 12), weight_decay, l2, l1, tight)


# --- the baseline ---------------------------------------------------------------------------------
def no_dropout(value: Any) -> bool:
    """Whether a rate axis' value means no dropout: ``0``, per-layer zeros, ``"none"``, ``"hidden=0"``.

    Example:
        >>> no_dropout(0.0), no_dropout([0, 0]), no_dropout("none"), no_dropout("input=0,hidden=0")
        (True, True, True, True)
        >>> no_dropout("hidden=0.3")
        False
    """
    if _number(value):
        return value == 0
    if isinstance(value, (list, tuple)):
        return bool(value) and all(no_dropout(v) for v in value)
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in ("", "none"):
            return True
        head = text.split(":", 1)[0]  # a rate with a layer type: "0.3:gaussian"
        try:
            return all(float(v) == 0 for v in head.split("/"))
        except ValueError:
            pass
        from droplab.models import parse_dropout

        try:
            spec = parse_dropout(text)
        except ConfigError:
            return False
        return all(p == 0 for d in spec.values() for p in (d.p if isinstance(d.p, tuple) else (d.p,)))
    return False


def is_baseline(params: Mapping[str, Any], axes: Iterable[str]) -> bool:
    """Whether ``params`` has no dropout on every one of ``axes`` (an absent axis has none)."""
    return all(a not in params or no_dropout(params[a]) for a in axes)


def _zeroed(params: Mapping[str, Any], axes: Sequence[str]) -> dict[str, Any]:
    out = dict(params)
    for k in axes:
        v = params[k]
        if k == "dropout" and isinstance(v, str):
            out[k] = "none"
        elif isinstance(v, (list, tuple)):
            out[k] = [0.0] * len(v)
        else:
            out[k] = 0 if isinstance(v, int) and not isinstance(v, bool) else 0.0
    return out


def _rest(params: Mapping[str, Any], axes: Sequence[str]) -> str:
    return json.dumps({k: v for k, v in params.items() if k not in axes}, sort_keys=True, default=str)


def find_baseline(
    params: Mapping[str, Any], configs: Mapping[str, Mapping[str, Any]], axes: Sequence[str]
) -> str | None:
    """The key of ``params``' baseline among ``configs`` (key -> params), or None.

    The baseline has the same parameters outside ``axes`` (the dropout-rate axes that count)
    and no dropout on them (:func:`no_dropout`). When several qualify, the one with the
    canonical zeros (``0.0``, ``"none"``) wins, else the first. A configuration may be its own
    baseline (it has no dropout); callers skip that case.

    Args:
        params: the configuration.
        configs: the configurations of the study, key -> params, in study order.
        axes: the rate axes whose dropout the baseline leaves out; empty: no baseline.
    """
    axes = [a for a in axes if a in params]
    if not axes:
        return None
    canonical = config_key(_zeroed(params, axes))
    if canonical in configs:
        return canonical
    rest = _rest(params, axes)
    for key, other in configs.items():
        if _rest(other, axes) == rest and is_baseline(other, axes):
            return key
    return None


# --- best and one-SE ------------------------------------------------------------------------------
def best(estimates: Mapping[Hashable, Estimate], *, maximize: bool) -> Hashable | None:
    """The key with the best finite mean (:func:`droplab.stats.select_best`); None if none is finite."""
    return select_best(estimates, maximize=maximize)


def one_se(
    estimates: Mapping[str, Estimate],
    *,
    maximize: bool,
    params: Mapping[str, Mapping[str, Any]],
    strength: Callable[[str], Any],
    regularization: Iterable[str] = (),
) -> str | None:
    """The one-standard-error choice (:func:`droplab.stats.one_standard_error`).

    Candidates are the configurations that differ from the best only in regularization axes
    (:func:`without_regularization`), so the rule never trades, say, the learning rate.

    Args:
        estimates: key -> estimate of the selection metric.
        maximize: whether larger is better.
        params: key -> the configuration's parameters.
        strength: key -> sort key of its regularization (:func:`strength`).
        regularization: more axis names that are regularization (:func:`rate_axes`).

    Example:
        >>> from droplab.stats import mean_ci
        >>> est = {"p=0": mean_ci([0.80, 0.82]), "p=0.5": mean_ci([0.80, 0.81])}
        >>> one_se(est, maximize=True, params={"p=0": {"dropout": 0}, "p=0.5": {"dropout": 0.5}},
        ...        strength=lambda k: float(k[2:]))
        'p=0.5'
    """
    top = best(estimates, maximize=maximize)
    if top is None:
        return None
    extra = tuple(regularization)
    target = _rest(without_regularization(params[top], extra), ())
    same = [k for k in estimates if _rest(without_regularization(params[k], extra), ()) == target]
    return one_standard_error(estimates, maximize=maximize, strength=strength, candidates=same)
