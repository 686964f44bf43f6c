"""k-fold cross-validation as more members of a population (``run_sweep(..., folds=k)``).

On a small table a 10-20% validation split holds a few dozen examples: accuracies tie and the
interval of the best configuration is wider than the spread of the configurations (the
small-validation guard of :func:`droplab.sweep.result.small_validation` says so). k-fold
cross-validation (Stone, 1974, "Cross-validatory choice and assessment of statistical
predictions", JRSS B 36(2)) scores each configuration on every example instead.

The pool is the training and validation splits together (the test split stays unseen). It is
cut into ``k`` validation folds of ``n // k`` examples each, stratified by class for
classification and binary tasks (dealt round-robin from an order shuffled within each class,
seeded with the data seed); the ``n % k`` examples left over (fewer than ``k``) are in every fold's training set
and in no validation fold, so that every fold trains on ``n - n // k`` examples and the folds
stack. Each (configuration, seed, fold) is a member of ONE population (per-member data sets,
the population's ``groups``); each (configuration, seed) run is recorded with the mean over its
folds of every validation metric, epoch by epoch, so selection and the intervals over seeds
work as without folds: the metric is the mean over folds, then over seeds.

Example::

    result = run_sweep(build, (x, y), {"p": [0.0, 0.3]}, seeds=3, folds=5, task="classification")
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from droplab.errors import ConfigError
from droplab.sweep.population import Member, Population

__all__ = ["check_folds", "fold_indices", "fold_data", "FoldPopulation"]

_FOLD_STREAM = 7  # the fold order's own stream of the data seed


def check_folds(folds: Any, n: int | None = None) -> int | None:
    """``folds``: None (no cross-validation) or an integer ``2 <= k <= n``.

    Example:
        >>> check_folds(5, 100), check_folds(None)
        (5, None)
    """
    if folds is None:
        return None
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ConfigError(f"folds must be an integer >= 2 (k-fold cross-validation), got {folds!r}")
    if n is not None and folds > n:
        raise ConfigError(f"folds must be at most the {n} examples of the training and validation splits, got {folds}")
    return folds


def fold_indices(y: torch.Tensor, k: int, *, stratify: bool, seed: int = 0) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The ``k`` validation folds of ``len(y)`` examples, and the examples left over.

    Each fold holds ``len(y) // k`` examples; the folds are disjoint, and with the leftover
    (``len(y) % k`` examples, in every training set) they cover ``range(len(y))``.

    Args:
        y: targets (class codes when ``stratify``).
        k: number of folds, ``2 <= k <= len(y)``.
        stratify: spread each class evenly over the folds.
        seed: the data seed.

    Returns:
        ``(folds, leftover)``: a list of ``k`` sorted index tensors, and a sorted index tensor.

    Example:
        >>> folds, rest = fold_indices(torch.arange(10) % 2, 3, stratify=True)
        >>> [len(f) for f in folds], len(rest)
        ([3, 3, 3], 1)
    """
    n = len(y)
    check_folds(k, n)
    rng = np.random.default_rng(np.random.SeedSequence([seed, _FOLD_STREAM]))
    order_np = rng.permutation(n)
    if stratify:  # shuffled within each class, the classes one after another
        labels = y.detach().cpu().numpy().astype(np.int64)
        order_np = order_np[np.argsort(labels[order_np], kind="stable")]
    size, r = n // k, n % k
    # The r left over are spread through the order (one from every n / r stretch), the rest
    # dealt like cards: fold f takes every k-th of them, so within a class the folds' counts
    # differ by at most one.
    spare = np.zeros(n, dtype=bool)
    spare[[int((j + 0.5) * n / r) for j in range(r)]] = True
    order = torch.as_tensor(order_np[~spare], dtype=torch.long)
    body = order.view(size, k)
    folds = [body[:, f].sort().values for f in range(k)]
    return folds, torch.as_tensor(order_np[spare], dtype=torch.long).sort().values


def fold_data(splits: Any, k: int, seed: int = 0) -> tuple[tuple[torch.Tensor, ...], list[torch.Tensor]]:
    """Per-fold data sets of ``splits`` (train and validation pooled), stacked on a fold axis.

    Returns:
        ``((x, y, x_val, y_val), folds)``: ``x`` is ``(k, n - n // k, ...)`` (fold ``f``'s
        training examples, in pool order), ``x_val`` is ``(k, n // k, ...)`` (fold ``f``),
        and ``folds`` the validation indices into the pool (:func:`fold_indices`).
    """
    x = torch.cat([splits.x_train, splits.x_val])
    y = torch.cat([splits.y_train, splits.y_val])
    folds, _ = fold_indices(y, k, stratify=splits.task in ("classification", "binary"), seed=seed)
    train_rows = []
    for f in folds:
        keep = torch.ones(len(y), dtype=torch.bool)
        keep[f] = False
        train_rows.append(keep.nonzero().squeeze(1))
    tr, va = torch.stack(train_rows), torch.stack(folds)
    return (x[tr], y[tr], x[va], y[va]), folds


