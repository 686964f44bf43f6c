"""Statistics over seeds: intervals (t, bootstrap), selection, paired comparisons, seed counts.

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

Robust statistics for few seeds (added for decisions that must hold up with 3-20 seeds):

* :func:`bootstrap_ci` -- percentile, bias-corrected and accelerated (BCa; Efron, "Better
  Bootstrap Confidence Intervals", JASA 1987) or studentized bootstrap intervals, seeded.
* :func:`iqm` -- the interquartile mean (Agarwal et al., "Deep Reinforcement Learning at the
  Edge of the Statistical Precipice", NeurIPS 2021, arXiv:2108.13264, the rliable library).
* :func:`prob_improvement` -- P(A better than B) over paired seeds, with a bootstrap interval
  (Agarwal et al. 2021; Bouthillier et al., "Accounting for Variance in Machine Learning
  Benchmarks", MLSys 2021, arXiv:2103.03098).
* :func:`paired_test` -- a paired two-sided test: exact sign-flip permutation (default),
  Wilcoxon signed-rank or paired t; :func:`holm` -- Holm's step-down correction of a family of
  p-values (Holm, "A Simple Sequentially Rejective Multiple Test Procedure", Scand. J.
  Statist. 1979).
* :func:`seeds_needed` -- how many paired seeds a decision at a given level and power would
  take at the observed effect (paired t power analysis; Colas, Sigaud & Oudeyer, "How Many
  Random Seeds?", 2018, arXiv:1806.08295).
* :func:`resolve_stat`, :func:`interval`, :func:`compare` -- the one decision rule every sweep,
  report, reproduction and example uses: ``"t"`` (Student-t intervals, paired t-test) or
  ``"bootstrap"`` (studentized bootstrap intervals, exact sign-flip test), Holm across the
  configurations compared with one baseline. The default (``stat=None``) is ``"bootstrap"``
  from :func:`bootstrap_min_seeds` seeds on (at least :data:`BOOTSTRAP_MIN_SEEDS`, where the
  studentized interval covers, and enough for the exact test to reach the level after Holm)
  and ``"t"`` below (see ``tests/test_stats.py`` for the coverage figures).

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

import numpy as np

from droplab._checks import check_choice
from droplab.errors import ConfigError

__all__ = [
    "Estimate", "mean_ci", "select_best", "one_standard_error", "paired_difference", "clip_interval",
    "STATS", "BOOTSTRAP_MIN_SEEDS", "bootstrap_ci", "iqm", "prob_improvement", "paired_test", "holm",
    "seeds_needed", "bootstrap_min_seeds", "resolve_stat", "interval", "Comparison", "compare", "rule_text",
]


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
        method: how the interval was computed: ``"t"``, ``"bca"``, ``"percentile"`` or ``"studentized"``.
    """

    mean: float
    lo: float
    hi: float
    sd: float
    se: float
    n: int
    n_missing: int = 0
    confidence: float = 0.95
    method: str = "t"

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
        4.484
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


def _pairs(a: Mapping[Hashable, float] | Sequence[float], b: Mapping[Hashable, float] | Sequence[float]) -> list[float]:
    """Per-seed differences ``a - b``: by key for two mappings, by position for two sequences."""
    if isinstance(a, Mapping) != isinstance(b, Mapping):
        raise ConfigError("a and b must both be seed -> value mappings or both sequences")
    if isinstance(a, Mapping):
        pairs = [(a[s], b[s]) for s in a if s in b]
    else:
        a, b = list(a), list(b)
        if len(a) != len(b):
            raise ConfigError(f"paired values need equal lengths, got {len(a)} and {len(b)}")
        pairs = list(zip(a, b))
    out = []
    for x, y in pairs:
        ok = x is not None and y is not None and math.isfinite(x) and math.isfinite(y)
        out.append(float(x) - float(y) if ok else math.nan)
    return out


