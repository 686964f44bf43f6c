"""Deep ensembles trained as one population: M members, one vectorized training run.

Lakshminarayanan, Pritzel, Blundell, "Simple and Scalable Predictive Uncertainty Estimation
using Deep Ensembles", NeurIPS 2017, arXiv:1612.01474: M = 5 networks from different random
initializations (and data orders), optionally on bootstrap resamples, averaged at prediction
(class probabilities; for a mean/variance head, the uniform mixture of the members'
Gaussians). droplab trains the M members as one :class:`~droplab.sweep.Population` (stacked
parameters, one step for all), which is what makes an ensemble cheap here.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from droplab._checks import check_choice, check_positive_int
from droplab.errors import ConfigError, DataError
from droplab.sweep.population import (
    GAUSSIAN_MIN_VAR,
    Member,
    MLPNet,
    ModuleNet,
    Population,
    make_population,
    mlp_rates,
    population_net,
)
from droplab.train.config import RunConfig, TrainConfig

__all__ = ["ensemble", "ensemble_run", "Ensemble", "ENSEMBLE_TASKS"]

#: ``"gaussian"``: regression with a mean/variance head trained on the Gaussian NLL.
ENSEMBLE_TASKS: tuple[str, ...] = ("classification", "regression", "gaussian")


class Ensemble(nn.Module):
    """M trained networks whose forward averages them (what :func:`ensemble` returns).

    Args:
        members: the trained networks (same input and output shapes).
        task: ``"classification"``, ``"regression"`` or ``"gaussian"``.

    ``forward`` returns, for classification, the mean of the members' softmax probabilities
    ``(N, C)`` (probabilities, not logits); for regression, the mean prediction; for
    ``"gaussian"``, ``(N, 2 D)``: the mixture's mean, then its variance
    ``mean_i(var_i + mu_i^2) - mu^2`` (Lakshminarayanan et al. 2017, section 2.4).
    :meth:`member_forward` gives the raw outputs ``(M, N, ...)``, which
    :func:`droplab.inference.mc_predict` reads as the members of one uncertainty result.

    Attributes:
        members: the number M (an int; the networks are :attr:`nets`).
        history: per member, its epoch rows from the population (set by :func:`ensemble`).
        train_seconds: wall time of the population's training (set by :func:`ensemble`).

    Shape:
        ``(N, *input)`` -> ``(N, C)`` / ``(N, D)`` / ``(N, 2 D)``.

    Example:
        >>> nets = [nn.Linear(3, 2) for _ in range(4)]
        >>> Ensemble(nets, "classification")(torch.randn(5, 3)).sum(1)  # doctest: +SKIP
        tensor([1., 1., 1., 1., 1.])
    """

    def __init__(self, members: list[nn.Module], task: str = "classification") -> None:
        super().__init__()
        if not members:
            raise ConfigError("an ensemble needs at least one member")
        self.nets = nn.ModuleList(members)
        self.task = check_choice("task", task, ENSEMBLE_TASKS)
        self.members = len(members)
        self.history: list[list[dict[str, Any]]] = []
        self.train_seconds = float("nan")

    def member_forward(self, x: Tensor) -> Tensor:
        """The members' raw outputs stacked, ``(M, N, ...)`` (logits for classification)."""
        return torch.stack([net(x) for net in self.nets])

    def forward(self, x: Tensor) -> Tensor:
        out = self.member_forward(x)
        if self.task == "classification":
            return out.softmax(-1).mean(0)
        if self.task == "regression":
            return out.mean(0)
        d = out.shape[-1] // 2
        mu = out[..., :d]
        var = torch.nn.functional.softplus(out[..., d:]) + GAUSSIAN_MIN_VAR
        mean = mu.mean(0)
        return torch.cat([mean, (var + mu.pow(2)).mean(0) - mean.pow(2)], dim=-1)

    def extra_repr(self) -> str:
        return f"members={self.members}, task={self.task!r}"


