"""A study file read into the shape a report needs: configurations, their seeds and curves.

:func:`load_study` reads everything once from a :class:`~droplab.sweep.store.Store` (read-only,
so it works while a sweep is still writing) and returns a :class:`Study`; the figures, the
diagnostics, the HTML page and the terminal summary all work from that object and never touch
the file again.

Conventions, decided once here (the same as the sweep engine's, so the page and
``droplab sweep`` agree):

* A run's numbers are those of the weights it ends with, as the sweep recorded them in its
  result: the best epoch's when early stopping restored them, otherwise the last epoch's.
  Metrics the result lacks come from that epoch's row (``weights_epoch``, else
  ``best_epoch``, else the last epoch).
* Runs that ``completed``, ``early_stopped`` or ``diverged`` count (a diverged run has no
  value; :func:`droplab.stats.mean_ci` leaves it out and counts it); ``running``,
  ``interrupted`` and ``failed`` runs are listed in the counts but not used.
* Dropout-rate parameters: ``dropout.<place>`` (a rate or per-layer rates, averaged for
  plotting), ``dropout`` (a whole placement string such as ``"hidden=0.3,input=0.1"``;
  ``"none"``), and, for a user's build function, any numeric parameter whose name contains
  ``dropout`` (the engine's rule). Every other parameter is an ordinary axis.
* The *baseline* of a configuration is the one with the same other parameters and no dropout
  at the places the study varies (the sweep's rule, ``droplab.sweep.selection``); paired
  differences use the seeds both share.
* Intervals and verdicts follow the study's decision rule (:func:`droplab.stats.compare`):
  the ``stat`` the sweep stored (``"t"`` or ``"bootstrap"``), else the default for the
  smallest number of seeds a configuration has.
* Selection follows the study: its metric (``val_acc`` for classification unless the sweep
  said otherwise), its best configuration and one-standard-error choice as stored in the
  summary, recomputed with :mod:`droplab.stats` only when the summary is missing.

Example::

    study = load_study("study.db")
    best = study.selected
    best.label, best.estimate("val_loss").mean
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from typing import Any

from droplab.errors import ConfigError, StoreError
from droplab.models.spec import PLACES, parse_dropout
from droplab.stats import Comparison, Estimate, compare, mean_ci, paired_difference, resolve_stat, rule_text
from droplab.sweep import selection
from droplab.sweep.store import Store

__all__ = ["USED_STATUSES", "PLACEMENT", "dropout_rates", "Run", "Configuration", "Study", "load_study", "format_value"]

#: The "place" of a whole placement-string axis (``dropout = "hidden=0.3,input=0.1"``).
PLACEMENT = "(placement)"

#: Run statuses whose numbers a report uses.
USED_STATUSES = ("completed", "early_stopped", "diverged")

_NAN = math.nan


def format_value(value: Any) -> str:
    """Short text for a parameter value: ``0.3``, ``1e-04``, ``0.5/0.3``, ``True``, ``'relu'``.

    Example:
        >>> format_value(0.0001), format_value([0.5, 0.3]), format_value(0.30000000000000004)
        ('0.0001', '0.5/0.3', '0.3')
    """
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return "/".join(format_value(v) for v in value)
    return str(value)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# --- runs ---------------------------------------------------------------------------------------
@dataclasses.dataclass(eq=False)
class Run:
    """One (configuration, seed) run: its status, final result, cost and per-epoch history.

    Attributes:
        id, seed, status: as stored.
        result: final metrics (``best_epoch``, ``val_loss``, ``test_*`` ...); ``{}`` if none.
        cost: ``seconds``, ``peak_mem_mb`` ...; ``{}`` if none.
        history: epoch rows ``{"epoch", **metrics}`` in epoch order.
    """

    id: int
    seed: int
    status: str
    result: dict
    cost: dict
    history: list[dict]

    @property
    def best_epoch(self) -> int | None:
        """The recorded best epoch (lowest validation loss, or the one early stopping kept)."""
        be = self.result.get("best_epoch")
        if isinstance(be, int) and not isinstance(be, bool) and any(r["epoch"] == be for r in self.history):
            return be
        vals = [(r["val_loss"], r["epoch"]) for r in self.history if _finite(r.get("val_loss"))]
        return min(vals)[1] if vals else None

    @property
    def epochs_run(self) -> int:
        """Number of epochs recorded."""
        return len(self.history)

    def curve(self, metric: str) -> tuple[list[int], list[float]]:
        """``(epochs, values)`` of ``metric`` over the epochs that recorded it (nan kept)."""
        pairs = [(r["epoch"], r[metric]) for r in self.history if r.get(metric) is not None]
        return [e for e, _ in pairs], [float(v) for _, v in pairs]

    @property
    def weights_epoch(self) -> int | None:
        """The epoch whose weights the run ended with (see the module docstring)."""
        epochs = {r["epoch"] for r in self.history}
        for name in ("weights_epoch", "best_epoch"):
            e = self.result.get(name)
            if isinstance(e, int) and not isinstance(e, bool) and e in epochs:
                return e
        return self.history[-1]["epoch"] if self.history else None

    def value(self, metric: str) -> float:
        """``metric`` of the run's final weights: the result's, else that epoch's row; nan if absent.

        A diverged run has no value (nan): its numbers before the divergence are not a result.
        """
        if self.status == "diverged":
            return _NAN
        v = self.result.get(metric)
        if _finite(v):
            return float(v)
        we = self.weights_epoch
        if we is not None:
            row = next(r for r in self.history if r["epoch"] == we)
            if _finite(row.get(metric)):
                return float(row[metric])
        return _NAN

    def epochs_to_within(self, fraction: float = 0.01) -> int | None:
        """The first epoch whose validation loss is within ``fraction`` of the run's lowest (None: no curve)."""
        vals = [(r["epoch"], r["val_loss"]) for r in self.history if _finite(r.get("val_loss"))]
        if not vals:
            return None
        best = min(v for _, v in vals)
        limit = best + fraction * abs(best)
        return next(e for e, v in vals if v <= limit)

    def cost_value(self, name: str) -> float:
        """Cost ``name`` (``seconds``: falls back to the sum over epochs; ``peak_mem_mb``: the max)."""
        v = self.cost.get(name)
        if _finite(v):
            return float(v)
        col = [r[name] for r in self.history if _finite(r.get(name))]
        if not col:
            return _NAN
        return float(max(col)) if name.startswith("peak") else float(math.fsum(col))


