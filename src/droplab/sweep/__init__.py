"""Sweeps: rates x placements x regularizers across seeds, trained as vectorized populations.

    from droplab.sweep import run_sweep, SweepConfig
    result = run_sweep(SweepConfig.from_toml("sweep.toml"))
    print(result.best, result.one_se)

or with your own model::

    result = run_sweep(lambda cfg: make_net(cfg["p"]), data=(x, y, xv, yv),
                       space={"p": [0.0, 0.2, 0.5]}, seeds=5, store="study.db")

- :func:`run_sweep` -- the engine (validation, populations, store, resume, summary).
- ``droplab.sweep.selection`` -- which configuration wins: metric direction, baseline,
  regularization strength, best and one-SE choice (shared with the report).
- :class:`SweepConfig` -- a sweep from TOML and flags, validated up front.
- :class:`GridSpace`, :class:`RandomSpace`, :class:`OptunaSpace` and the distributions.
- :class:`Population`, :class:`MLPNet`, :class:`ModuleNet` -- vectorized training.
- :func:`mean_ci`, :func:`one_standard_error`, :func:`paired_difference` -- the statistics.
- :class:`Store` -- the SQLite study store.
- :class:`LocalExecutor` (default) and ``droplab.sweep.ray_executor.RayExecutor`` (needs
  ``droplab[ray]``) -- where populations train.
"""

from droplab.sweep.config import SweepConfig
from droplab.sweep.engine import run_sweep
from droplab.sweep.executors import LocalExecutor
from droplab.sweep.plan import MEMBER_FIELDS
from droplab.sweep.result import SweepResult
from droplab.sweep.population import Member, MLPNet, ModuleNet, Population, Unstackable, make_population
from droplab.sweep.space import (
    SAMPLERS,
    GridSpace,
    IntUniform,
    LogUniform,
    OptunaSpace,
    RandomSpace,
    SearchSpace,
    Uniform,
    config_key,
    make_space,
)
from droplab.stats import Estimate, mean_ci, one_standard_error, paired_difference, select_best
from droplab.sweep.store import Store

__all__ = [
    "run_sweep",
    "SweepConfig",
    "SweepResult",
    "LocalExecutor",
    "MEMBER_FIELDS",
    "SearchSpace",
    "GridSpace",
    "RandomSpace",
    "OptunaSpace",
    "Uniform",
    "LogUniform",
    "IntUniform",
    "SAMPLERS",
    "make_space",
    "config_key",
    "Population",
    "make_population",
    "Member",
    "MLPNet",
    "ModuleNet",
    "Unstackable",
    "Estimate",
    "mean_ci",
    "select_best",
    "one_standard_error",
    "paired_difference",
    "Store",
]