def _unpack(data: Any) -> tuple[Tensor, Tensor, Tensor, Tensor, tuple[int, ...], int | None]:
    if hasattr(data, "x_train"):
        return (data.x_train, data.y_train, data.x_val, data.y_val, tuple(data.input_shape),
                data.n_outputs)
    if isinstance(data, (tuple, list)) and len(data) in (2, 4) and all(isinstance(t, Tensor) for t in data):
        x, y = data[0], data[1]
        xv, yv = (data[2], data[3]) if len(data) == 4 else (x[:0], y[:0])
        return x, y, xv, yv, tuple(x.shape[1:]), None
    raise DataError(
        "data must be a droplab Splits (load_dataset) or a tuple (x_train, y_train[, x_val, "
        f"y_val]) of tensors, got {type(data).__name__}"
    )


def ensemble(
    build: Any,
    data: Any,
    members: int = 5,
    *,
    seed: int = 0,
    bootstrap: bool = False,
    train: TrainConfig | None = None,
    task: str | None = None,
    device: str | torch.device = "cpu",
) -> Ensemble:
    """Train a deep ensemble of ``members`` networks as one population; return its average.

    Lakshminarayanan, Pritzel, Blundell, NeurIPS 2017, arXiv:1612.01474. Member ``i`` uses
    seed ``seed + i`` for its initialization, data order and dropout draws; with
    ``bootstrap=True`` it also trains on its own resample (n rows drawn with replacement, from a
    generator seeded by its seed; the paper found random initialization alone enough, and
    bootstrapping slightly worse). All members train at once: a droplab MLP spec takes the
    hand-written batched MLP path, anything else ``torch.func.vmap``
    (:class:`~droplab.sweep.ModuleNet`); a model vmap cannot run raises
    :class:`~droplab.errors.ConfigError` with the reason.

    Args:
        build: a :class:`~droplab.models.ModelSpec`, or a function ``() -> nn.Module`` called
            once per member under that member's seed (``torch.manual_seed`` inside a forked
            RNG). For ``task="gaussian"`` the network must output ``2 D`` columns (means, raw
            variances) for ``D`` targets.
        data: a :class:`~droplab.data.Splits` or a tuple ``(x_train, y_train[, x_val, y_val])``.
        members: ensemble size M (default 5, the paper's).
        seed: the first member's seed (default 0).
        bootstrap: train each member on a bootstrap resample (default False).
        train: the members' :class:`~droplab.train.TrainConfig` (default ``TrainConfig()``).
        task: ``"classification"``, ``"regression"`` (MSE) or ``"gaussian"`` (mean/variance
            head, Gaussian NLL); default the data's task, else classification for integer
            targets.
        device: where to train (default CPU).

    Returns:
        An :class:`Ensemble` in eval mode, its ``history`` and ``train_seconds`` filled.

    Example::

        splits = load_dataset("mnist1d", seed=0)
        spec = ModelSpec(kind="mlp", hidden=(128, 128))
        deep = ensemble(spec, splits, members=5, train=TrainConfig(epochs=10))
        probs = deep(splits.x_test)                 # (N, 10), averaged probabilities
        result = mc_predict(deep, splits.x_test)    # mean, entropy, member disagreement
    """
    from droplab.models import ModelSpec, build_model

    members = check_positive_int("members", members)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    x, y, xv, yv, input_shape, n_outputs = _unpack(data)
    if task is None:
        task = getattr(data, "task", None) or ("regression" if y.dtype.is_floating_point else "classification")
    check_choice("task", task, ENSEMBLE_TASKS)
    if task == "classification" and y.dtype.is_floating_point:
        raise DataError("classification needs integer class labels, got float targets")
    if task != "classification":  # 2-D targets, so that an empty validation split keeps its width
        y = y.float().reshape(len(y), -1)
        yv = yv.float().reshape(len(yv), y.shape[1])
    train = TrainConfig() if train is None else train
    if not isinstance(train, TrainConfig):
        raise ConfigError(f"train must be a TrainConfig, got {type(train).__name__}")
    if n_outputs is None:
        n_outputs = int(y.max()) + 1 if task == "classification" else (1 if y.dim() == 1 else y.shape[1])
    if task == "gaussian":
        n_outputs *= 2
    seeds = [seed + i for i in range(members)]
    if isinstance(build, ModelSpec):
        spec = build
        rates = mlp_rates(spec)
        group = [Member(f"member{i}", {}, s, train.replace(seed=s), rates) for i, s in enumerate(seeds)]
        make_net: Callable[[], Any] = population_net(spec, input_shape, n_outputs, group)
        make = lambda s: build_model(spec, input_shape, n_outputs, seed=s)  # noqa: E731
    elif callable(build):
        spec = None
        group = [Member(f"member{i}", {}, s, train.replace(seed=s)) for i, s in enumerate(seeds)]
        make_net = lambda: ModuleNet(lambda m: build(), group)  # noqa: E731
        make = None
    else:
        raise ConfigError(f"build must be a ModelSpec or a function returning a module, got {type(build).__name__}")
    # the one place that decides whether runs vectorize (a vmap failure surfaces here, not mid-training)
    pop, reason = make_population(make_net, group, (x, y, xv, yv), task, device=device)
    if pop is None:
        raise ConfigError(f"the members cannot train as one population: {reason}")
    net = pop.net
    if bootstrap:
        n = len(x)
        pop.resample = torch.stack(
            [torch.randint(0, n, (n,), generator=torch.Generator().manual_seed(s ^ 0xB007)) for s in pop.seeds]
        ).to(pop.device)
    t0 = time.perf_counter()
    while not pop.done:
        pop.run_epoch()
    seconds = time.perf_counter() - t0
    nets = []
    for i, s in enumerate(seeds):
        weights = pop.final_weights(i)
        if isinstance(net, MLPNet):
            model = make(s)
            linears = [mod for mod in model.modules() if isinstance(mod, nn.Linear)]
            with torch.no_grad():
                for j, lin in enumerate(linears):
                    lin.weight.copy_(weights[f"W{j}"].t())
                    lin.bias.copy_(weights[f"b{j}"].view(-1))
        else:
            model = copy.deepcopy(net.template)
            state = {k.removeprefix("buffer:"): v for k, v in weights.items()}
            model.load_state_dict(state)
        nets.append(model.cpu().eval())
    out = Ensemble(nets, task).eval()
    out.history = pop.history
    out.train_seconds = seconds
    return out


