"""Pieces every example shares: seeds on the command line, the results table, the comparison line.

Each example trains the same model with and without dropout on the same seeds (same initial
weights, same data order), so configurations are compared seed by seed: the table shows each
configuration's mean over seeds with its 95% interval, and the paired difference to the
no-dropout baseline with its own interval and verdict, both from droplab's one decision rule
(:func:`droplab.stats.compare`: t with few seeds, bootstrap from
:func:`droplab.stats.bootstrap_min_seeds` on, Holm-corrected across the configurations compared
with the baseline); the line before the comparison names the rule.
The last line an example prints starts with ``comparison:`` and names every configuration.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Mapping

from droplab.stats import Estimate, compare, interval, resolve_stat, rule_text

__all__ = ["add_common_args", "report", "Timer"]


def add_common_args(parser: argparse.ArgumentParser, *, seeds: int = 3) -> None:
    """``--seeds N``, ``--quick`` and ``--threads`` (the options every example has)."""
    parser.add_argument("--seeds", type=int, default=seeds, help=f"number of seeds (default {seeds})")
    parser.add_argument(
        "--quick", action="store_true",
        help="a seconds-long smoke run (tiny data and budget): checks that everything works, "
        "its numbers mean nothing",
    )
    parser.add_argument(
        "--threads", type=int, default=1,
        help="torch CPU threads (default 1: these small models gain little from more threads, "
        "and on a busy machine extra threads cost far more than they give)",
    )


def _fmt(value: float, digits: int) -> str:
    return "nan" if not math.isfinite(value) else f"{value:.{digits}f}"


def _interval(est: Estimate, digits: int) -> str:
    if not math.isfinite(est.lo):
        return "-"
    return f"[{_fmt(est.lo, digits)}, {_fmt(est.hi, digits)}]"


def report(
    title: str,
    metric: str,
    results: Mapping[str, Mapping[int, float]],
    *,
    baseline: str,
    higher_is_better: bool,
    digits: int = 3,
    seconds: Mapping[str, float] | None = None,
    comparison_line: bool = True,
) -> dict[str, Estimate]:
    """Print the with-vs-without table and the final ``comparison:`` line.

    Args:
        title: table title.
        metric: what the numbers are (``"test accuracy"``).
        results: configuration -> {seed: metric}; the first key should be the baseline.
        baseline: the configuration without dropout.
        higher_is_better: direction of the metric (accuracy, return: True; loss, RMSE: False).
        digits: decimals shown.
        seconds: configuration -> total training seconds over its seeds (a column if given).
        comparison_line: print the ``comparison:`` line (False for a secondary metric).

    Returns:
        configuration -> :class:`Estimate` over seeds.
    """
    from rich.console import Console
    from rich.table import Table

    n_min = min(len(v) for v in results.values())
    stat = resolve_stat(None, n_min, max(1, len(results) - 1))
    comparisons = compare(results, baseline, maximize=higher_is_better, stat=stat)
    estimates = {name: interval(list(per_seed.values()), stat) for name, per_seed in results.items()}
    table = Table(title=f"{title}\n{metric}, mean over seeds with 95% {stat} interval")
    table.add_column("configuration")
    table.add_column("mean", justify="right")
    table.add_column("95% CI", justify="right")
    table.add_column("per seed", justify="right")
    table.add_column(f"vs {baseline} (paired)", justify="right")
    if seconds is not None:
        table.add_column("train s", justify="right")
    diffs: dict[str, Estimate] = {}
    for name, per_seed in results.items():
        est = estimates[name]
        if name == baseline:
            diff_text = "baseline"
        else:
            diffs[name] = d = comparisons[name].diff
            diff_text = f"{d.mean:+.{digits}f} {_interval(d, digits)}"
        row = [
            name,
            _fmt(est.mean, digits),
            _interval(est, digits),
            " ".join(_fmt(v, digits) for v in per_seed.values()),
            diff_text,
        ]
        if seconds is not None:
            row.append(f"{seconds.get(name, math.nan):.0f}")
        table.add_row(*row)
    console = Console()
    if not console.is_terminal:  # piped or captured: whole lines, never folded
        console = Console(width=160)
    console.print(table)
    if not comparison_line:
        return estimates

    n = len(next(iter(results.values())))
    parts = [f"{name} {_fmt(estimates[name].mean, digits)} {_interval(estimates[name], digits)}"
             for name in results]
    verdicts = []
    for name, d in diffs.items():
        if not math.isfinite(d.lo):
            verdicts.append(f"{name} {d.mean:+.{digits}f} (one seed: no interval)")
            continue
        c = comparisons[name]
        word = "better" if c.better else "worse" if c.worse else "no clear difference"
        verdicts.append(f"{name} {d.mean:+.{digits}f} {_interval(d, digits)} ({word})")
    direction = "higher" if higher_is_better else "lower"
    print(rule_text(stat, family=len(diffs)))
    print(
        f"comparison: {metric} ({direction} is better, {n} seed{'s' * (n != 1)}): "
        + " | ".join(parts)
        + f"; paired vs {baseline}: "
        + ", ".join(verdicts)
    )
    return estimates


class Timer:
    """Wall-clock seconds since construction (``Timer().seconds``)."""

    def __init__(self) -> None:
        self._start = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self._start
