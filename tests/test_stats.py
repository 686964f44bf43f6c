"""droplab.stats: interval coverage and Holm's family-wise error by seeded simulation, plus exact cases.

The simulations are the evidence behind the decision rule (``droplab.stats.compare``): run
``python tests/test_stats.py`` to print every coverage figure and the family-wise error.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from droplab import stats
from droplab.errors import ConfigError
from droplab.stats import (
    BOOTSTRAP_MIN_SEEDS,
    bootstrap_ci,
    compare,
    holm,
    iqm,
    paired_difference,
    paired_test,
    prob_improvement,
    resolve_stat,
    seeds_needed,
)

SAMPLES = 2000  # synthetic samples per (distribution, n): coverage standard error about 0.5 points
N_BOOT = 1000
DISTS = {
    "normal": (lambda rng, shape: rng.normal(0.0, 1.0, shape), 0.0),
    "exponential": (lambda rng, shape: rng.exponential(1.0, shape), 1.0),
    "lognormal": (lambda rng, shape: rng.lognormal(0.0, 1.0, shape), math.exp(0.5)),
}
METHODS = ("t", "percentile", "bca", "studentized")


def coverage(dist: str, n: int) -> dict[str, float]:
    """Share of SAMPLES seeded samples of size n whose 95% interval covers the true mean, by method."""
    draw, mu = DISTS[dist]
    x = draw(np.random.default_rng(123), (SAMPLES, n))
    m = x.mean(axis=1)
    half = sps.t.ppf(0.975, n - 1) * x.std(axis=1, ddof=1) / math.sqrt(n)
    out = {"t": float(np.mean((m - half <= mu) & (mu <= m + half)))}
    for method in METHODS[1:]:
        rng = np.random.default_rng(7)
        hits = []
        for c in range(0, SAMPLES, 250):  # chunks keep the (samples, resamples, n) index array small
            _, lo, hi, _ = stats._bootstrap_bounds(x[c : c + 250], 0.95, method, rng, N_BOOT)
            hits.append((lo <= mu) & (mu <= hi))
        out[method] = float(np.concatenate(hits).mean())
    return out


# --- coverage ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [5, 20])
def test_coverage_normal(n):
    cov = coverage("normal", n)
    assert 0.93 <= cov["t"] <= 0.97, cov
    assert 0.93 <= cov["studentized"] <= 0.97, cov
    if n == 5:  # the reason the rule never uses percentile or BCa: far too narrow at 5 seeds
        assert cov["percentile"] < 0.88 and cov["bca"] < 0.88, cov
    else:
        assert cov["percentile"] >= 0.92 and cov["bca"] >= 0.92, cov


@pytest.mark.parametrize("n", [5, 20])
def test_coverage_exponential(n):
    cov = coverage("exponential", n)
    assert 0.93 <= cov["studentized"] <= 0.97, cov  # the rule's bootstrap interval holds on skewed data
    assert cov["t"] < 0.93, cov  # ...where the t interval falls short
    assert cov["percentile"] < 0.90 and cov["bca"] < 0.92, cov


@pytest.mark.parametrize("n", [5, 20])
def test_coverage_lognormal_falls_short_but_studentized_is_best(n):
    # Heavily skewed (lognormal, sigma 1): no interval reaches 93% at 20 seeds or fewer.
    cov = coverage("lognormal", n)
    assert cov["studentized"] >= 0.89, cov
    assert cov["studentized"] == max(cov.values()), cov
    assert cov["t"] < 0.90, cov


def test_default_rule_matches_the_coverage_figures():
    assert BOOTSTRAP_MIN_SEEDS == 5
    # ...and the exact sign-flip test must be able to reject after Holm: 2 / 2**n < 0.05 / m
    assert [stats.bootstrap_min_seeds(m) for m in (1, 2, 3, 4, 6, 7)] == [6, 7, 7, 8, 8, 9]
    assert resolve_stat(None, 5) == "t" and resolve_stat(None, 6) == "bootstrap"
    assert resolve_stat(None, 7, family=5) == "t" and resolve_stat(None, 8, family=5) == "bootstrap"
    assert resolve_stat("t", 50) == "t" and resolve_stat("bootstrap", 3) == "bootstrap"
    with pytest.raises(ConfigError, match="stat must be one of 't', 'bootstrap'; got 'z'"):
        resolve_stat("z", 5)


# --- Holm ---------------------------------------------------------------------------------------------
def null_sweeps(sweeps: int = 1000, configs: int = 10, seeds: int = 10, seed: int = 11) -> np.ndarray:
    """Paired differences (sweeps, seeds, configs) of null sweeps: every configuration equals the baseline.

    Each seed has its own effect shared by every configuration (common random numbers), and
    all configurations are compared with the same baseline run, so the tests are correlated.
    """
    rng = np.random.default_rng(seed)
    seed_effect = rng.normal(0, 1.0, (sweeps, seeds, 1))
    base = seed_effect[..., 0] + rng.normal(0, 0.5, (sweeps, seeds))
    runs = seed_effect + rng.normal(0, 0.5, (sweeps, seeds, configs))
    return runs - base[..., None]


def family_wise_error(test: str, adjust: bool) -> tuple[float, float, float]:
    d = null_sweeps()
    sweeps, seeds, configs = d.shape
    flat = d.transpose(1, 0, 2).reshape(seeds, sweeps * configs)
    p = (stats._t_p(flat) if test == "t" else stats._signflip_p(flat)).reshape(sweeps, configs)
    rejected = 0
    for row in p:
        ps = holm(list(row)) if adjust else list(row)
        rejected += any(q < 0.05 for q in ps)
    ci = sps.binomtest(rejected, sweeps).proportion_ci(0.95, method="exact")
    return rejected / sweeps, ci.low, ci.high


@pytest.mark.parametrize("test", ["t", "signflip"])
def test_holm_keeps_family_wise_error_at_5_percent(test):
    fwer, lo, hi = family_wise_error(test, adjust=True)
    assert fwer <= 0.05, (fwer, lo, hi)
    raw, _, _ = family_wise_error(test, adjust=False)
    assert raw > 0.15, raw  # without the correction a null sweep of 10 "finds" something often


def test_holm_exact_values():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm({"a": 0.2, "b": 0.001}) == pytest.approx({"a": 0.2, "b": 0.002})
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    assert holm([float("nan"), 0.01]) == pytest.approx([1.0, 0.02])
    assert holm([]) == []
    with pytest.raises(ConfigError, match=r"p-values must be in \[0, 1\]"):
        holm([1.5])


# --- tests --------------------------------------------------------------------------------------------
def test_paired_test_exact_cases():
    # all 5 differences positive: the most extreme 2 of 32 sign patterns
    assert paired_test([1.0, 2, 3, 4, 5], [0.0] * 5) == pytest.approx(2 / 32)
    assert paired_test([1.0, 1.0], [1.0, 1.0]) == 1.0
    assert paired_test([1.0], [0.0]) == 1.0
    a, b = [1.3, 0.2, 2.2, 1.1, 0.9, 1.7], [1.0, 0.5, 1.2, 0.2, 0.1, 0.8]
    assert paired_test(a, b, method="t") == pytest.approx(sps.ttest_rel(a, b).pvalue)
    assert paired_test(a, b, method="wilcoxon") == pytest.approx(sps.wilcoxon(np.subtract(a, b)).pvalue)
    # above 16 seeds: seeded Monte Carlo close to the exact normal-theory answer
    rng = np.random.default_rng(0)
    d = rng.normal(0.3, 1.0, 40)
    p = paired_test(list(d), [0.0] * 40)
    assert p == paired_test(list(d), [0.0] * 40)
    assert abs(p - sps.ttest_1samp(d, 0).pvalue) < 0.03
    with pytest.raises(ConfigError, match="method must be one of 'signflip', 'wilcoxon', 't'; got 'z'"):
        paired_test(a, b, method="z")


def test_signflip_null_p_values_are_uniform():
    d = null_sweeps(sweeps=400, configs=5, seeds=8)
    flat = d.transpose(1, 0, 2).reshape(8, -1)
    p = stats._signflip_p(flat)
    assert abs(np.mean(p <= 0.05) - 0.05) < 0.015  # 2000 tests: binomial sd 0.005
    assert p.min() >= 2 / 2**8


# --- bootstrap_ci -----------------------------------------------------------------------------------------
def test_bootstrap_ci_is_seeded_and_matches_the_batched_helper():
    values = [0.71, 0.69, 0.73, 0.70, 0.74, 0.72, 0.60]
    a = bootstrap_ci(values, method="bca", seed=3)
    assert a == bootstrap_ci(values, method="bca", seed=3)
    assert a != bootstrap_ci(values, method="bca", seed=4)
    _, lo, hi, _ = stats._bootstrap_bounds(np.array([values]), 0.95, "bca", np.random.default_rng(3), 10_000)
    assert (a.lo, a.hi) == (lo[0], hi[0])
    assert a.lo < a.mean < a.hi and a.method == "bca" and a.n == 7
    # BCa shifts toward the long tail: the outlier 0.60 pulls the lower end further than the upper
    assert a.mean - a.lo > a.hi - a.mean
    for method in ("percentile", "studentized"):
        e = bootstrap_ci(values, method=method)
        assert e.lo < e.mean < e.hi and e.method == method


def test_bootstrap_ci_edge_cases_and_errors():
    one = bootstrap_ci([0.5, float("nan")])
    assert one.mean == 0.5 and math.isnan(one.lo) and one.n == 1 and one.n_missing == 1
    assert math.isnan(bootstrap_ci([]).mean)
    flat = bootstrap_ci([0.3, 0.3, 0.3])
    assert (flat.lo, flat.mean, flat.hi) == (0.3, 0.3, 0.3)
    assert bootstrap_ci([1.0, 2.0, 3.0, 4.0, 100.0], statistic="iqm").mean == 3.0
    with pytest.raises(ConfigError, match="method must be one of 'bca', 'percentile', 'studentized'; got 'x'"):
        bootstrap_ci([1.0, 2.0], method="x")
    with pytest.raises(ConfigError, match=r"confidence must be in \(0, 1\), got 1.5"):
        bootstrap_ci([1.0, 2.0], level=1.5)
    with pytest.raises(ConfigError, match="n_boot must be an integer >= 100, got 10"):
        bootstrap_ci([1.0, 2.0], n_boot=10)
    with pytest.raises(ConfigError, match="seed must be a non-negative integer, got -1"):
        bootstrap_ci([1.0, 2.0], seed=-1)
    with pytest.raises(ConfigError, match="the studentized interval is for the mean"):
        bootstrap_ci([1.0, 2.0], method="studentized", statistic="iqm")


def test_iqm_matches_scipy_trim_mean():
    rng = np.random.default_rng(1)
    for n in (4, 5, 8, 13):
        x = rng.normal(size=n)
        assert iqm(list(x)) == pytest.approx(sps.trim_mean(x, 0.25))
    assert math.isnan(iqm([]))


# --- paired differences, P(A > B), seeds needed ----------------------------------------------------------
def test_paired_difference_mappings_sequences_and_methods():
    a, b = {0: 0.8, 1: 0.7, 2: 0.75, 9: 0.9}, {0: 0.75, 1: 0.66, 2: 0.74}
    t = paired_difference(a, b)
    assert t.n == 3 and t.method == "t" and t.mean == pytest.approx(0.1 / 3)
    assert paired_difference(list(a.values())[:3], list(b.values())).mean == pytest.approx(t.mean)
    boot = paired_difference(a, b, method="bootstrap")
    assert boot.method == "studentized" and boot.mean == pytest.approx(t.mean)
    assert paired_difference(a, b, 0.9, method="percentile").confidence == 0.9
    with pytest.raises(ConfigError, match="paired values need equal lengths, got 2 and 3"):
        paired_difference([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ConfigError, match="both be seed -> value mappings or both sequences"):
        paired_difference(a, [1.0])
    with pytest.raises(ConfigError, match="method must be one of"):
        paired_difference(a, b, method="z")


def test_prob_improvement():
    p = prob_improvement([0.8, 0.7, 0.9, 0.6], [0.7, 0.7, 0.6, 0.7])
    assert p.mean == pytest.approx((1 + 0.5 + 1 + 0) / 4) and p.lo <= p.mean <= p.hi
    loss = prob_improvement({0: 1.0, 1: 0.9}, {0: 1.1, 1: 1.2}, maximize=False)
    assert loss.mean == 1.0 and loss.lo == loss.hi == 1.0


def test_seeds_needed_reaches_the_power_it_promises():
    rng = np.random.default_rng(5)
    d = rng.normal(0.5, 1.0, 12)
    n = seeds_needed(list(d), [0.0] * 12)
    effect = d.mean() / d.std(ddof=1)
    # simulate the paired t-test at the observed effect: power >= 0.8 at n, < 0.8 at n - 1
    for size, ok in ((n, True), (n - 1, False)):
        sims = rng.normal(effect, 1.0, (20_000, size))
        p = 2 * sps.t.sf(np.abs(sims.mean(1) / (sims.std(1, ddof=1) / math.sqrt(size))), size - 1)
        power = np.mean(p < 0.05)
        assert (power >= 0.79) if ok else (power < 0.81), (size, power)
    assert seeds_needed(list(d), [0.0] * 12, comparisons=5) > n  # Holm's first step needs more
    assert seeds_needed(list(d), [0.0] * 12, power=0.9) > n
    assert seeds_needed([1.0, 1.0], [1.0, 1.0]) is None
    assert seeds_needed([1.0, 2.0], [0.0, 1.0]) == 2
    assert seeds_needed([0.0, 0.01, -0.01, 0.001], [0.0] * 4, max_seeds=50) is None
    with pytest.raises(ConfigError, match="at least 2 paired finite values, got 1"):
        seeds_needed([1.0], [0.0])
    with pytest.raises(ConfigError, match=r"power must be in \(0, 1\), got 1"):
        seeds_needed([1.0, 2.0], [0.0, 0.0], power=1)


def test_compare_is_one_rule_with_holm():
    rng = np.random.default_rng(2)
    seed_fx = rng.normal(0, 0.02, 8)
    values = {"none": dict(enumerate(0.70 + seed_fx))}
    values["big"] = dict(enumerate(0.76 + seed_fx + rng.normal(0, 0.005, 8)))
    values["tiny"] = dict(enumerate(0.70 + seed_fx + rng.normal(0.001, 0.01, 8)))
    out = compare(values, "none", maximize=True)
    assert set(out) == {"big", "tiny"}
    big, tiny = out["big"], out["tiny"]
    assert big.stat == "bootstrap" and big.family == 2 and big.n == 8
    assert big.better and not big.worse and big.diff.method == "studentized"
    assert big.p == pytest.approx(2 / 2**8) and big.p_holm == pytest.approx(4 / 2**8)
    assert not tiny.decided and tiny.seeds_needed is not None and tiny.seeds_needed > 8
    assert big.prob.mean == 1.0
    t = compare(values, "none", maximize=True, stat="t")
    assert t["big"].diff.method == "t" and t["big"].better
    lower = compare(values, "none", maximize=False, stat="t")
    assert lower["big"].worse and not lower["big"].better
    three = compare({k: dict(list(v.items())[:3]) for k, v in values.items()}, "none", maximize=True)
    assert three["big"].stat == "t"  # 3 seeds: the default falls back to t
    with pytest.raises(ConfigError, match="baseline 'x' is not among the configurations"):
        compare(values, "x", maximize=True)


if __name__ == "__main__":  # print every figure the tests assert on
    for dist in DISTS:
        for n in (5, 20):
            cov = coverage(dist, n)
            print(f"coverage {dist:<11} n={n:<2}  " + "  ".join(f"{m} {cov[m]:.3f}" for m in METHODS))
    for test in ("t", "signflip"):
        for adjust in (True, False):
            f, lo, hi = family_wise_error(test, adjust)
            print(f"family-wise error, 1000 null sweeps x 10 configurations, {test:<8} "
                  f"{'Holm' if adjust else 'raw '}: {f:.3f} [{lo:.3f}, {hi:.3f}]")