def paired_difference(
    values: Mapping[Hashable, float] | Sequence[float],
    baseline: Mapping[Hashable, float] | Sequence[float],
    confidence: float = 0.95,
    *,
    method: str = "t",
    seed: int = 0,
) -> Estimate:
    """Mean and interval of ``values[s] - baseline[s]`` over the seeds ``s`` both have.

    Seeds that share initialization, data order and dropout draws (common random numbers) make
    the difference far less noisy than two independent means (Bouthillier et al., MLSys 2021).

    Args:
        values: seed -> metric of a configuration (or a sequence, paired by position).
        baseline: seed -> metric of the baseline (e.g. the same configuration without dropout).
        confidence: two-sided level. Default 0.95.
        method: ``"t"`` (default: Student-t), ``"bca"``, ``"percentile"`` or
            ``"studentized"`` (bootstrap over seeds, see :func:`bootstrap_ci`), or
            ``"bootstrap"`` (= ``"studentized"``, the ``"bootstrap"`` rule's interval).
        seed: seed of the bootstrap resampling. Default 0.

    Example:
        >>> paired_difference({0: 0.8, 1: 0.7}, {0: 0.75, 1: 0.66}).mean  # doctest: +ELLIPSIS
        0.04...
        >>> paired_difference([1.0, 2.0, 3.5], [0.5, 1.0, 2.0], method="bca").method
        'bca'
    """
    diffs = _pairs(values, baseline)
    if method == "t":
        return mean_ci(diffs, confidence)
    check_choice("method", method, ("t", "bootstrap", *_METHODS))
    return bootstrap_ci(diffs, level=confidence, method="studentized" if method == "bootstrap" else method,
                        seed=seed)


# --- bootstrap ---------------------------------------------------------------------------------------
#: The decision rules a study may use (``droplab sweep --stat``).
STATS = ("t", "bootstrap")
#: From this many seeds on, the default rule is ``"bootstrap"``; below it ``"t"``.
#: Measured (``tests/test_stats.py``, 2,000 samples each): 95% studentized bootstrap intervals
#: cover the mean 94.2% (normal) and 93.3% (exponential) of the time at 5 seeds, where t
#: intervals cover 94.9% and 87.9%; percentile and BCa intervals cover only 84% and 79-81%.
BOOTSTRAP_MIN_SEEDS = 5
_METHODS = ("bca", "percentile", "studentized")
_STATISTICS = ("mean", "iqm")


def _finite_array(values: Sequence[float]) -> tuple[np.ndarray, int]:
    vals = [v for v in values]
    finite = [float(v) for v in vals if v is not None and math.isfinite(float(v))]
    return np.asarray(finite, dtype=np.float64), len(vals) - len(finite)


def _stat_rows(x: np.ndarray, statistic: str) -> np.ndarray:
    """The statistic along the last axis (``mean`` or ``iqm``)."""
    if statistic == "mean":
        return x.mean(axis=-1)
    n = x.shape[-1]
    k = int(0.25 * n)  # scipy.stats.trim_mean's cut: int(proportion * n) from each end
    return np.sort(x, axis=-1)[..., k : n - k].mean(axis=-1)