# --- configurations -----------------------------------------------------------------------------
@dataclasses.dataclass(eq=False)
class Configuration:
    """One point of the space (no seed) with its runs.

    Attributes:
        id, key, params, group: as stored.
        rates: dropout place -> rate (per-layer rates averaged); places without dropout absent.
        label: short human name from the parameters that vary in the study (set by the study).
        is_baseline: no dropout at the places whose rate the study varies (set by the study).
        stat: the study's decision rule, ``"t"`` or ``"bootstrap"`` (set by the study).
        runs: runs with a status in :data:`USED_STATUSES`, by seed.
    """

    id: int
    key: str
    params: dict
    group: str
    rates: dict[str, float]
    runs: list[Run]
    label: str = ""
    is_baseline: bool = False
    stat: str = "t"

    @property
    def seeds(self) -> list[int]:
        """Seeds of the used runs."""
        return [r.seed for r in self.runs]

    def seeds_text(self, metric: str) -> str:
        """``"3"``, or ``"2 of 3"`` when some runs have no finite ``metric`` (diverged)."""
        n = self.estimate(metric).n
        return str(n) if n == len(self.runs) else f"{n} of {len(self.runs)}"

    @property
    def total_rate(self) -> float:
        """Sum of the dropout rates over places."""
        return math.fsum(self.rates.values())

    def values(self, metric: str) -> dict[int, float]:
        """Seed -> ``metric`` of the run's final weights (see :meth:`Run.value`)."""
        return {r.seed: r.value(metric) for r in self.runs}

    def estimate(self, metric: str) -> Estimate:
        """Mean and 95% CI of ``metric`` across seeds, under the study's rule (an accuracy's CI within [0, 1])."""
        return selection.metric_interval(list(self.values(metric).values()), metric, self.stat)

    def cost_values(self, name: str) -> dict[int, float]:
        """Seed -> cost ``name`` of the run."""
        return {r.seed: r.cost_value(name) for r in self.runs}

    def curves(self, metric: str) -> list[tuple[int, list[int], list[float]]]:
        """``(seed, epochs, values)`` for every run that recorded ``metric``."""
        out = []
        for r in self.runs:
            epochs, values = r.curve(metric)
            if epochs:
                out.append((r.seed, epochs, values))
        return out

    def mean_curve(self, metric: str) -> tuple[list[int], list[float]]:
        """Mean of ``metric`` across the non-diverged runs, epoch by epoch.

        Only the epochs every such run reached are kept (runs stopped early end the mean
        curve at the shortest run), so the mean never jumps when a seed drops out.
        """
        runs = [r for r in self.runs if r.status != "diverged"]
        per_run = []
        for r in runs:
            epochs, values = r.curve(metric)
            if epochs:
                per_run.append(dict(zip(epochs, values)))
        if not per_run:
            return [], []
        common = sorted(set.intersection(*(set(d) for d in per_run)))
        means = [math.fsum(d[e] for d in per_run) / len(per_run) for e in common]
        return common, means


