"""Statistics over seeds: means with t confidence intervals, selection, paired differences.

Used by the sweeps, the report, inference experiments and the reproduction suite.

Every number a sweep reports about a configuration summarizes its seeds (independent
replicates), so the intervals are Student-t intervals over seeds:

* :func:`mean_ci` -- mean and two-sided ``confidence`` interval
  ``mean +- t_{(1+c)/2, n-1} * sd / sqrt(n)`` (``sd`` with ``n - 1`` degrees of freedom).
  With one seed there is no spread to estimate: ``sd``, ``se`` and the bounds are ``nan``.
* :func:`select_best` -- the configuration with the best mean.
* :func:`one_standard_error` -- the one-standard-error rule (Breiman, Friedman, Olshen, Stone,
  *Classification and Regression Trees*, 1984; Hastie, Tibshirani, Friedman, *The Elements of
  Statistical Learning*, 2009, section 7.10): among the configurations whose mean is within one
  standard error of the best mean, the most regularized one. "Most regularized" is an order the
  caller supplies (the sweep engine ranks by the sum of dropout rates, then weight decay, L2, L1
  and a tighter max-norm bound).
* :func:`paired_difference` -- the mean and t interval of per-seed differences against a
  baseline trained with the same seeds. Seeds that share initialization, data order and dropout
  draws (common random numbers) make the difference far less noisy than two independent means.

Non-finite values (a diverged run without a finite metric) are left out and counted.

Example::

    est = mean_ci([0.71, 0.69, 0.73])
    est.mean, est.lo, est.hi
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

from droplab.errors import ConfigError

__all__ = ["Estimate", "mean_ci", "clip_interval", "select_best", "one_standard_error", "paired_difference"]


@dataclasses.dataclass(frozen=True)
class Estimate:
    """A mean across seeds with its spread and confidence interval.

    Attributes:
        mean: mean of the finite values (``nan`` when there are none).
        lo, hi: bounds of the two-sided confidence interval (``nan`` with fewer than 2 values).
        sd: sample standard deviation (``n - 1`` degrees of freedom).
        se: standard error of the mean, ``sd / sqrt(n)``.
        n: number of finite values used.
        n_missing: values left out because they were not finite.
        confidence: the interval's confidence level.
    """

    mean: float
    lo: float
    hi: float
    sd: float
    se: float
    n: int
    n_missing: int = 0
    confidence: float = 0.95

    @property
    def half_width(self) -> float:
        """Half the width of the interval (``nan`` with fewer than 2 values)."""
        return (self.hi - self.lo) / 2.0

    def to_dict(self) -> dict[str, Any]:
        """Plain dictionary (for the study store and JSON output)."""
        return dataclasses.asdict(self)


def _t_quantile(confidence: float, dof: int) -> float:
    from scipy.stats import t

    return float(t.ppf((1.0 + confidence) / 2.0, dof))


def _check_confidence(confidence: float) -> float:
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0 < confidence < 1:
        raise ConfigError(f"confidence must be in (0, 1), got {confidence!r}")
    return float(confidence)


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> Estimate:
    """Mean and Student-t confidence interval of ``values`` (one value per seed).

    Args:
        values: numbers; non-finite ones (``nan``, ``inf``, ``None``) are left out and counted
            in ``n_missing``.
        confidence: two-sided level in (0, 1). Default 0.95.

    Returns:
        An :class:`Estimate`. With one finite value ``sd``, ``se``, ``lo`` and ``hi`` are
        ``nan``; with none, every field but the counts is ``nan``.

    Example:
        >>> round(mean_ci([1.0, 2.0, 3.0]).hi, 3)
        5.484
    """
    confidence = _check_confidence(confidence)
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    missing = len(values) - len(finite)
    n = len(finite)
    nan = math.nan
    if n == 0:
        return Estimate(nan, nan, nan, nan, nan, 0, missing, confidence)
    mean = math.fsum(finite) / n
    if n == 1:
        return Estimate(mean, nan, nan, nan, nan, 1, missing, confidence)
    var = math.fsum((v - mean) ** 2 for v in finite) / (n - 1)
    sd = math.sqrt(var)
    se = sd / math.sqrt(n)
    half = _t_quantile(confidence, n - 1) * se
    return Estimate(mean, mean - half, mean + half, sd, se, n, missing, confidence)


def clip_interval(est: Estimate, lo: float = 0.0, hi: float = 1.0) -> Estimate:
    """``est`` with its interval cut to the metric's range ``[lo, hi]`` (an accuracy's [0, 1]).

    A t-interval is symmetric and can pass a bound the metric cannot (``[0.96, 1.02]`` for
    accuracies near 1); the part beyond the bound holds no possible value. Mean, ``sd`` and
    ``se`` are kept (selection uses them); ``nan`` bounds stay ``nan``.

    Example:
        >>> clip_interval(mean_ci([1.0, 1.0, 0.9])).hi
        1.0
    """
    if math.isnan(est.lo):
        return est
    return dataclasses.replace(est, lo=min(max(est.lo, lo), hi), hi=max(min(est.hi, hi), lo))


def _better(a: float, b: float, maximize: bool) -> bool:
    return a > b if maximize else a < b


def select_best(estimates: Mapping[Hashable, Estimate], *, maximize: bool) -> Hashable | None:
    """The key whose estimate has the best mean (ties: the first in order); None if none is finite.

    Example:
        >>> select_best({"a": mean_ci([1, 2]), "b": mean_ci([3, 4])}, maximize=True)
        'b'
    """
    best = None
    for key, est in estimates.items():
        if not math.isfinite(est.mean):
            continue
        if best is None or _better(est.mean, estimates[best].mean, maximize):
            best = key
    return best


def one_standard_error(
    estimates: Mapping[Hashable, Estimate],
    *,
    maximize: bool,
    strength: Callable[[Hashable], Any],
    candidates: Sequence[Hashable] | None = None,
) -> Hashable | None:
    """The one-standard-error choice: the most regularized configuration within 1 SE of the best.

    Breiman et al. (1984); Hastie, Tibshirani & Friedman (2009), section 7.10. The threshold is
    ``best.mean - best.se`` (maximizing) or ``best.mean + best.se`` (minimizing); with one seed
    the best has no standard error and is returned.

    Args:
        estimates: key -> :class:`Estimate`.
        maximize: whether larger means are better.
        strength: key -> sortable regularization strength; the largest strength among the
            configurations within one SE wins (ties: the better mean, then the first).
        candidates: keys allowed as the choice (default: all). The best itself always is one.

    Example:
        >>> est = {0.0: mean_ci([0.80, 0.82]), 0.3: mean_ci([0.80, 0.81]), 0.6: mean_ci([0.6, 0.7])}
        >>> one_standard_error(est, maximize=True, strength=lambda p: p)
        0.3
    """
    best = select_best(estimates, maximize=maximize)
    if best is None:
        return None
    se = estimates[best].se
    if not math.isfinite(se):
        return best
    threshold = estimates[best].mean - se if maximize else estimates[best].mean + se
    allowed = list(estimates) if candidates is None else [k for k in candidates if k in estimates]
    if best not in allowed:
        allowed.append(best)
    within = []
    for key in allowed:
        mean = estimates[key].mean
        if math.isfinite(mean) and (mean >= threshold if maximize else mean <= threshold):
            within.append(key)
    sign = 1.0 if maximize else -1.0
    # max() keeps the first of equal items, so ties go to the earlier key.
    return max(within, key=lambda k: (strength(k), sign * estimates[k].mean))


def paired_difference(
    values: Mapping[Hashable, float],
    baseline: Mapping[Hashable, float],
    confidence: float = 0.95,
) -> Estimate:
    """Mean and t interval of ``values[s] - baseline[s]`` over the seeds ``s`` both have.

    Args:
        values: seed -> metric of a configuration.
        baseline: seed -> metric of the baseline (e.g. the same configuration without dropout).
        confidence: two-sided level. Default 0.95.

    Example:
        >>> paired_difference({0: 0.8, 1: 0.7}, {0: 0.75, 1: 0.66}).mean  # doctest: +ELLIPSIS
        0.04...
    """
    seeds = [s for s in values if s in baseline]
    diffs = []
    for s in seeds:
        a, b = values[s], baseline[s]
        ok = a is not None and b is not None and math.isfinite(a) and math.isfinite(b)
        diffs.append(a - b if ok else math.nan)
    return mean_ci(diffs, confidence)