def ensemble_run(config: RunConfig, members: int, *, bootstrap: bool = False) -> tuple[Ensemble, dict[str, Any]]:
    """What ``droplab train --ensemble M`` does: the run's data and model, M members, test metrics.

    Loads ``config.data`` (split seeded as in :func:`~droplab.train.train_run`), calls
    :func:`ensemble` with ``config.model``, ``config.train``, ``seed=config.seed`` (member ``i``
    gets ``seed + i``) and the configured device, then scores the averaged prediction on the
    test split: ``test_loss`` is the NLL of the averaged probabilities and ``test_acc`` their
    accuracy (classification), or the MSE and RMSE of the mean prediction (regression).

    Args:
        config: a :class:`~droplab.train.RunConfig`.
        members: ensemble size M (at least 2).
        bootstrap: train each member on its own bootstrap resample.

    Returns:
        ``(ensemble, summary)``; ``summary`` is a JSON-ready dict (dataset, model, members,
        bootstrap, seeds, test metrics, seconds).

    Example:
        >>> cfg = RunConfig.from_dict({"data": {"name": "iris"}, "train": {"epochs": 2}})  # doctest: +SKIP
        >>> deep, summary = ensemble_run(cfg, 5)  # doctest: +SKIP
    """
    from droplab.inference.calibration import nll

    if isinstance(members, bool) or not isinstance(members, int) or members < 2:
        raise ConfigError(f"an ensemble needs an integer number of members >= 2, got {members!r}")
    splits = config.data.load(default_seed=config.seed)
    deep = ensemble(config.model, splits, members, seed=config.seed, bootstrap=bootstrap,
                    train=config.train, device=config.train.resolve_device())
    with torch.no_grad():
        pred = deep(splits.x_test)
    summary: dict[str, Any] = {
        "dataset": config.data.name, "model": config.model.kind, "members": members,
        "bootstrap": bootstrap, "seeds": [config.seed + i for i in range(members)],
    }
    if deep.task == "classification":
        summary["test_loss"] = nll(pred, splits.y_test)
        summary["test_acc"] = float((pred.argmax(1) == splits.y_test).double().mean())
    else:
        mse = float((pred.double() - splits.y_test.double().reshape(pred.shape)).pow(2).mean())
        summary["test_loss"], summary["test_rmse"] = mse, mse**0.5
    summary["seconds"] = deep.train_seconds
    return deep, summary