# --- parameters ---------------------------------------------------------------------------------
def _rate(value: Any) -> float | None:
    """A dropout rate from a parameter value: a number, per-layer rates, or ``"0.3:gaussian"``."""
    if _finite(value):
        return float(value)
    if isinstance(value, (list, tuple)) and value and all(_finite(v) for v in value):
        return math.fsum(value) / len(value)
    if isinstance(value, str):
        head = value.split(":", 1)[0]
        try:
            return _rate([float(v) for v in head.split("/")])
        except ValueError:
            return None
    return None


def _placement(text: str) -> dict[str, float] | None:
    if text.strip().lower() in ("", "none"):
        return {}
    try:
        spec = parse_dropout(text)
    except ConfigError:
        return None
    return {place: r for place, d in spec.items() if (r := _rate(d.p)) is not None}


def dropout_rates(params: Mapping[str, Any]) -> tuple[dict[str, float], dict[str, str]]:
    """``(place -> rate, axis -> place)`` found in a configuration's parameters.

    A whole placement string (axis ``dropout``) maps to :data:`PLACEMENT`; a user's
    numeric ``*dropout*`` parameter is its own place, named like the parameter.

    Example:
        >>> dropout_rates({"dropout.hidden": 0.3, "train.lr": 0.01})
        ({'hidden': 0.3}, {'dropout.hidden': 'hidden'})
    """
    rates: dict[str, float] = {}
    axes: dict[str, str] = {}
    for name, value in params.items():
        parts = name.split(".")
        if parts[0] == "dropout" and len(parts) == 2 and parts[1] in PLACES:
            r = _rate(value)
            if r is not None:
                rates[parts[1]] = r
                axes[name] = parts[1]
        elif name == "dropout" and isinstance(value, str):
            placed = _placement(value)
            if placed is not None:
                rates.update(placed)
                axes[name] = PLACEMENT
        elif (
            "dropout" in name
            and not name.startswith(("dropout.", "model.", "data.", "train."))
            and _finite(value)
        ):
            rates[name] = float(value)
            axes[name] = name
    return rates, axes


def regularization_strength(config: Configuration) -> tuple:
    """Sort key for "more regularized" (``droplab.sweep.selection.strength``) from a stored configuration.

    Total dropout rate, then weight decay, L2, L1 and a tighter max-norm, read from the
    configuration's parameters (absent: none). Used only when a study has no stored summary.
    """
    by_short = {k.rsplit(".", 1)[-1]: v for k, v in config.params.items()}
    wd, l2, l1 = (float(by_short[n]) if _finite(by_short.get(n)) else 0.0 for n in ("weight_decay", "l2", "l1"))
    mn = by_short.get("max_norm")
    return selection.strength([config.total_rate], weight_decay=wd, l2=l2, l1=l1,
                              max_norm=float(mn) if _finite(mn) else None)