class FoldPopulation:
    """A population of (run, fold) members that reports per run: the mean over its folds.

    It has what :func:`droplab.sweep.executors.train_job` and the engine's test evaluation use
    of a :class:`~droplab.sweep.population.Population` (``done``, ``epoch``, ``run_epoch``,
    ``status``, ``result``, ``cost``, checkpoints, ``members``, ``evaluate_members``); member
    ``i`` is run ``i`` of the members given, trained as folds ``0..k-1``.

    Args:
        make_net: ``fold members -> network`` (an ``MLPNet`` or ``ModuleNet`` of them).
        members: the runs (configuration, seed).
        splits: the data (train and validation are pooled).
        k: number of folds.
        seed: the data seed of the folds.
        device: torch device.
    """

    def __init__(self, make_net, members: list[Member], splits: Any, k: int, *, seed: int = 0,
                 device: torch.device | str = "cpu") -> None:
        self.k_folds = k
        self.members = list(members)
        data, self.folds = fold_data(splits, k, seed)
        self.fold_members = [
            Member(f"{m.key}#fold={f}", m.params, m.seed, m.train, m.rates, schedules=m.schedules)
            for m in members for f in range(k)
        ]
        groups = [f for _ in members for f in range(k)]
        self.pop = Population(make_net(self.fold_members), self.fold_members, data, splits.task, device=device,
                              groups=groups)
        self.net = self.pop.net

    # -- what train_job uses -----------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self.pop.done

    @property
    def epoch(self) -> int:
        return self.pop.epoch

    @property
    def extra_metrics(self) -> tuple[str, ...]:
        return self.pop.extra_metrics

    @extra_metrics.setter
    def extra_metrics(self, value: tuple[str, ...]) -> None:
        self.pop.extra_metrics = tuple(value)

    def _runs(self, i: int) -> range:
        return range(i * self.k_folds, (i + 1) * self.k_folds)

    def _mean_row(self, rows: list[dict[str, Any] | None]) -> dict[str, Any]:
        """The mean over the folds of every number; NaN where a fold has no value."""
        first = next(r for r in rows if r is not None)
        out: dict[str, Any] = {}
        for key, value in first.items():
            if key == "epoch" or not isinstance(value, (int, float)) or isinstance(value, bool):
                out[key] = value
                continue
            values = [r.get(key) if r is not None else None for r in rows]
            if key in ("seconds", "peak_mem_mb"):  # a run's cost is that of its folds
                out[key] = sum(v for v in values if v is not None)
            elif any(v is None for v in values):
                out[key] = math.nan
            else:
                out[key] = sum(values) / len(values)
        return out

    def run_epoch(self) -> dict[int, dict[str, Any]]:
        """One epoch of every fold; ``{run index: the mean row over its folds}``."""
        rows = self.pop.run_epoch()
        out = {}
        for i in range(len(self.members)):
            got = [rows.get(j) for j in self._runs(i)]
            if any(r is not None for r in got):
                out[i] = self._mean_row(got)
        return out

    @property
    def status(self) -> list[str | None]:
        out = []
        for i in range(len(self.members)):
            st = [self.pop.status[j] for j in self._runs(i)]
            out.append(None if any(s is None for s in st) else ("diverged" if "diverged" in st else st[0]))
        return out

    def result(self, i: int) -> dict[str, Any]:
        """Run ``i``'s result: each fold's final metrics, averaged (``folds`` records k).

        ``best_epoch``, ``weights_epoch`` and ``epochs_run`` are the folds' when they agree,
        else the largest (folds may stop early at different epochs); ``restored`` is True when
        any fold restored its best weights.
        """
        res = [self.pop.result(j) for j in self._runs(i)]
        out = self._mean_row(res)
        for key in ("best_epoch", "weights_epoch", "epochs_run"):
            out[key] = res[0][key] if all(r[key] == res[0][key] for r in res) else max(
                (r[key] for r in res if r[key] is not None), default=None)
        out["stop_reason"] = self.status[i]
        out["restored"] = any(r["restored"] for r in res)
        out["folds"] = self.k_folds
        return out

    def cost(self, i: int) -> dict[str, Any]:
        costs = [self.pop.cost(j) for j in self._runs(i)]
        return {key: sum(c[key] for c in costs) if isinstance(costs[0][key], (int, float)) else costs[0][key]
                for key in costs[0]}

    def to_bytes(self) -> bytes:
        return self.pop.to_bytes()

    def load_bytes(self, blob: bytes) -> None:
        self.pop.load_bytes(blob)

    def final_bytes(self) -> bytes:
        return self.pop.final_bytes()

    def load_final_bytes(self, blob: bytes) -> None:
        self.pop.load_final_bytes(blob)

    def evaluate_members(self, indices, x: torch.Tensor, y: torch.Tensor) -> dict[str, list[float]]:
        """Each run's folds evaluated on ``(x, y)`` (the test split), averaged over the folds."""
        fold_idx = [j for i in indices for j in self._runs(i)]
        finals = [self.pop.final_weights(j) for j in fold_idx]
        stacked = {n: torch.stack([f[n] for f in finals]) for n in finals[0]}
        k = self.k_folds
        xg, yg = x.unsqueeze(0).expand(k, *x.shape), y.unsqueeze(0).expand(k, *y.shape)
        gi = torch.tensor([f for _ in indices for f in range(k)])
        ev = self.pop.evaluate(xg, yg, stacked, group_index=gi)
        return {name: [sum(v[a * k : (a + 1) * k]) / k for a in range(len(indices))] for name, v in ev.items()}
