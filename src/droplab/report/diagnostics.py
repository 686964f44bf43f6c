"""Diagnostics: plain sentences computed from a study's curves and results.

Each check is a pure function of numbers (curves as lists, estimates from
:mod:`droplab.stats`) that returns a :class:`Finding` -- a sentence plus the numbers in
it -- or None when there is nothing to say. :func:`diagnose` runs them all on a
:class:`~droplab.report.study.Study` and adds a recommendation of what to try next.

Thresholds (module constants, so a reader can see and change them):

* :data:`OVERFIT_MIN_RISE` -- overfitting is reported when the mean validation loss ends at
  least this fraction above its minimum, :data:`OVERFIT_MIN_EPOCHS_AFTER` or more epochs after
  the minimum, while the training loss (in eval mode when recorded) ends lower than it was at
  the minimum.
* :data:`UNDERFIT_RATIO` -- a configuration underfits when its dropout rate is above the best
  one's (among configurations that differ only in dropout), its train-eval loss (training
  set, dropout off, final weights) is at least this multiple of that best configuration's,
  *and* its validation loss is at least :data:`UNDERFIT_VAL_MARGIN` (relative) above the
  study's best: too much noise to fit the training set, and worse for it. The sentence also
  gives the ratio to the no-dropout baseline's train-eval loss.
* Dropout helps when the study's decision rule (:func:`droplab.stats.compare`: t or
  bootstrap, Holm-corrected across the dropout settings compared with the same baseline)
  finds the selected configuration better than no dropout in the selection metric (same
  seeds); otherwise "did not help". Without a decision, the 95% interval of the paired
  difference lying on the better side of zero counts (the rule of studies written before).
* When the selection metric and the validation loss (NLL, a proper scoring rule: Gneiting &
  Raftery, JASA 2007) disagree about dropout, :func:`metrics_disagree` says both and which one
  decided; an undecided comparison gets :func:`seeds_sentence` (how many seeds it would need,
  :func:`droplab.stats.seeds_needed`).
* :data:`GAP_MIN_CHANGE` -- the generalization gap (validation minus train-eval loss of the
  final weights) is reported when it changes by at least this fraction against the baseline.
* :data:`EARLY_STOP_PATIENCE`, :data:`EARLY_STOP_MIN_SAVING` -- patience-based early stopping
  (stop once the validation loss has not improved for ``patience`` epochs; Prechelt, "Early
  Stopping - but when?", 1998) is replayed on the recorded validation curves of runs that
  trained their full budget; the saving is reported when it is at least this fraction of
  the epochs.
* :data:`FEW_SEEDS` -- with fewer seeds than this and an undecided comparison, the
  recommendation asks for more seeds.

Example::

    f = overfitting([1, 2, 3, 4, 5], [1.0, 0.8, 0.7, 0.75, 0.8], [1.0, 0.7, 0.5, 0.4, 0.3])
    f.sentence   # 'overfitting: validation loss is lowest at epoch 3 and then rises 14% while ...'
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from droplab.stats import Comparison, Estimate

if TYPE_CHECKING:
    from droplab.report.study import Configuration, Study

__all__ = [
    "OVERFIT_MIN_RISE",
    "OVERFIT_MIN_EPOCHS_AFTER",
    "UNDERFIT_RATIO",
    "UNDERFIT_VAL_MARGIN",
    "GAP_MIN_CHANGE",
    "EARLY_STOP_PATIENCE",
    "EARLY_STOP_MIN_SAVING",
    "FEW_SEEDS",
    "Finding",
    "Diagnosis",
    "overfitting",
    "underfitting",
    "metric_name",
    "format_metric",
    "format_change",
    "dropout_effect",
    "metrics_disagree",
    "seeds_sentence",
    "gap_change",
    "measured_cost",
    "early_stop_epoch",
    "early_stopping_savings",
    "early_stopping_used",
    "one_se_note",
    "diverged_runs",
    "recommend",
    "diagnose",
]

#: Minimum relative rise of the validation loss after its minimum to call it overfitting.
OVERFIT_MIN_RISE = 0.05
#: Minimum number of epochs after the minimum (a one-epoch blip is not a trend).
OVERFIT_MIN_EPOCHS_AFTER = 2
#: Train-eval loss at least this multiple of the baseline's (with a worse validation loss) underfits.
UNDERFIT_RATIO = 1.5
#: ...and validation loss at least this fraction above the best configuration's.
UNDERFIT_VAL_MARGIN = 0.05
#: Relative change of the generalization gap worth a sentence.
GAP_MIN_CHANGE = 0.10
#: Patience replayed on the validation curves.
EARLY_STOP_PATIENCE = 5
#: Fraction of epochs early stopping must save to be mentioned.
EARLY_STOP_MIN_SAVING = 0.10
#: Fewer seeds than this with an undecided comparison: ask for more.
FEW_SEEDS = 5


@dataclasses.dataclass(frozen=True)
class Finding:
    """One diagnostic: a plain sentence and the numbers it was computed from.

    Attributes:
        kind: ``"overfitting"``, ``"underfitting"``, ``"helped"``, ``"no_help"``,
            ``"one_se"``, ``"gap"``, ``"early_stopping"``, ``"diverged"``, ``"metrics_disagree"``,
            ``"seeds_needed"``, ``"cost"``.
        sentence: what a reader sees.
        numbers: the values in the sentence, unrounded (tests and JSON use these).
        level: ``"good"``, ``"info"`` or ``"warning"`` (the page colours by it).
    """

    kind: str
    sentence: str
    numbers: dict[str, Any]
    level: str = "info"


@dataclasses.dataclass(frozen=True)
class Diagnosis:
    """All findings of a study plus the recommendation."""

    findings: list[Finding]
    recommendation: str

    def of_kind(self, kind: str) -> list[Finding]:
        """The findings of one kind."""
        return [f for f in self.findings if f.kind == kind]


def _num(x: float, digits: int = 3) -> str:
    return f"{x:.{digits}g}"


def _ok(*values: float | None) -> bool:
    return all(v is not None and math.isfinite(v) for v in values)


# --- checks on curves -----------------------------------------------------------------------------
def overfitting(
    epochs: Sequence[int],
    val_loss: Sequence[float],
    train_loss: Sequence[float],
    *,
    label: str | None = None,
) -> Finding | None:
    """Overfitting: validation loss bottoms out and rises while training loss keeps falling.

    Args:
        epochs: epoch numbers; ``val_loss`` and ``train_loss`` are aligned with them (mean
            curves across seeds).
        val_loss: validation loss per epoch.
        train_loss: training loss per epoch (eval mode preferred: no dropout noise).
        label: the configuration, named in the sentence when given.

    Returns:
        A warning when the final validation loss is at least :data:`OVERFIT_MIN_RISE` above its
        minimum, :data:`OVERFIT_MIN_EPOCHS_AFTER` or more epochs after it, and the final training
        loss is below its value at the minimum; otherwise None.

    Example:
        >>> f = overfitting([1, 2, 3, 4, 5], [1.0, 0.8, 0.7, 0.75, 0.8], [1, .7, .5, .4, .3])
        >>> f.numbers["best_epoch"], round(f.numbers["rise"], 3)
        (3, 0.143)
    """
    if not (len(epochs) == len(val_loss) == len(train_loss)) or len(epochs) < 2:
        return None
    if not _ok(*val_loss, *train_loss):
        return None
    m = min(range(len(val_loss)), key=lambda i: (val_loss[i], i))
    if len(val_loss) - 1 - m < OVERFIT_MIN_EPOCHS_AFTER or val_loss[m] <= 0:
        return None
    rise = val_loss[-1] / val_loss[m] - 1.0
    fall = 1.0 - train_loss[-1] / train_loss[m] if train_loss[m] > 0 else 0.0
    if rise < OVERFIT_MIN_RISE or not train_loss[-1] < train_loss[m]:
        return None
    who = f" ({label})" if label else ""
    sentence = (
        f"overfitting{who}: validation loss is lowest at epoch {epochs[m]} and then rises "
        f"{rise:.0%} while training loss keeps falling ({fall:.0%} lower by epoch {epochs[-1]})"
    )
    return Finding(
        "overfitting",
        sentence,
        {"best_epoch": epochs[m], "last_epoch": epochs[-1], "rise": rise, "train_fall": fall,
         "val_min": val_loss[m], "val_last": val_loss[-1]},
        "warning",
    )


def underfitting(
    label: str,
    rate: float,
    best_rate: float,
    train_eval: float,
    best_train_eval: float,
    baseline_train_eval: float,
    val: float,
    best_val: float,
) -> Finding | None:
    """Too much dropout: past the best rate, the model no longer fits its training set and validates worse.

    Compared with the best rate rather than with no dropout alone: a memorizing no-dropout
    model has a train-eval loss near zero, so any dropout multiplies it, and that alone is
    not underfitting.

    Args:
        label: the configuration (e.g. ``"rate 0.6"``).
        rate: its total dropout rate.
        best_rate: the total dropout rate of the best configuration among those that differ
            from it only in dropout.
        train_eval: its mean train-eval loss (training set, dropout off) of the final weights.
        best_train_eval: the same for that best configuration.
        baseline_train_eval: the same for its no-dropout baseline (reported, not tested).
        val: its mean validation loss.
        best_val: the lowest mean validation loss of the study.

    Returns:
        A warning when ``rate > best_rate``, ``train_eval >= UNDERFIT_RATIO * best_train_eval``
        and ``val >= (1 + UNDERFIT_VAL_MARGIN) * best_val``; otherwise None.

    Example:
        >>> underfitting("rate 0.6", 0.6, 0.2, 0.62, 0.27, 0.28, 0.70, 0.48).sentence.split(":")[0]
        'rate 0.6 underfits'
    """
    if not _ok(rate, best_rate, train_eval, best_train_eval, val, best_val):
        return None
    if rate <= best_rate or best_train_eval <= 0 or best_val <= 0:
        return None
    ratio_best = train_eval / best_train_eval
    above = val / best_val - 1.0
    if ratio_best < UNDERFIT_RATIO or above < UNDERFIT_VAL_MARGIN:
        return None
    nums = {"ratio_best": ratio_best, "val_above_best": above, "train_eval": train_eval,
            "best_train_eval": best_train_eval}
    versus = f"{ratio_best:.1f}x the best rate's ({_num(train_eval)} vs {_num(best_train_eval)})"
    if _ok(baseline_train_eval) and baseline_train_eval > 0:
        nums["ratio"] = train_eval / baseline_train_eval
        versus = (f"{nums['ratio']:.1f}x the baseline's ({_num(train_eval)} vs {_num(baseline_train_eval)}) "
                  f"and {ratio_best:.1f}x the best rate's")
    sentence = f"{label} underfits: train-eval loss is {versus}, and validation loss is {above:.0%} above the best"
    return Finding("underfitting", sentence, nums, "warning")


_METRIC_NAMES = {"val_loss": "validation loss", "val_acc": "validation accuracy", "val_rmse": "validation RMSE"}


def metric_name(metric: str) -> str:
    """``val_acc`` -> ``validation accuracy`` (other names pass through with ``_`` as spaces)."""
    return _METRIC_NAMES.get(metric, metric.replace("_", " "))


def format_metric(metric: str, value: float) -> str:
    """A value of ``metric`` as text: accuracies as percentages, the rest to 3 significant digits."""
    return f"{value:.1%}" if metric.endswith("_acc") else _num(value)


def format_change(metric: str, value: float, signed: bool = True, unit: bool = True) -> str:
    """A difference of ``metric``: accuracies in percentage points, the rest to 3 significant digits.

    Example:
        >>> format_change("val_acc", 0.021), format_change("val_loss", -0.0123)
        ('+2.1 points', '-0.0123')
    """
    if metric.endswith("_acc"):
        points = round(value * 100, 1) + 0.0  # no "-0.0"
        text = f"{points:+.1f}" if signed else f"{points:.1f}"
        return text + (" points" if unit else "")
    return f"{value:+.3g}" if signed else f"{value:.3g}"


def dropout_effect(
    label: str,
    diff: Estimate | None,
    baseline: Estimate,
    *,
    metric: str = "val_loss",
    maximize: bool = False,
    is_baseline: bool = False,
    data_size: int | None = None,
    extra: str | None = None,
    decision: Comparison | None = None,
) -> Finding:
    """Did dropout help? The paired difference of the selection metric against no dropout.

    Args:
        label: the selected configuration.
        diff: paired difference ``selected - baseline`` of ``metric`` over shared seeds (None
            when the selected configuration is the baseline).
        baseline: the baseline's estimate of ``metric``.
        metric: the selection metric (``val_loss``, ``val_acc``, ``val_rmse``). Default val_loss.
        maximize: whether larger is better. Default False.
        is_baseline: the selected configuration has no dropout.
        data_size: number of training examples, named in the sentence when known.
        extra: a clause appended after a semicolon (e.g. how the other metric moved).
        decision: the study's rule applied to this comparison (:func:`droplab.stats.compare`);
            when given it decides, and the sentence says when Holm's correction undid an
            interval that excludes zero.

    Returns:
        ``"helped"`` (good) when the rule decides "better" (without ``decision``: the 95%
        interval lies entirely on the better side of zero), else ``"no_help"``.

    Example:
        >>> from droplab.stats import mean_ci
        >>> dropout_effect("rate 0.3", mean_ci([-0.05, -0.04, -0.06]), mean_ci([0.6, 0.62, 0.61])).kind
        'helped'
    """
    size = f" ({data_size} training examples)" if data_size else ""
    name = metric_name(metric)
    if is_baseline or diff is None:
        best = "highest" if maximize else "lowest"
        sentence = (
            f"dropout did not help at this data size{size}: no dropout has the {best} {name} "
            f"({format_metric(metric, baseline.mean)})"
        )
        return Finding("no_help", sentence, {"baseline": baseline.mean}, "info")
    nums = {"diff": diff.mean, "lo": diff.lo, "hi": diff.hi, "baseline": baseline.mean}
    if not _ok(diff.lo, diff.hi):
        sentence = (
            f"cannot tell whether dropout helped: {label} changes {name} by "
            f"{format_change(metric, diff.mean)} against no dropout, but with {diff.n} paired "
            "seed(s) there is no confidence interval"
        )
        return Finding("no_help", sentence, nums, "info")
    helped = diff.lo > 0 if maximize else diff.hi < 0
    if decision is not None:
        nums.update(p=decision.p, p_holm=decision.p_holm, family=decision.family)
        helped = decision.better
    if not helped:
        sentence = (
            f"dropout did not help at this data size{size}: the best dropout setting ({label}) "
            f"changes {name} by {format_change(metric, diff.mean)} (95% CI "
            f"{format_change(metric, diff.lo, unit=False)} to {format_change(metric, diff.hi, unit=False)}) against no "
            "dropout" + (", an interval that includes zero" if diff.lo <= 0 <= diff.hi else "")
        )
        if decision is not None and not decision.decided and not diff.lo <= 0 <= diff.hi:
            sentence += (f", but the {decision.stat} rule's test does not reject no difference "
                         f"(p = {decision.p:.2g}, {decision.p_holm:.2g} after Holm's correction across "
                         f"{decision.family} comparison(s))")
        elif decision is not None and decision.worse:
            sentence += " (worse, decided)"
        if extra:
            sentence += f"; {extra}"
        return Finding("no_help", sentence, nums, "info")
    gain, lo, hi = (diff.mean, diff.lo, diff.hi) if maximize else (-diff.mean, -diff.hi, -diff.lo)
    verb = "raises" if diff.mean > 0 else "lowers"
    sentence = (
        f"dropout helped: {label} {verb} {name} by {format_change(metric, gain, False)} "
        f"(95% CI {format_change(metric, lo, False, False)} to {format_change(metric, hi, False, False)})"
    )
    if not metric.endswith("_acc") and _ok(baseline.mean) and baseline.mean > 0:
        nums["relative"] = gain / baseline.mean
        sentence = sentence[:-1] + f", {gain / baseline.mean:.0%} of the no-dropout value)"
    if extra:
        sentence += f"; {extra}"
    return Finding("helped", sentence, nums, "good")


def _verdict(c: Comparison | None) -> str:
    if c is None:
        return "no dropout is best"
    return "better" if c.better else "worse" if c.worse else "undecided"


def metrics_disagree(
    selection: str,
    sel_label: str,
    sel_cmp: Comparison | None,
    loss_label: str,
    loss_cmp: Comparison | None,
    baseline_loss: float,
    loss: float,
) -> Finding | None:
    """Say both verdicts when the selection metric and the validation loss (NLL) disagree.

    The validation loss of a classifier is its negative log-likelihood, a strictly proper
    scoring rule (Gneiting & Raftery, "Strictly Proper Scoring Rules, Prediction, and
    Estimation", JASA 2007): it rewards calibrated probabilities, where accuracy only counts
    the top class. They disagree when one is decided better or worse and the other is not the
    same. The decision keeps the selection metric (what the study was asked to select by).

    Args:
        selection: the selection metric (e.g. ``val_acc``).
        sel_label, sel_cmp: the configuration best by it and its comparison with no dropout
            (None when no dropout is best).
        loss_label, loss_cmp: the same for ``val_loss``.
        baseline_loss, loss: mean validation loss of no dropout and of ``loss_label``.

    Example:
        >>> metrics_disagree("val_acc", "rate 0.1", None, "rate 0.3", None, 1.1, 0.9) is None
        True
    """
    if selection == "val_loss":
        return None
    v_sel, v_loss = _verdict(sel_cmp), _verdict(loss_cmp)
    decided_sel = sel_cmp is not None and sel_cmp.decided
    decided_loss = loss_cmp is not None and loss_cmp.decided
    if not (decided_sel or decided_loss) or (decided_sel and decided_loss and v_sel == v_loss):
        return None
    loss_text = (f"by {metric_name('val_loss')} (NLL, a proper scoring rule) {loss_label} is {v_loss} than no "
                 f"dropout ({format_metric('val_loss', baseline_loss)} -> {format_metric('val_loss', loss)}"
                 + (f", 95% CI of the difference {format_change('val_loss', loss_cmp.diff.lo, unit=False)} to "
                    f"{format_change('val_loss', loss_cmp.diff.hi, unit=False)})" if loss_cmp is not None else ")"))
    sel_text = (f"by {metric_name(selection)} " + (f"{sel_label} is {v_sel}" if sel_cmp is not None
                                                   else "no dropout is best"))
    sentence = (
        f"the metrics disagree: {loss_text}, while {sel_text}. The decision used {metric_name(selection)}, "
        f"the study's selection metric; the loss also rewards calibrated confidence, so when "
        f"probabilities matter rerun with --metric val_loss to decide by it"
    )
    nums = {"selection": selection, "selection_verdict": v_sel, "loss_verdict": v_loss}
    return Finding("metrics_disagree", sentence, nums, "warning")


def seeds_sentence(label: str, c: Comparison, metric: str) -> Finding | None:
    """How many seeds the undecided comparison of ``label`` with no dropout would need.

    From :attr:`droplab.stats.Comparison.seeds_needed` (paired t power analysis at the observed
    effect, 80% power, Holm's first step; Colas et al. 2018, arXiv:1806.08295).

    Example:
        >>> from droplab.stats import compare
        >>> v = {"none": {0: 0.70, 1: 0.72, 2: 0.71}, "r": {0: 0.71, 1: 0.72, 2: 0.73}}
        >>> seeds_sentence("rate 0.1", compare(v, "none", maximize=True)["r"], "val_acc").numbers["seeds"]
        8
    """
    if c.decided:
        return None
    if c.seeds_needed is None:
        sentence = (f"{label} and no dropout differ by {format_change(metric, c.diff.mean)} in "
                    f"{metric_name(metric)}: too small an effect for any practical number of seeds to tell apart")
        return Finding("seeds_needed", sentence, {"seeds": None, "now": c.n}, "info")
    sentence = (f"distinguishing {label} from no dropout at this effect ({format_change(metric, c.diff.mean)} "
                f"{metric_name(metric)}) needs about {c.seeds_needed} seeds (now {c.n}; paired t power analysis, "
                f"80% power" + (f", Holm across {c.family} comparisons" if c.family > 1 else "") + ")")
    return Finding("seeds_needed", sentence, {"seeds": c.seeds_needed, "now": c.n}, "info")


def measured_cost(label: str, info: dict[str, Any], epochs: Estimate | None) -> Finding | None:
    """The cost of ``label`` against no dropout, as measured alone and in epochs to converge.

    Args:
        label: the configuration.
        info: its entry of the sweep's ``step_cost`` (``ratio``, ``ratio_lo``, ``ratio_hi``,
            ``memory_ratio``); see :func:`droplab.sweep.cost.measure_step_costs`.
        epochs: per-seed ratio of epochs to the best validation epoch (None if unknown).

    Example:
        >>> measured_cost("rate 0.5", {"ratio": 1.3, "ratio_lo": 1.1, "ratio_hi": 1.5,
        ...                            "memory_ratio": 1.2}, None).numbers["time_ratio"]
        1.3
    """
    r = info.get("ratio")
    if not _ok(r):
        return None
    sentence = f"cost: trained alone, {label} takes {r:.2f}x the time per step of no dropout"
    if _ok(info.get("ratio_lo"), info.get("ratio_hi")):
        sentence += f" (95% CI {info['ratio_lo']:.2f} to {info['ratio_hi']:.2f})"
    nums: dict[str, Any] = {"time_ratio": r}
    if _ok(info.get("memory_ratio")):
        sentence += f" and {info['memory_ratio']:.2f}x the memory"
        nums["memory_ratio"] = info["memory_ratio"]
    if epochs is not None and _ok(epochs.mean):
        sentence += f", and reaches its best validation epoch after {epochs.mean:.2f}x the epochs"
        if _ok(epochs.lo, epochs.hi):
            sentence += f" (95% CI {epochs.lo:.2f} to {epochs.hi:.2f})"
        nums["epochs_ratio"] = epochs.mean
    return Finding("cost", sentence, nums, "info")


def gap_change(label: str, gap: float, baseline_gap: float) -> Finding | None:
    """How dropout changed the generalization gap (validation minus train-eval loss).

    Returns a finding when the gap changed by at least :data:`GAP_MIN_CHANGE` of the
    baseline's (relative to its absolute size), else None.

    Example:
        >>> gap_change("rate 0.3", 0.08, 0.35).sentence
        'dropout narrows the generalization gap from 0.35 (no dropout) to 0.08 (rate 0.3)'
    """
    if not _ok(gap, baseline_gap) or baseline_gap == 0:
        return None
    change = (gap - baseline_gap) / abs(baseline_gap)
    if abs(change) < GAP_MIN_CHANGE:
        return None
    verb = "narrows" if gap < baseline_gap else "widens"
    sentence = (
        f"dropout {verb} the generalization gap from {_num(baseline_gap, 2)} (no dropout) to "
        f"{_num(gap, 2)} ({label})"
    )
    return Finding("gap", sentence, {"gap": gap, "baseline_gap": baseline_gap, "change": change},
                   "good" if gap < baseline_gap else "info")


def early_stop_epoch(val_loss: Sequence[float], patience: int = EARLY_STOP_PATIENCE) -> int:
    """How many epochs patience-based early stopping would have run on this curve.

    Training stops at the first epoch that is ``patience`` epochs after the best so far;
    non-finite values never improve. Returns ``len(val_loss)`` when it never stops.

    Example:
        >>> early_stop_epoch([1.0, 0.9, 0.95, 0.97, 0.99], patience=2)
        4
    """
    best, best_i = math.inf, -1
    for i, v in enumerate(val_loss):
        if math.isfinite(v) and v < best:
            best, best_i = v, i
        elif best_i >= 0 and i - best_i >= patience:
            return i + 1
    return len(val_loss)


def early_stopping_savings(
    val_curves: Sequence[Sequence[float]], patience: int = EARLY_STOP_PATIENCE
) -> Finding | None:
    """What early stopping would have saved on runs that trained their whole budget.

    Args:
        val_curves: validation loss per epoch, one list per run (runs that ran all epochs).
        patience: the replayed patience. Default :data:`EARLY_STOP_PATIENCE`.

    Returns:
        A finding when the saved fraction of all epochs is at least
        :data:`EARLY_STOP_MIN_SAVING`; it also says how far the loss early stopping keeps is
        from the best each run reached (mean relative excess).

    Example:
        >>> early_stopping_savings([[1.0, 0.5] + [0.6] * 8], patience=2).numbers["saved"]
        0.6
    """
    curves = [list(c) for c in val_curves if len(c) > 0]
    if not curves:
        return None
    total = sum(len(c) for c in curves)
    stops = [early_stop_epoch(c, patience) for c in curves]
    saved = (total - sum(stops)) / total
    if saved < EARLY_STOP_MIN_SAVING:
        return None
    excess = []
    for c, s in zip(curves, stops):
        kept = [v for v in c[:s] if math.isfinite(v)]
        allv = [v for v in c if math.isfinite(v)]
        if kept and allv and min(allv) > 0:
            excess.append(min(kept) / min(allv) - 1.0)
    mean_excess = math.fsum(excess) / len(excess) if excess else math.nan
    sentence = (
        f"early stopping (patience {patience}) would have saved {saved:.0%} of the epochs "
        f"({sum(stops) / len(stops):.1f} instead of {total / len(curves):.1f} per run on average)"
    )
    if math.isfinite(mean_excess):
        sentence += (
            ", keeping the best validation loss"
            if mean_excess == 0
            else f", keeping a validation loss {mean_excess:.1%} above the best reached"
        )
    return Finding("early_stopping", sentence,
                   {"saved": saved, "patience": patience, "mean_stop": sum(stops) / len(stops),
                    "mean_epochs": total / len(curves), "excess": mean_excess})


def early_stopping_used(epochs_run: Sequence[int], budget: int, n_total: int) -> Finding | None:
    """What early stopping did save, for runs it ended early.

    Args:
        epochs_run: epochs each early-stopped run trained.
        budget: the epoch budget of the study.
        n_total: number of runs in all.

    Example:
        >>> early_stopping_used([10, 12], budget=20, n_total=4).numbers["saved"]
        0.45
    """
    if not epochs_run or budget <= 0:
        return None
    saved = (budget * len(epochs_run) - sum(epochs_run)) / (budget * len(epochs_run))
    sentence = (
        f"early stopping ended {len(epochs_run)} of {n_total} runs early, after "
        f"{sum(epochs_run) / len(epochs_run):.1f} of {budget} epochs on average ({saved:.0%} of "
        "their epochs saved)"
    )
    return Finding("early_stopping", sentence, {"saved": saved, "runs": len(epochs_run), "budget": budget})


def one_se_note(
    best_label: str,
    one_se_label: str,
    best: Estimate,
    one_se: Estimate,
    metric: str = "val_loss",
) -> Finding | None:
    """The one-standard-error choice when it differs from the best (Breiman et al. 1984).

    Example:
        >>> from droplab.stats import mean_ci
        >>> one_se_note("rate 0.3", "rate 0.5", mean_ci([.50, .52]), mean_ci([.51, .52])).kind
        'one_se'
    """
    if best_label == one_se_label:
        return None
    sentence = (
        f"one-standard-error choice: {one_se_label} ({metric_name(metric)} "
        f"{format_metric(metric, one_se.mean)}) is within one standard error "
        f"({format_change(metric, best.se, False)}) of the best, {best_label} "
        f"({format_metric(metric, best.mean)}), and regularizes more"
    )
    return Finding("one_se", sentence, {"best": best.mean, "se": best.se, "one_se": one_se.mean})


def diverged_runs(counts: dict[str, int], n_total: int) -> Finding | None:
    """Runs whose loss became non-finite, by configuration.

    Example:
        >>> diverged_runs({"rate 0.9": 2}, 12).sentence
        '2 of 12 runs diverged (rate 0.9: 2); their metrics are left out of the means'
    """
    n = sum(counts.values())
    if n == 0:
        return None
    where = ", ".join(f"{k}: {v}" for k, v in counts.items() if v)
    sentence = f"{n} of {n_total} runs diverged ({where}); their metrics are left out of the means"
    return Finding("diverged", sentence, {"diverged": n, "total": n_total}, "warning")


# --- the recommendation ---------------------------------------------------------------------------
def recommend(
    *,
    has_baseline: bool,
    helped: bool,
    selected: str,
    selected_is_baseline: bool = False,
    one_se: str | None = None,
    baseline_overfits: bool = False,
    edge: tuple[str, str, str] | None = None,
    n_seeds: int = 0,
    early_saving: float | None = None,
    seeds_needed: int | None = None,
) -> str:
    """What to try next, in one to three sentences.

    Args:
        has_baseline: the study has a no-dropout configuration to compare against.
        helped: dropout beat the baseline (its interval lies on the better side of zero).
        selected: the selected configuration's description.
        selected_is_baseline: the selected configuration has no dropout.
        one_se: the one-standard-error choice if it differs from ``selected``.
        baseline_overfits: the no-dropout curves overfit (see :func:`overfitting`).
        edge: ``(axis, "largest" | "smallest", value)`` when the best value of an axis lies at
            the edge of the values tried.
        n_seeds: seeds per configuration (fewer than :data:`FEW_SEEDS` with an undecided
            comparison: ask for more).
        early_saving: fraction of epochs early stopping would save (if worth saying).
        seeds_needed: seeds the undecided comparison would need (see :func:`seeds_sentence`).

    Example:
        >>> recommend(has_baseline=True, helped=True, selected="rate 0.3")
        'Use rate 0.3.'
    """
    out = []
    if not has_baseline:
        out.append(f"Use {selected}; add a configuration without dropout (rate 0, other settings "
                   "equal) so the report can tell whether dropout helps at all.")
    elif not helped and selected_is_baseline:
        if baseline_overfits:
            out.append("Keep the model without dropout: no rate beat it here. Against its overfitting "
                       "try early stopping or weight decay, and rerun with more training data to see "
                       "where dropout starts to help.")
        else:
            out.append("The model without dropout does not overfit here, so dropout has nothing to "
                       "fix: try a larger model or longer training before adding dropout.")
    elif not helped:
        if seeds_needed is not None and seeds_needed > n_seeds:
            out.append(f"{selected} looks best but cannot be told apart from no dropout yet: rerun "
                       f"with about {seeds_needed} seeds (now {n_seeds}) before choosing.")
        elif 0 < n_seeds < FEW_SEEDS:
            out.append(f"{selected} looks best but cannot be told apart from no dropout yet: rerun "
                       f"with more seeds (now {n_seeds}) before choosing.")
        else:
            out.append(f"{selected} looks best but cannot be told apart from no dropout with "
                       f"{n_seeds} seeds: prefer the model without dropout unless other metrics "
                       "favour it.")
        if baseline_overfits and early_saving is None:
            out.append("Early stopping is a cheap guard against the no-dropout model's overfitting.")
    else:
        if one_se:
            out.append(f"Use {one_se} (the one-standard-error choice: as good as {selected} within "
                       "noise and more regularized).")
        else:
            out.append(f"Use {selected}.")
        if edge is not None:
            axis, side, value = edge
            if side == "largest":
                out.append(f"The best {axis} is the largest tried: extend the grid above {value}.")
            else:
                out.append(f"The best {axis} is the smallest non-zero value tried: add values between "
                           f"0 and {value}.")
    if early_saving is not None:
        out.append(f"Turn on early stopping: it would have saved {early_saving:.0%} of the epochs.")
    text = " ".join(out)
    return text[:1].upper() + text[1:]


# --- the whole study ------------------------------------------------------------------------------
def _edge(study: Study, sel: Configuration) -> tuple[str, str, str] | None:
    """An axis whose best value (among configurations alike in everything else) is at an edge."""
    for axis in study.response_axes():
        value = sel.params.get(axis)
        line = next((cs for _, cs in study.lines(axis) if sel in cs), [])
        values = [c.params[axis] for c in line]
        if len(values) < 3:
            continue
        name = study.axis_name(axis)
        if value == max(values):
            return name, "largest", f"{value:g}"
        nonzero = [v for v in values if v != 0]
        if axis in study.dropout_axes and len(nonzero) >= 2 and value == min(nonzero):
            return name, "smallest", f"{value:g}"
    return None


def _train_metric(config: Configuration) -> str:
    return "train_eval_loss" if config.curves("train_eval_loss") else "train_loss"


def _overfit_of(config: Configuration, label: str) -> Finding | None:
    tm = _train_metric(config)
    e1, v = config.mean_curve("val_loss")
    e2, t = config.mean_curve(tm)
    common = [e for e in e1 if e in set(e2)]
    vd, td = dict(zip(e1, v)), dict(zip(e2, t))
    return overfitting(common, [vd[e] for e in common], [td[e] for e in common], label=label)


def diagnose(study: Study) -> Diagnosis:
    """Every diagnostic of a study, plus the recommendation.

    Example::

        d = diagnose(load_study("study.db"))
        for f in d.findings:
            print(f.sentence)
        print(d.recommendation)
    """
    findings: list[Finding] = []
    sel, base, one = study.selected, study.baseline, study.one_se
    n_runs = sum(study.status_counts.values())
    counts = {study.describe(c): sum(r.status == "diverged" for r in c.runs) for c in study.configurations}
    if sel is None:  # no configuration has a finite selection metric
        f = diverged_runs(counts, n_runs)
        return Diagnosis([f] if f else [], f"No configuration has a finite {metric_name(study.metric)}: "
                         "look for diverging runs (lower the learning rate) before comparing rates.")
    sel_d = study.describe(sel)
    m = study.metric
    helped = False
    # dropout effect: the selected configuration against its own no-dropout twin
    own_base = sel if sel.is_baseline else study.baseline_for(sel)
    seeds_needed = None
    if own_base is not None:
        cmp_sel = None if sel.is_baseline else study.comparison(sel, m)
        diff = None if cmp_sel is None else cmp_sel.diff
        other = "val_loss" if m != "val_loss" else study.score_metric
        b_o, s_o = own_base.estimate(other).mean, sel.estimate(other).mean
        extra = (f"{metric_name(other)} {format_metric(other, b_o)} -> {format_metric(other, s_o)}"
                 if _ok(b_o, s_o) else None)
        f = dropout_effect(sel_d, diff, own_base.estimate(m), metric=m, maximize=study.maximize,
                           is_baseline=sel.is_baseline, data_size=study.data_size(), extra=extra,
                           decision=cmp_sel)
        findings.append(f)
        helped = f.kind == "helped"
        # the proper scoring rule's verdict, and the seeds an undecided comparison would need
        peers = [c for c in study.peers(own_base) if not c.is_baseline]
        if peers and study.task == "classification":
            by_loss = min(peers, key=lambda c: (not _ok(c.estimate("val_loss").mean), c.estimate("val_loss").mean))
            cmp_loss = study.comparison(by_loss, "val_loss")
            f = metrics_disagree(m, sel_d, cmp_sel, study.describe(by_loss), cmp_loss,
                                 own_base.estimate("val_loss").mean, by_loss.estimate("val_loss").mean)
            if f:
                findings.append(f)
        if peers:
            best_peer = sel if not sel.is_baseline else max(
                peers, key=lambda c: (_ok(c.estimate(m).mean),
                                      (1 if study.maximize else -1) * c.estimate(m).mean
                                      if _ok(c.estimate(m).mean) else 0.0))
            cmp_peer = cmp_sel if best_peer is sel else study.comparison(best_peer, m)
            if cmp_peer is not None:
                f = seeds_sentence(study.describe(best_peer), cmp_peer, m)
                if f:
                    findings.append(f)
                    seeds_needed = f.numbers["seeds"]
    # one standard error
    if one is not None and one.key != sel.key:
        f = one_se_note(sel_d, study.describe(one), sel.estimate(m), one.estimate(m), m)
        if f:
            findings.append(f)
    # overfitting: the baseline, then the selected configuration
    baseline_overfits = False
    for c in dict.fromkeys([x for x in (base, sel) if x is not None]):
        f = _overfit_of(c, study.describe(c))
        if f:
            findings.append(f)
            baseline_overfits |= c is base
    # underfitting
    losses = [v for c in study.configurations if _ok(v := c.estimate("val_loss").mean)]
    best_val = min(losses) if losses else math.nan
    for c in study.configurations:
        cb = study.baseline_for(c)
        if c.is_baseline or cb is None:
            continue
        peer = study.best_peer(c)
        f = underfitting(study.describe(c), c.total_rate, peer.total_rate, c.estimate("train_eval_loss").mean,
                         peer.estimate("train_eval_loss").mean, cb.estimate("train_eval_loss").mean,
                         c.estimate("val_loss").mean, best_val)
        if f:
            findings.append(f)
    # generalization gap
    if own_base is not None and not sel.is_baseline:
        def gap(c: Configuration) -> float:
            return c.estimate("val_loss").mean - c.estimate("train_eval_loss").mean
        f = gap_change(sel_d, gap(sel), gap(own_base))
        if f:
            findings.append(f)
    # measured cost: the selected configuration (else the largest rate) against no dropout
    cost = study.step_cost
    if cost and own_base is not None:
        who = sel if not sel.is_baseline else max(
            (c for c in study.peers(own_base) if not c.is_baseline), key=lambda c: c.total_rate, default=None)
        if who is not None and who.key in cost:
            f = measured_cost(study.describe(who), cost[who.key], study.convergence_ratio(who, "best"))
            if f:
                findings.append(f)
    # early stopping
    budget = study.max_epochs()
    full = [r for c in study.configurations for r in c.runs
            if r.status == "completed" and (budget is None or r.epochs_run >= budget)]
    stopped = [r.epochs_run for c in study.configurations for r in c.runs if r.status == "early_stopped"]
    early_saving = None
    f = early_stopping_savings([r.curve("val_loss")[1] for r in full]) if full else None
    if f:
        findings.append(f)
        early_saving = f.numbers["saved"]
    if stopped and budget:
        f = early_stopping_used(stopped, budget, n_runs)
        if f:
            findings.append(f)
    # diverged
    f = diverged_runs(counts, n_runs)
    if f:
        findings.append(f)
    rec = recommend(
        has_baseline=own_base is not None or not study.dropout_axes,
        helped=helped or not study.dropout_axes,
        selected=sel_d,
        selected_is_baseline=sel.is_baseline,
        one_se=study.describe(one) if one is not None and one.key != sel.key else None,
        baseline_overfits=baseline_overfits,
        edge=_edge(study, sel) if (helped or not study.dropout_axes) else None,
        n_seeds=min(len(c.runs) for c in study.configurations),
        early_saving=early_saving,
        seeds_needed=seeds_needed,
    )
    return Diagnosis(findings, rec)