# --- the study ----------------------------------------------------------------------------------
@dataclasses.dataclass
class Study:
    """Everything a report shows, read once from a study file (see :func:`load_study`).

    Attributes:
        path, name, spec, versions, created: the study record.
        summary: what the sweep stored at the end (selection table, test metrics) or None.
        configurations: configurations with at least one used run, in insertion order.
        status_counts: status -> number of runs (all runs, used or not).
        axes: parameters that take more than one value, in parameter order.
        dropout_axes: the dropout-rate parameters among them -> place.
        task: ``"classification"`` (``val_acc``) or ``"regression"`` (``val_rmse``).
        metric: the selection metric (``val_acc``, ``val_loss`` or ``val_rmse``).
        maximize: whether larger values of ``metric`` are better.
        stat: the decision rule (``"t"`` or ``"bootstrap"``); ``stat_requested``: what the
            sweep asked for (None: the default by seed count).
    """

    path: str
    name: str
    spec: dict
    versions: dict
    created: str
    summary: dict | None
    configurations: list[Configuration]
    status_counts: dict[str, int]
    axes: list[str]
    dropout_axes: dict[str, str]
    task: str
    metric: str = "val_acc"
    maximize: bool = True
    stat: str = "t"
    stat_requested: str | None = None

    # -- lookups -------------------------------------------------------------------------------
    @property
    def seeds(self) -> list[int]:
        """Every seed used by some configuration, sorted."""
        return sorted({s for c in self.configurations for s in c.seeds})

    @property
    def score_metric(self) -> str:
        """``val_acc`` or ``val_rmse``: the metric shown next to the loss."""
        return "val_" + selection.score_name(self.task)

    def config(self, key: str) -> Configuration | None:
        """The configuration with this key (None if absent)."""
        return next((c for c in self.configurations if c.key == key), None)

    def _rest(self, c: Configuration, leave_out: Any) -> tuple:
        return tuple(sorted((k, repr(v)) for k, v in c.params.items() if not leave_out(k)))

    def baseline_axes(self, config: Configuration) -> list[str]:
        """The rate axes a baseline of ``config`` has no dropout on: those the study varies, and
        when a whole placement string varies, every rate axis (no dropout anywhere)."""
        if PLACEMENT in self.dropout_axes.values():
            return list(dict.fromkeys([*self.dropout_axes, *selection.rate_axes(config.params)]))
        return list(self.dropout_axes)

    def baseline_for(self, config: Configuration) -> Configuration | None:
        """The configuration with the same other parameters and no dropout (None if absent).

        The rule is the sweep's (``droplab.sweep.selection.find_baseline``).
        """
        if not self.dropout_axes:
            return None
        key = selection.find_baseline(
            config.params, {c.key: c.params for c in self.configurations if c.is_baseline}, self.baseline_axes(config)
        )
        return None if key is None else self.config(key)

    def peers(self, config: Configuration) -> list[Configuration]:
        """Configurations that differ from ``config`` only in dropout (itself included)."""
        target = self._rest(config, self.dropout_axes.__contains__)
        return [c for c in self.configurations if self._rest(c, self.dropout_axes.__contains__) == target]

    def best_peer(self, config: Configuration) -> Configuration:
        """The best of :meth:`peers` by the selection metric (``config`` itself if none is finite)."""
        peers = self.peers(config)
        key = selection.best({c.key: c.estimate(self.metric) for c in peers}, maximize=self.maximize)
        return config if key is None else next(c for c in peers if c.key == key)

    def describe(self, config: Configuration) -> str:
        """How sentences name a configuration: ``rate 0.3`` when one dropout rate is all that varies."""
        if len(self.axes) == 1 and self.dropout_axes.get(self.axes[0], PLACEMENT) != PLACEMENT:
            if config.is_baseline:
                return "no dropout"
            return f"rate {format_value(config.params[self.axes[0]])}"
        return config.label

    def axis_name(self, axis: str) -> str:
        """Readable name of an axis: ``hidden dropout rate`` for ``dropout.hidden``."""
        place = self.dropout_axes.get(axis)
        if place is not None and place != PLACEMENT and axis.startswith("dropout."):
            return f"{place} dropout rate"
        return axis

    def lines(self, axis: str) -> list[tuple[str, list[Configuration]]]:
        """Configurations that differ only in ``axis``: ``(name of the rest, configs by axis value)``.

        Used to draw one response line per setting of the other parameters; only
        configurations with a numeric value of ``axis`` take part.
        """
        groups: dict[tuple, list[Configuration]] = {}
        for c in self.configurations:
            v = c.params.get(axis)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            groups.setdefault(self._rest(c, axis.__eq__), []).append(c)
        out = []
        for configs in groups.values():
            ref = configs[0]
            parts = [_axis_value(self, a, ref.params.get(a)) for a in self.axes if a != axis]
            out.append((", ".join(parts), sorted(configs, key=lambda c: c.params[axis])))
        return out

    def response_axes(self) -> list[str]:
        """Axes a response curve is drawn against: the dropout rates, else every numeric axis."""
        numeric = [
            a for a in self.axes
            if all(_finite(c.params.get(a)) for c in self.configurations)
        ]
        dropout = [a for a in numeric if a in self.dropout_axes]
        return dropout or numeric

    # -- selection -----------------------------------------------------------------------------
    def estimates(self, metric: str | None = None) -> dict[str, Estimate]:
        """Configuration key -> estimate of ``metric`` (default: the selection metric)."""
        return {c.key: c.estimate(metric or self.metric) for c in self.configurations}

    def _summary_pick(self, name: str) -> Configuration | None:
        value = (self.summary or {}).get(name)
        return self.config(value) if isinstance(value, str) else None

    @property
    def selected(self) -> Configuration | None:
        """The configuration with the best mean of the selection metric (the sweep's ``best``)."""
        if self.summary is not None and "best" in self.summary:
            return self._summary_pick("best")
        key = selection.best(self.estimates(), maximize=self.maximize)
        return None if key is None else self.config(key)

    @property
    def one_se(self) -> Configuration | None:
        """The one-standard-error choice: most regularized within one SE of the best.

        Candidates differ from the best only in regularization (dropout rates, weight decay,
        L1, L2, max-norm): the sweep's rule (``droplab.sweep.selection.one_se``).
        """
        if self.summary is not None and "one_se" in self.summary:
            return self._summary_pick("one_se")
        order = {c.key: regularization_strength(c) for c in self.configurations}
        key = selection.one_se(self.estimates(), maximize=self.maximize,
                               params={c.key: c.params for c in self.configurations}, strength=order.__getitem__)
        return None if key is None else self.config(key)

    @property
    def baseline(self) -> Configuration | None:
        """The no-dropout configuration matching the selected one (else the first no-dropout one)."""
        sel = self.selected
        base = self.baseline_for(sel) if sel is not None else None
        if base is None and self.dropout_axes:
            base = next((c for c in self.configurations if c.is_baseline), None)
        return base

    def paired(self, config: Configuration, metric: str | None = None) -> Estimate | None:
        """Paired difference ``config - baseline`` of ``metric`` over shared seeds (None without baseline)."""
        base = self.baseline_for(config)
        if base is None:
            return None
        metric = metric or self.metric
        return paired_difference(config.values(metric), base.values(metric), method=self.stat)

    def comparison(self, config: Configuration, metric: str | None = None) -> Comparison | None:
        """``config`` against its baseline under the study's rule, Holm-corrected across its peers.

        The family is every configuration that differs from ``config`` only in dropout (each
        compared with the same baseline). None without a baseline or for the baseline itself.
        """
        base = self.baseline_for(config)
        if base is None or config.is_baseline:
            return None
        metric = metric or self.metric
        values = {base.key: base.values(metric)}
        values.update({c.key: c.values(metric) for c in self.peers(config) if c.key != base.key})
        return compare(values, base.key, maximize=selection.maximize(metric) if metric != self.metric else self.maximize,
                       stat=self.stat)[config.key]

    @property
    def step_cost(self) -> dict[str, dict[str, Any]]:
        """Configuration key -> its cost trained alone, as the sweep measured it ({} if not measured).

        See :func:`droplab.sweep.cost.measure_step_costs`: ``step_ms``, ``ratio`` (with
        ``ratio_lo``/``ratio_hi``) against the no-dropout baseline, ``memory_mb``, ``memory_ratio``.
        """
        cost = (self.summary or {}).get("step_cost")
        return dict(cost) if isinstance(cost, Mapping) else {}

    @property
    def racing(self) -> dict[str, dict[str, Any]]:
        """With ``--seeds auto``: configuration key -> ``{"seeds", "why"}`` ({} otherwise)."""
        racing = (self.summary or {}).get("racing")
        return dict(racing) if isinstance(racing, Mapping) else {}

    def convergence(self, config: Configuration, which: str = "best") -> dict[int, float]:
        """Seed -> epochs to the best validation epoch (``"best"``) or to within 1% of its loss (``"within"``)."""
        out = {}
        for r in config.runs:
            e = r.best_epoch if which == "best" else r.epochs_to_within(0.01)
            out[r.seed] = float(e) if e is not None else _NAN
        return out

    def convergence_ratio(self, config: Configuration, which: str = "best") -> Estimate | None:
        """Per-seed ratio of :meth:`convergence` to the baseline's (same seed): mean and t interval."""
        base = self.baseline_for(config)
        if base is None:
            return None
        a, b = self.convergence(config, which), self.convergence(base, which)
        return mean_ci([a[s] / b[s] for s in a if s in b and _finite(a[s]) and _finite(b[s]) and b[s] > 0])

    def rule_text(self) -> str:
        """The sentence naming the decision rule (``decision rule: t (...)``)."""
        sel = self.selected
        family = len(self.peers(sel)) - 1 if sel is not None and self.baseline_for(sel) is not None else 1
        return rule_text(self.stat, 0.95, max(1, family), self.stat_requested)

    def _spec_int(self, names: tuple[str, ...]) -> list[int]:
        found: list[int] = []

        def walk(d: Any) -> None:
            if isinstance(d, Mapping):
                for k, v in d.items():
                    if k in names and isinstance(v, int) and not isinstance(v, bool):
                        found.append(v)
                    walk(v)

        walk(self.spec)
        return found

    def data_size(self) -> int | None:
        """Number of training examples if the spec says (``subsample``), else None."""
        found = self._spec_int(("subsample", "n_train"))
        return found[0] if found else None

    def max_epochs(self) -> int | None:
        """The epoch budget if the spec says (``epochs``), else None."""
        found = self._spec_int(("epochs",))
        return max(found) if found else None