def _row_quantile(sorted_rows: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Linear-interpolated quantile ``q[i]`` of each sorted row ``i`` (numpy's default method)."""
    b = sorted_rows.shape[1]
    pos = np.clip(q, 0.0, 1.0) * (b - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, b - 1)
    frac = pos - lo
    rows = np.arange(sorted_rows.shape[0])
    return sorted_rows[rows, lo] * (1 - frac) + sorted_rows[rows, hi] * frac


def _row_quantile_n(sorted_rows: np.ndarray, q: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Like :func:`_row_quantile` over the first ``k[i]`` entries of each row (the rest nan)."""
    pos = np.clip(q, 0.0, 1.0) * np.maximum(k - 1, 0)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, np.maximum(k - 1, 0))
    frac = pos - lo
    rows = np.arange(sorted_rows.shape[0])
    return sorted_rows[rows, lo] * (1 - frac) + sorted_rows[rows, hi] * frac


def _bootstrap_bounds(
    x: np.ndarray, level: float, method: str, rng: np.random.Generator, n_boot: int, statistic: str = "mean"
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Bootstrap intervals of many samples at once: ``x`` is (samples, n); returns (stat, lo, hi, se).

    Every sample gets its own resamples. BCa follows Efron (1987): bias correction ``z0`` from
    the share of resampled statistics below the estimate (ties count half), acceleration from
    the jackknife. Studentized (bootstrap-t; Efron & Tibshirani 1993, ch. 12; Hall 1988):
    quantiles of ``(mean* - mean) / se*``; resamples with ``se* = 0`` are left out.
    """
    from scipy.special import ndtr, ndtri

    m, n = x.shape
    theta = _stat_rows(x, statistic)
    idx = rng.integers(0, n, size=(m, n_boot, n))
    resampled = np.take_along_axis(x[:, None, :], idx, axis=2)
    boot = _stat_rows(resampled, statistic)
    alpha = 1.0 - level
    if method == "studentized":
        # bootstrap-t: quantiles of (stat* - stat) / se*, se from each resample (mean only)
        se_hat = x.std(axis=1, ddof=1) / math.sqrt(n)
        se_star = resampled.std(axis=2, ddof=1) / math.sqrt(n)
        with np.errstate(divide="ignore", invalid="ignore"):
            t_star = (boot - theta[:, None]) / se_star
        t_star = np.sort(np.where(np.isfinite(t_star), t_star, np.nan), axis=1)  # nan (se* = 0) sort last
        k = np.isfinite(t_star).sum(axis=1)
        q_lo = _row_quantile_n(t_star, np.full(m, alpha / 2.0), k)
        q_hi = _row_quantile_n(t_star, np.full(m, 1.0 - alpha / 2.0), k)
        return theta, theta - q_hi * se_hat, theta - q_lo * se_hat, boot.std(axis=1, ddof=1)
    boot = np.sort(boot, axis=1)
    se = boot.std(axis=1, ddof=1)
    z = ndtri(np.array([alpha / 2.0, 1.0 - alpha / 2.0]))
    if method == "percentile":
        q = np.broadcast_to(ndtr(z), (m, 2))
    else:
        below = (boot < theta[:, None]).mean(axis=1) + 0.5 * (boot == theta[:, None]).mean(axis=1)
        z0 = ndtri(np.clip(below, 1.0 / (n_boot + 1), n_boot / (n_boot + 1)))
        keep = ~np.eye(n, dtype=bool)
        jack = _stat_rows(np.broadcast_to(x[:, None, :], (m, n, n))[:, keep].reshape(m, n, n - 1), statistic)
        d = jack.mean(axis=1, keepdims=True) - jack
        num, den = (d**3).sum(axis=1), 6.0 * (d**2).sum(axis=1) ** 1.5
        a = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
        zz = z0[:, None] + z[None, :]
        q = ndtr(z0[:, None] + zz / (1.0 - a[:, None] * zz))
    lo, hi = _row_quantile(boot, q[:, 0]), _row_quantile(boot, q[:, 1])
    return theta, lo, hi, se


def bootstrap_ci(
    values: Sequence[float],
    level: float = 0.95,
    method: str = "bca",
    seed: int = 0,
    *,
    n_boot: int = 10_000,
    statistic: str = "mean",
) -> Estimate:
    """Bootstrap confidence interval of the mean (or IQM) of ``values`` over seeds.

    Resamples the seeds with replacement ``n_boot`` times (seeded: the same call gives the same
    interval). ``"percentile"`` takes the quantiles of the resampled statistic; ``"bca"``
    (bias-corrected and accelerated; Efron 1987, "Better Bootstrap Confidence Intervals", JASA
    82:171-185) shifts them for the bias and skew of that distribution, which makes it the
    better choice for skewed metrics. rliable (Agarwal et al., NeurIPS 2021, arXiv:2108.13264)
    reports such intervals for few-run deep RL results.

    ``"studentized"`` (bootstrap-t: Efron & Tibshirani, *An Introduction to the Bootstrap*,
    1993, ch. 12; Hall, Ann. Statist. 1988) bootstraps the t statistic itself and is the one
    that holds up with few seeds: with 5 seeds the 95% percentile and BCa intervals cover the
    mean of a normal sample only about 84% of the time (they can only reuse the 5 values
    seen), the studentized one 94% (measured in ``tests/test_stats.py``). It is the interval
    of the ``"bootstrap"`` decision rule.

    Args:
        values: one number per seed; non-finite ones are left out and counted in ``n_missing``.
        level: two-sided level in (0, 1). Default 0.95.
        method: ``"bca"`` (default), ``"percentile"`` or ``"studentized"`` (mean only).
        seed: seed of the resampling (``numpy.random.default_rng``). Default 0.
        n_boot: number of resamples (>= 100). Default 10,000.
        statistic: ``"mean"`` (default) or ``"iqm"`` (see :func:`iqm`).

    Returns:
        An :class:`Estimate` whose ``mean`` is the statistic, ``lo``/``hi`` the interval,
        ``se`` the bootstrap standard error, ``sd`` the sample standard deviation and
        ``method`` the method. With fewer than 2 finite values the bounds are ``nan``; equal
        values give a zero-width interval.

    Example:
        >>> est = bootstrap_ci([0.71, 0.69, 0.73, 0.70, 0.74, 0.72], method="percentile")
        >>> bool(est.lo < est.mean < est.hi), est.method
        (True, 'percentile')
    """
    level = _check_confidence(level)
    check_choice("method", method, _METHODS)
    check_choice("statistic", statistic, _STATISTICS)
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 100:
        raise ConfigError(f"n_boot must be an integer >= 100, got {n_boot!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    if method == "studentized" and statistic != "mean":
        raise ConfigError(f"the studentized interval is for the mean, got statistic {statistic!r}")
    x, missing = _finite_array(values)
    n = len(x)
    nan = math.nan
    if n == 0:
        return Estimate(nan, nan, nan, nan, nan, 0, missing, level, method)
    stat = float(_stat_rows(x, statistic))
    if n == 1:
        return Estimate(stat, nan, nan, nan, nan, 1, missing, level, method)
    sd = float(x.std(ddof=1))
    if np.all(x == x[0]):
        return Estimate(stat, stat, stat, 0.0, 0.0, n, missing, level, method)
    _, lo, hi, se = _bootstrap_bounds(x[None, :], level, method, np.random.default_rng(seed), n_boot, statistic)
    return Estimate(stat, float(lo[0]), float(hi[0]), sd, float(se[0]), n, missing, level, method)


def iqm(values: Sequence[float]) -> float:
    """Interquartile mean: the mean of the middle 50% of the finite values (25% trimmed mean).

    Robust to a diverging or lucky seed, yet uses half the values, unlike the median.
    Recommended by Agarwal et al. (NeurIPS 2021, arXiv:2108.13264) for few-run results; the cut
    is ``scipy.stats.trim_mean``'s (``int(0.25 * n)`` values from each end).

    Example:
        >>> iqm([1.0, 2.0, 3.0, 4.0, 100.0])
        3.0
    """
    x, _ = _finite_array(values)
    return float(_stat_rows(x, "iqm")) if len(x) else math.nan


def prob_improvement(
    a: Mapping[Hashable, float] | Sequence[float],
    b: Mapping[Hashable, float] | Sequence[float],
    *,
    maximize: bool = True,
    level: float = 0.95,
    seed: int = 0,
    n_boot: int = 10_000,
) -> Estimate:
    """P(A better than B): the share of paired seeds on which ``a`` beats ``b`` (ties count half).

    The probability of improvement of Agarwal et al. (NeurIPS 2021, arXiv:2108.13264) and
    Bouthillier et al. (MLSys 2021, arXiv:2103.03098), here over seeds paired by key (or by
    position for sequences), with a percentile bootstrap interval over the seeds. 0.5 means no
    difference; Bouthillier et al. suggest reading P > 0.75 as a meaningful improvement.

    Args:
        a, b: seed -> metric (or sequences paired by position).
        maximize: larger is better (accuracy). Default True; False for a loss.
        level: two-sided level of the interval. Default 0.95.
        seed: resampling seed. Default 0.
        n_boot: number of resamples. Default 10,000.

    Returns:
        An :class:`Estimate` (``mean`` = P(A better), ``method`` = ``"percentile"``).

    Example:
        >>> prob_improvement([0.8, 0.7, 0.9], [0.7, 0.7, 0.6]).mean
        0.8333333333333334
    """
    d = [v for v in _pairs(a, b)]
    wins = [math.nan if not math.isfinite(v) else (0.5 if v == 0 else float((v > 0) == maximize)) for v in d]
    return bootstrap_ci(wins, level=level, method="percentile", seed=seed, n_boot=n_boot)


# --- tests and their correction -------------------------------------------------------------------
_EXACT_MAX_N = 16


def _signflip_p(d: np.ndarray, rng: np.random.Generator | None = None, n_resamples: int = 20_000) -> np.ndarray:
    """Two-sided sign-flip p-values of the columns of ``d`` (n, k): exact up to 16 seeds.

    Under the null hypothesis of a distribution of differences symmetric about zero every
    pattern of signs is equally likely; the p-value is the share of the ``2**n`` patterns whose
    ``|sum|`` is at least the observed one. Above 16 seeds, ``n_resamples`` random patterns plus
    the observed one (``(1 + count) / (1 + n_resamples)``, never 0).
    """
    n = d.shape[0]
    if n <= _EXACT_MAX_N:
        signs = 1.0 - 2.0 * ((np.arange(2**n)[:, None] >> np.arange(n)[None, :]) & 1)
        count_extra = 0
    else:
        rng = np.random.default_rng(0) if rng is None else rng
        signs = rng.choice([-1.0, 1.0], size=(n_resamples, n))
        count_extra = 1
    observed = np.abs(d.sum(axis=0))
    flipped = np.abs(signs @ d)
    tol = 1e-9 * np.maximum(1.0, np.abs(d).sum(axis=0))
    count = (flipped >= observed - tol).sum(axis=0)
    return (count + count_extra) / (signs.shape[0] + count_extra)


def _t_p(d: np.ndarray) -> np.ndarray:
    """Two-sided paired t-test p-values of the columns of ``d`` (n, k)."""
    from scipy.stats import t

    n = d.shape[0]
    sd = d.std(axis=0, ddof=1)
    mean = d.mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = mean / (sd / math.sqrt(n))
    p = 2.0 * t.sf(np.abs(stat), n - 1)
    return np.where(sd > 0, p, np.where(mean == 0, 1.0, 0.0))


_TESTS = ("signflip", "wilcoxon", "t")


def paired_test(
    a: Mapping[Hashable, float] | Sequence[float],
    b: Mapping[Hashable, float] | Sequence[float],
    *,
    method: str = "signflip",
    seed: int = 0,
) -> float:
    """Two-sided p-value of "no difference" between paired values ``a`` and ``b``.

    Methods:

    * ``"signflip"`` (default) -- the permutation test of paired differences: every sign
      pattern equally likely under the null (Fisher 1935; Pitman 1937). Exact (all ``2**n``
      patterns) up to 16 seeds, 20,000 seeded random patterns above. No normality needed;
      with n seeds the smallest possible p-value is ``2 / 2**n`` (0.0625 at 5 seeds: five seeds
      alone can never reject at 5% without assuming a distribution).
    * ``"wilcoxon"`` -- Wilcoxon signed-rank test (``scipy.stats.wilcoxon``: exact for small n).
    * ``"t"`` -- the paired t-test (the test the t interval of :func:`paired_difference` inverts).

    Seeds missing in either, or with a non-finite value, are left out. Fewer than 2 pairs: 1.0.

    Example:
        >>> paired_test([1.1, 1.2, 1.3, 1.15, 1.25, 1.05], [1.0] * 6)
        0.03125
    """
    check_choice("method", method, _TESTS)
    d = np.array([v for v in _pairs(a, b) if math.isfinite(v)], dtype=np.float64)
    if len(d) < 2:
        return 1.0
    if method == "signflip":
        return float(_signflip_p(d[:, None], np.random.default_rng(seed))[0])
    if method == "t":
        return float(_t_p(d[:, None])[0])
    from scipy.stats import wilcoxon

    if np.all(d == 0):
        return 1.0
    return float(wilcoxon(d, zero_method="wilcox" if np.all(d != 0) else "pratt").pvalue)


def holm(pvalues: Sequence[float] | Mapping[Hashable, float]) -> Any:
    """Holm's step-down adjusted p-values (Holm 1979, Scand. J. Statist. 6:65-70).

    Reject the hypotheses whose adjusted p-value is below the level: the family-wise error (the
    chance of any false rejection among them) then stays at most the level under any
    dependence between the tests -- here, configurations compared with one shared baseline.
    Sorted ascending, the i-th smallest p-value (0-based) is multiplied by ``m - i``, and the
    results are made non-decreasing and capped at 1. Non-finite p-values count as 1.

    Args:
        pvalues: a sequence, or a mapping key -> p-value.

    Returns:
        Adjusted p-values in the same shape (a list, or a dict with the same keys).

    Example:
        >>> holm([0.01, 0.04, 0.03])
        [0.03, 0.06, 0.06]
    """
    keys = list(pvalues) if isinstance(pvalues, Mapping) else None
    ps = [pvalues[k] for k in keys] if keys is not None else list(pvalues)
    ps = [float(p) if p is not None and math.isfinite(p) else 1.0 for p in ps]
    if any(p < 0 or p > 1 for p in ps):
        raise ConfigError(f"p-values must be in [0, 1], got {ps!r}")
    m = len(ps)
    order = sorted(range(m), key=lambda i: ps[i])
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * ps[i]))
        adjusted[i] = running
    return dict(zip(keys, adjusted)) if keys is not None else adjusted


def seeds_needed(
    a: Mapping[Hashable, float] | Sequence[float],
    b: Mapping[Hashable, float] | Sequence[float],
    level: float = 0.95,
    power: float = 0.8,
    *,
    comparisons: int = 1,
    max_seeds: int = 10_000,
) -> int | None:
    """Paired seeds needed to detect the observed effect of ``a - b`` at ``level`` with ``power``.

    A power analysis of the two-sided paired t-test (Colas, Sigaud & Oudeyer, "How Many Random
    Seeds? Statistical Power Analysis in Deep Reinforcement Learning Experiments", 2018,
    arXiv:1806.08295): the observed standardized effect ``d = mean(diff) / sd(diff)`` is taken
    as the truth, and the answer is the smallest ``n >= 2`` with
    ``P(|T| > t_{1-alpha/2, n-1}) >= power`` for ``T`` noncentral t with ``n - 1`` degrees of
    freedom and noncentrality ``d * sqrt(n)``. ``alpha = (1 - level) / comparisons`` (Holm's
    first step, i.e. Bonferroni, when several configurations share the baseline). The effect
    is an estimate from few seeds, so the answer is a rough order of magnitude, not a promise.

    Args:
        a, b: seed -> metric (or sequences paired by position), at least 2 finite pairs.
        level: two-sided level of the decision. Default 0.95.
        power: chance of a decision if the effect is real. Default 0.8.
        comparisons: size of the family corrected for. Default 1.
        max_seeds: give up above this many. Default 10,000.

    Returns:
        The number of seeds, or None when the observed effect is zero (no number would do) or
        more than ``max_seeds`` would be needed.

    Example:
        >>> seeds_needed([0.80, 0.82, 0.79, 0.81], [0.79, 0.80, 0.79, 0.80])
        8
    """
    from scipy.stats import nct, t

    level = _check_confidence(level)
    if isinstance(power, bool) or not isinstance(power, (int, float)) or not 0 < power < 1:
        raise ConfigError(f"power must be in (0, 1), got {power!r}")
    if isinstance(comparisons, bool) or not isinstance(comparisons, int) or comparisons < 1:
        raise ConfigError(f"comparisons must be an integer >= 1, got {comparisons!r}")
    d = np.array([v for v in _pairs(a, b) if math.isfinite(v)], dtype=np.float64)
    if len(d) < 2:
        raise ConfigError(f"seeds_needed needs at least 2 paired finite values, got {len(d)}")
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    if mean == 0:
        return None
    if sd == 0:
        return 2
    effect = abs(mean) / sd
    alpha = (1.0 - level) / comparisons
    ns = np.arange(2, max_seeds + 1)
    crit = t.ppf(1.0 - alpha / 2.0, ns - 1)
    nc = effect * np.sqrt(ns)
    pw = nct.sf(crit, ns - 1, nc) + nct.cdf(-crit, ns - 1, nc)
    hit = np.nonzero(pw >= power)[0]
    return int(ns[hit[0]]) if len(hit) else None


# --- the decision rule ----------------------------------------------------------------------------
def bootstrap_min_seeds(family: int = 1, confidence: float = 0.95) -> int:
    """Fewest seeds from which the default rule is ``"bootstrap"`` for a family of comparisons.

    The larger of :data:`BOOTSTRAP_MIN_SEEDS` (where the studentized interval covers) and the
    fewest seeds with which the exact sign-flip test can reject at all after Holm's correction:
    its smallest p-value is ``2 / 2**n``, so ``2**n > 2 m / alpha``. 6 seeds for one
    comparison, 7 for two or three, 8 for four to six, at 95%.

    Example:
        >>> bootstrap_min_seeds(1), bootstrap_min_seeds(5), bootstrap_min_seeds(10)
        (6, 8, 9)
    """
    alpha = 1.0 - confidence
    return max(BOOTSTRAP_MIN_SEEDS, math.floor(math.log2(2 * max(1, family) / alpha)) + 1)


def resolve_stat(stat: str | None, n_seeds: int, family: int = 1, confidence: float = 0.95) -> str:
    """The rule a study uses: ``stat`` if given, else ``"bootstrap"`` from
    :func:`bootstrap_min_seeds` seeds on (``family`` comparisons at ``confidence``) and ``"t"``
    below: a rule whose test cannot decide would not be a rule.

    An explicit choice is kept whatever the seed count.

    Example:
        >>> resolve_stat(None, 5), resolve_stat(None, 6), resolve_stat(None, 6, family=5), resolve_stat("t", 20)
        ('t', 'bootstrap', 't', 't')
    """
    if stat is None or stat == "auto":
        return "bootstrap" if n_seeds >= bootstrap_min_seeds(family, confidence) else "t"
    return check_choice("stat", stat, STATS)


def interval(values: Sequence[float], stat: str, confidence: float = 0.95, seed: int = 0) -> Estimate:
    """The interval of the mean over seeds under a rule: :func:`mean_ci` (``"t"``) or the
    studentized :func:`bootstrap_ci` (``"bootstrap"``).

    Example:
        >>> interval([1.0, 2.0, 3.0], "t").method
        't'
    """
    check_choice("stat", stat, STATS)
    if stat == "t":
        return mean_ci(values, confidence)
    return bootstrap_ci(values, level=confidence, method="studentized", seed=seed)


@dataclasses.dataclass(frozen=True)
class Comparison:
    """One configuration against the baseline under a rule (what :func:`compare` returns).

    Attributes:
        diff: the paired difference ``config - baseline`` with the rule's interval.
        p: the rule's two-sided p-value (paired t-test, or exact sign-flip test).
        p_holm: ``p`` adjusted by Holm across the configurations compared with the baseline.
        decided: ``p_holm`` below ``1 - confidence``.
        better: the configuration is better than the baseline (decided and in the better
            direction); ``worse`` likewise.
        prob: P(config better than baseline) over seeds, with its interval.
        seeds_needed: :func:`seeds_needed` at the observed effect, Holm's first step over the
            family (None: zero effect or out of reach); for the sign-flip test at least the
            seeds that can reach the level at all.
        n: paired seeds used.
        stat: the rule (``"t"`` or ``"bootstrap"``); family: how many comparisons were corrected.
    """

    diff: Estimate
    p: float
    p_holm: float
    decided: bool
    better: bool
    worse: bool
    prob: Estimate
    seeds_needed: int | None
    n: int
    stat: str
    family: int

    def to_dict(self) -> dict[str, Any]:
        """Plain dictionary (for the study store and JSON output)."""
        return dataclasses.asdict(self)


def compare(
    values: Mapping[Hashable, Mapping[Hashable, float]],
    baseline: Hashable,
    *,
    maximize: bool,
    stat: str | None = None,
    confidence: float = 0.95,
    seed: int = 0,
    power: float = 0.8,
) -> dict[Hashable, Comparison]:
    """Every configuration against ``baseline``, paired by seed, under one rule, Holm-corrected.

    The decision rule of droplab: a configuration differs from the baseline when the rule's
    paired test, Holm-corrected across all the configurations compared with that baseline,
    rejects at ``1 - confidence``. The rule (:func:`resolve_stat`, from the smallest number of
    paired seeds when ``stat`` is None):

    * ``"t"`` -- Student-t interval of the paired difference, paired t-test.
    * ``"bootstrap"`` -- studentized bootstrap interval (bootstrap-t), exact sign-flip
      permutation test (nonparametric: no normality assumed; with n seeds its p-value is at
      least ``2 / 2**n``, so it needs ``log2(2 m / alpha)`` seeds to decide anything among m
      comparisons -- 8 for 5 configurations at 95%).

    Args:
        values: configuration key -> (seed -> metric); must contain ``baseline``.
        baseline: the key of the baseline (e.g. no dropout).
        maximize: larger is better.
        stat: ``"t"``, ``"bootstrap"`` or None (by seed count). Default None.
        confidence: level. Default 0.95.
        seed: bootstrap seed. Default 0.
        power: for :attr:`Comparison.seeds_needed`. Default 0.8.

    Returns:
        key -> :class:`Comparison` for every key but the baseline.

    Example:
        >>> v = {"none": {0: 0.70, 1: 0.72, 2: 0.71}, "p=0.3": {0: 0.75, 1: 0.78, 2: 0.76}}
        >>> c = compare(v, "none", maximize=True, stat="t")["p=0.3"]
        >>> c.better, round(c.diff.mean, 3), c.family
        (True, 0.053, 1)
    """
    confidence = _check_confidence(confidence)
    if baseline not in values:
        raise ConfigError(f"baseline {baseline!r} is not among the configurations {list(values)!r}")
    base = values[baseline]
    keys = [k for k in values if k != baseline]
    diffs = {k: [v for v in _pairs(dict(values[k]), dict(base)) if math.isfinite(v)] for k in keys}
    n_min = min((len(d) for d in diffs.values()), default=0)
    rule = resolve_stat(stat, n_min, max(1, len(keys)), confidence)
    ps = {}
    for k in keys:
        d = np.asarray(diffs[k], dtype=np.float64)
        if len(d) < 2:
            ps[k] = 1.0
        elif rule == "t":
            ps[k] = float(_t_p(d[:, None])[0])
        else:
            ps[k] = float(_signflip_p(d[:, None], np.random.default_rng(seed))[0])
    adjusted = holm(ps)
    alpha = 1.0 - confidence
    out = {}
    for k in keys:
        d = diffs[k]
        est = interval(d, rule, confidence, seed)
        decided = adjusted[k] < alpha and math.isfinite(est.mean) and est.mean != 0
        up = est.mean > 0
        need = None
        if len(d) >= 2:
            need = seeds_needed(d, [0.0] * len(d), confidence, power, comparisons=max(1, len(keys)))
            if need is not None and rule == "bootstrap":
                # the sign-flip test cannot reach alpha / m with fewer than log2(2m / alpha) seeds
                need = max(need, math.ceil(math.log2(2 * max(1, len(keys)) / alpha)))
        out[k] = Comparison(
            diff=est,
            p=ps[k],
            p_holm=adjusted[k],
            decided=decided,
            better=decided and up == maximize,
            worse=decided and up != maximize,
            prob=prob_improvement(dict(values[k]), dict(base), maximize=maximize, level=confidence, seed=seed),
            seeds_needed=need,
            n=len(d),
            stat=rule,
            family=len(keys),
        )
    return out


def rule_text(stat: str, confidence: float = 0.95, family: int = 1, requested: str | None = None) -> str:
    """One sentence naming the rule a decision used (shown by the sweep, the report, the examples).

    Example:
        >>> rule_text("t", family=5, requested="t")
        'decision rule: t (95% Student-t intervals, paired t-test, Holm-corrected across 5 comparisons with the baseline)'
    """
    pct = f"{confidence * 100:g}%"
    what = (f"{pct} Student-t intervals, paired t-test" if stat == "t"
            else f"{pct} studentized bootstrap intervals, exact sign-flip test")
    holm_text = (f", Holm-corrected across {family} comparisons with the baseline" if family > 1 else "")
    why = ""
    if requested is None:
        n = bootstrap_min_seeds(family, confidence)
        why = (f"; the default: bootstrap from {n} seeds on for {family} comparison(s), t below" if stat == "bootstrap"
               else f"; the default: t below {n} seeds for {family} comparison(s), where the exact test "
                    "could not reach the level")
    return f"decision rule: {stat} ({what}{holm_text}{why})"