def _axis_value(study: Study, axis: str, value: Any) -> str:
    place = study.dropout_axes.get(axis)
    if place is not None and place != PLACEMENT and axis.startswith("dropout."):
        return f"{place} {format_value(value)}"
    if place == PLACEMENT:
        return f"dropout {value}"
    return f"{axis.rsplit('.', 1)[-1] if axis.count('.') else axis}={format_value(value)}"


def _mark_baselines(study: Study) -> None:
    for c in study.configurations:
        c.is_baseline = bool(study.dropout_axes) and selection.is_baseline(c.params, study.baseline_axes(c))


def _labels(study: Study) -> None:
    for c in study.configurations:
        parts = []
        if c.is_baseline:
            parts.append("no dropout" if all(v == 0 for v in c.rates.values()) else
                         ", ".join(_axis_value(study, a, 0) for a in study.dropout_axes))
        else:
            parts += [_axis_value(study, a, c.params.get(a)) for a in study.dropout_axes]
        parts += [_axis_value(study, a, c.params.get(a)) for a in study.axes if a not in study.dropout_axes]
        c.label = ", ".join(parts) if parts else c.key


def load_study(source: str | os.PathLike | Store) -> Study:
    """Read a study (a path or an open :class:`~droplab.sweep.store.Store`) for reporting.

    Args:
        source: path of the study file (opened read-only) or an open store.

    Raises:
        StoreError: no study at the path, not a study, or no run has finished yet
            (``study <path> has no finished runs yet``).

    Example::

        study = load_study("out/study.db")
        [c.label for c in study.configurations]
    """
    if isinstance(source, Store):
        return _read(source)
    with Store.open(source, mode="r") as store:
        return _read(store)


def _read(store: Store) -> Study:
    record = store.study()
    all_runs = store.runs()
    status_counts: dict[str, int] = {}
    for r in all_runs:
        status_counts[r["status"]] = status_counts.get(r["status"], 0) + 1
    used = [r for r in all_runs if r["status"] in USED_STATUSES]
    if not any(r["status"] in ("completed", "early_stopped") for r in used):
        raise StoreError(f"study {store.path} has no finished runs yet")
    history: dict[int, list[dict]] = {}
    for row in store.epochs():
        history.setdefault(row["run_id"], []).append(row)
    by_config: dict[int, list[Run]] = {}
    for r in used:
        by_config.setdefault(r["config_id"], []).append(
            Run(r["id"], r["seed"], r["status"], r["result"] or {}, r["cost"] or {}, history.get(r["id"], []))
        )
    configs = []
    dropout_axes: dict[str, str] = {}
    # Axes the sweep named or found to be regularization (run_sweep's ``regularization``):
    # each is its own place, 0 its baseline.
    named = (store.summary() or {}).get("regularization") or []
    for c in store.configurations():
        if c["id"] not in by_config:
            continue
        rates, axes = dropout_rates(c["params"])
        for name in named:
            value = c["params"].get(name)
            if name not in axes and _finite(value):
                rates[name], axes[name] = float(value), name
        dropout_axes.update(axes)
        configs.append(Configuration(c["id"], c["key"], c["params"], c["group"], rates, by_config[c["id"]]))
    names: list[str] = []
    for c in configs:
        names += [k for k in c.params if k not in names]
    axes = [a for a in names if len({repr(c.params.get(a)) for c in configs}) > 1]
    dropout_axes = {a: p for a, p in dropout_axes.items() if a in axes}
    has_acc = any("val_acc" in r.result or any("val_acc" in row for row in r.history[:1])
                  for c in configs for r in c.runs)
    summary = store.summary()
    spec = record["spec"] if isinstance(record["spec"], dict) else {}
    task = "classification" if has_acc else "regression"
    metric = (summary or {}).get("metric") or spec.get("metric") or selection.default_metric(task)
    maximize = (summary or {}).get("maximize")
    study = Study(
        path=str(store.path),
        name=record["name"],
        spec=spec,
        versions=record["versions"],
        created=record["created"],
        summary=summary,
        configurations=configs,
        status_counts=status_counts,
        axes=axes,
        dropout_axes=dropout_axes,
        task=task,
        metric=str(metric),
        maximize=bool(maximize) if isinstance(maximize, bool) else selection.maximize(str(metric)),
    )
    _mark_baselines(study)
    requested = spec.get("stat")
    study.stat_requested = requested if requested in ("t", "bootstrap") else None
    stored = (summary or {}).get("stat")
    n_min = min((len(c.runs) for c in configs), default=0)
    family = max((len(study.peers(c)) - 1 for c in configs if c.is_baseline), default=1)
    study.stat = stored if stored in ("t", "bootstrap") else resolve_stat(study.stat_requested, n_min, max(1, family))
    for c in configs:
        c.stat = study.stat
    _labels(study)
    return study
