"""Search spaces: which configurations a sweep trains.

A *configuration* is a flat dictionary ``{axis name: value}`` -- one point of the space,
without the seed (every configuration runs with every seed of the sweep). Three samplers:

* :class:`GridSpace` (the default): the cartesian product of the axes' value lists, in order
  (the last axis varies fastest).
* :class:`RandomSpace`: ``n`` independent draws, seeded (continuous draws are rounded to 4
  significant digits so that keys stay readable; duplicates are drawn once).
* :class:`OptunaSpace`: Optuna's TPE sampler (Bergstra, Bardenet, Bengio, Kegl, NeurIPS 2011)
  through its ask/tell interface, ``batch`` trials per round so that a round trains as one
  population. Optuna is an optional dependency, imported only when this space is used
  (``pip install optuna``).

An axis is a list of values (grid values; for random/TPE a categorical choice) or a
distribution: :class:`Uniform`, :class:`LogUniform`, :class:`IntUniform`. In TOML::

    [space]
    "dropout.hidden" = [0.0, 0.1, 0.2, 0.3]          # a list
    "train.lr" = {loguniform = [1e-4, 1e-2]}          # a distribution (random / tpe)

Every space exposes the same protocol, so the engine treats them alike: ``ask()`` returns the
next round of configurations (an empty list when the space is exhausted) and ``tell(params,
value)`` reports a configuration's mean validation metric (only adaptive spaces use it).

Example::

    space = GridSpace({"dropout.hidden": [0.0, 0.5], "train.lr": [1e-3, 1e-2]})
    space.configurations()   # 4 dicts
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from droplab._checks import check_choice, check_positive_int
from droplab.errors import ConfigError

__all__ = [
    "Uniform",
    "LogUniform",
    "IntUniform",
    "SearchSpace",
    "GridSpace",
    "RandomSpace",
    "OptunaSpace",
    "SAMPLERS",
    "make_space",
    "parse_axis",
    "config_key",
]

#: How a search space draws configurations (``tpe`` needs optuna).
SAMPLERS = ("grid", "random", "tpe")


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _round_sig(value: float, digits: int = 4) -> float:
    if value == 0 or not math.isfinite(value):
        return value
    return float(f"{value:.{digits}g}")


@dataclasses.dataclass(frozen=True)
class Uniform:
    """Continuous uniform distribution on ``[low, high]`` (random and TPE sampling).

    Example:
        >>> Uniform(0.0, 0.7)
        Uniform(low=0.0, high=0.7)
    """

    low: float
    high: float

    def __post_init__(self) -> None:
        low, high = _number("low", self.low), _number("high", self.high)
        if not low < high:
            raise ConfigError(f"uniform needs low < high, got [{self.low}, {self.high}]")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    def sample(self, rng: np.random.Generator) -> float:
        """One draw, rounded to 4 significant digits."""
        return _round_sig(float(rng.uniform(self.low, self.high)))

    def bounds(self) -> list[Any]:
        """The values to validate a configuration at (the ends of the range)."""
        return [self.low, self.high]

    def suggest(self, trial: Any, name: str) -> Any:
        """Ask an Optuna trial for a value."""
        return trial.suggest_float(name, self.low, self.high)

    def to_dict(self) -> dict[str, Any]:
        """TOML form ``{"uniform": [low, high]}``."""
        return {"uniform": [self.low, self.high]}


@dataclasses.dataclass(frozen=True)
class LogUniform(Uniform):
    """Log-uniform distribution on ``[low, high]``, ``0 < low < high`` (learning rates, decay).

    Example:
        >>> LogUniform(1e-4, 1e-2)
        LogUniform(low=0.0001, high=0.01)
    """

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.low <= 0:
            raise ConfigError(f"loguniform needs 0 < low < high, got [{self.low}, {self.high}]")

    def sample(self, rng: np.random.Generator) -> float:
        """One draw, rounded to 4 significant digits."""
        return _round_sig(float(math.exp(rng.uniform(math.log(self.low), math.log(self.high)))))

    def suggest(self, trial: Any, name: str) -> Any:
        """Ask an Optuna trial for a value."""
        return trial.suggest_float(name, self.low, self.high, log=True)

    def to_dict(self) -> dict[str, Any]:
        """TOML form ``{"loguniform": [low, high]}``."""
        return {"loguniform": [self.low, self.high]}


@dataclasses.dataclass(frozen=True)
class IntUniform:
    """Uniform integers in ``[low, high]`` (both included).

    Example:
        >>> IntUniform(1, 4)
        IntUniform(low=1, high=4)
    """

    low: int
    high: int

    def __post_init__(self) -> None:
        for name in ("low", "high"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise ConfigError(f"int {name} must be an integer, got {v!r}")
        if not self.low <= self.high:
            raise ConfigError(f"int needs low <= high, got [{self.low}, {self.high}]")

    def sample(self, rng: np.random.Generator) -> int:
        """One draw."""
        return int(rng.integers(self.low, self.high, endpoint=True))

    def bounds(self) -> list[Any]:
        """The values to validate a configuration at (the ends of the range)."""
        return [self.low, self.high]

    def suggest(self, trial: Any, name: str) -> Any:
        """Ask an Optuna trial for a value."""
        return trial.suggest_int(name, self.low, self.high)

    def to_dict(self) -> dict[str, Any]:
        """TOML form ``{"int": [low, high]}``."""
        return {"int": [self.low, self.high]}


_DISTRIBUTIONS = {"uniform": Uniform, "loguniform": LogUniform, "int": IntUniform}
Distribution = Uniform | IntUniform


def parse_axis(name: str, value: Any) -> list[Any] | Distribution:
    """Read one axis of a space: a non-empty list of values, or a distribution table.

    Args:
        name: the axis name (for messages).
        value: a list/tuple of values; a distribution object; or a one-key table
            ``{"uniform": [lo, hi]}``, ``{"loguniform": [lo, hi]}``, ``{"int": [lo, hi]}``.

    Example:
        >>> parse_axis("train.lr", {"loguniform": [1e-4, 1e-2]})
        LogUniform(low=0.0001, high=0.01)
    """
    if isinstance(value, (Uniform, IntUniform)):
        return value
    if isinstance(value, Mapping):
        if len(value) != 1 or next(iter(value)) not in _DISTRIBUTIONS:
            raise ConfigError(
                f"axis {name!r}: a distribution is a table with one key out of "
                f"{', '.join(_DISTRIBUTIONS)}, e.g. {{loguniform = [1e-4, 1e-2]}}; got {dict(value)!r}"
            )
        kind, bounds = next(iter(value.items()))
        if not isinstance(bounds, (list, tuple)) or len(bounds) != 2:
            raise ConfigError(f"axis {name!r}: {kind} needs [low, high], got {bounds!r}")
        try:
            return _DISTRIBUTIONS[kind](*bounds)
        except ConfigError as exc:
            raise ConfigError(f"axis {name!r}: {exc}") from None
    if isinstance(value, (list, tuple)):
        if not value:
            raise ConfigError(f"axis {name!r} has no values")
        values = list(value)
        keys = [_value_text(v) for v in values]
        if len(set(keys)) != len(keys):
            dup = next(k for k in keys if keys.count(k) > 1)
            raise ConfigError(f"axis {name!r} lists the value {dup} twice")
        return values
    raise ConfigError(
        f"axis {name!r} must be a list of values or a distribution table, got {value!r}"
    )


def _value_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return repr(value)  # keep 0.0 distinct-looking from the int 0 in keys
    return json.dumps(value, separators=(",", ":"))


def config_key(params: Mapping[str, Any]) -> str:
    """The canonical text key of a configuration: ``axis=value`` pairs in axis order.

    Example:
        >>> config_key({"dropout.hidden": 0.1, "train.lr": 0.001})
        'dropout.hidden=0.1,train.lr=0.001'
    """
    if not params:
        return "default"
    return ",".join(f"{k}={_value_text(v)}" for k, v in params.items())


class SearchSpace:
    """Base class of the samplers: axes, validation points and the ask/tell protocol.

    Args:
        axes: axis name -> list of values or distribution (see :func:`parse_axis`).
    """

    kind = "base"
    adaptive = False

    def __init__(self, axes: Mapping[str, Any]) -> None:
        if not isinstance(axes, Mapping):
            raise ConfigError(f"a search space needs a table of axes, got {type(axes).__name__}")
        self.axes: dict[str, list[Any] | Distribution] = {}
        for name, value in axes.items():
            if not isinstance(name, str) or not name:
                raise ConfigError(f"axis names must be non-empty strings, got {name!r}")
            self.axes[name] = parse_axis(name, value)

    def validation_points(self) -> list[dict[str, Any]]:
        """Configurations that exercise every value (or range end) of every axis.

        The engine builds each of them before training, so a bad value anywhere in the space
        is rejected up front. Grid and random spaces return every configuration they will run.
        """
        if not self.axes:
            return [{}]
        values = {
            name: (axis if isinstance(axis, list) else axis.bounds()) for name, axis in self.axes.items()
        }
        width = max(len(v) for v in values.values())
        return [{name: v[min(i, len(v) - 1)] for name, v in values.items()} for i in range(width)]

    def ask(self) -> list[dict[str, Any]]:
        """The next round of configurations; an empty list when the space is exhausted."""
        raise NotImplementedError

    def tell(self, params: Mapping[str, Any], value: float) -> None:
        """Report the mean validation metric of a configuration (adaptive spaces only)."""

    def spec(self) -> dict[str, Any]:
        """JSON-friendly description (stored with the study; resuming requires an equal one)."""
        axes = {
            n: (a if isinstance(a, list) else a.to_dict()) for n, a in self.axes.items()
        }
        return {"sampler": self.kind, "axes": axes}


class GridSpace(SearchSpace):
    """Every combination of the axes' values (cartesian product; the last axis varies fastest).

    Args:
        axes: axis name -> non-empty list of values. Distributions are refused.

    Example:
        >>> len(GridSpace({"dropout.hidden": [0, 0.5], "train.lr": [1e-3, 1e-2]}).configurations())
        4
    """

    kind = "grid"

    def __init__(self, axes: Mapping[str, Any]) -> None:
        super().__init__(axes)
        for name, axis in self.axes.items():
            if not isinstance(axis, list):
                raise ConfigError(
                    f"axis {name!r} is a distribution; a grid needs a list of values "
                    f"(or use sampler 'random' or 'tpe')"
                )
        self._asked = False

    def configurations(self) -> list[dict[str, Any]]:
        """All configurations, in grid order."""
        names = list(self.axes)
        return [dict(zip(names, combo)) for combo in itertools.product(*self.axes.values())]

    def validation_points(self) -> list[dict[str, Any]]:
        return self.configurations()

    def ask(self) -> list[dict[str, Any]]:
        if self._asked:
            return []
        self._asked = True
        return self.configurations()


class RandomSpace(SearchSpace):
    """``n`` configurations drawn independently from the axes (random search).

    Bergstra & Bengio, "Random Search for Hyper-Parameter Optimization", JMLR 13, 2012.
    List axes are uniform choices. Draws come from ``numpy.random.default_rng(seed)``;
    continuous values are rounded to 4 significant digits, and a configuration drawn twice is
    kept once (so fewer than ``n`` may remain on small discrete spaces).

    Args:
        axes: axis name -> list or distribution.
        n: number of draws, >= 1.
        seed: seed of the draws. Default 0.

    Example:
        >>> space = RandomSpace({"dropout.hidden": Uniform(0.0, 0.6)}, n=5, seed=0)
        >>> len(space.configurations())
        5
    """

    kind = "random"

    def __init__(self, axes: Mapping[str, Any], n: int, seed: int = 0) -> None:
        super().__init__(axes)
        self.n = check_positive_int("trials", n)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
        self.seed = seed
        self._asked = False

    def configurations(self) -> list[dict[str, Any]]:
        """The ``n`` draws (duplicates removed), in draw order."""
        rng = np.random.default_rng(self.seed)
        out: dict[str, dict[str, Any]] = {}
        for _ in range(self.n):
            params = {}
            for name, axis in self.axes.items():
                if isinstance(axis, list):
                    params[name] = axis[int(rng.integers(len(axis)))]
                else:
                    params[name] = axis.sample(rng)
            out.setdefault(config_key(params), params)
        return list(out.values())

    def validation_points(self) -> list[dict[str, Any]]:
        return super().validation_points() + self.configurations()

    def ask(self) -> list[dict[str, Any]]:
        if self._asked:
            return []
        self._asked = True
        return self.configurations()

    def spec(self) -> dict[str, Any]:
        return {**super().spec(), "trials": self.n, "seed": self.seed}


class OptunaSpace(SearchSpace):
    """Optuna's TPE sampler through ask/tell, ``batch`` configurations per round.

    Bergstra, Bardenet, Bengio, Kegl, "Algorithms for Hyper-Parameter Optimization",
    NeurIPS 2011 (the Tree-structured Parzen Estimator); Akiba et al., "Optuna", KDD 2019,
    arXiv:1907.10902. Each round asks ``batch`` trials, the engine trains them (every seed) as
    populations, and tells each trial the mean validation metric over seeds. With the same seed
    and the same told values the sampler asks the same configurations, which is how a resumed
    sweep replays its finished rounds. A configuration Optuna suggests twice is told again
    from the first result without training.

    Args:
        axes: axis name -> list (categorical) or distribution.
        n: total number of trials, >= 1.
        seed: seed of the sampler. Default 0.
        batch: trials per round, >= 1. Default 8.
        maximize: direction of the metric. Default True.

    Example:
        >>> space = OptunaSpace({"train.lr": LogUniform(1e-4, 1e-1)}, n=16)  # doctest: +SKIP
    """

    kind = "tpe"
    adaptive = True

    def __init__(
        self,
        axes: Mapping[str, Any],
        n: int,
        seed: int = 0,
        batch: int = 8,
        maximize: bool = True,
    ) -> None:
        super().__init__(axes)
        self.n = check_positive_int("trials", n)
        self.batch = check_positive_int("batch", batch)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
        self.seed = seed
        self.maximize = bool(maximize)
        self._study: Any = None
        self._pending: dict[str, list[Any]] = {}
        self._asked = 0

    def _optuna(self) -> Any:
        try:
            import optuna
        except ImportError:
            raise ConfigError(
                "sampler 'tpe' needs Optuna, an optional dependency: pip install optuna "
                "(or pip install 'droplab[optuna]')"
            ) from None
        return optuna

    def check_available(self) -> None:
        """Raise a clear error now (before training) when Optuna is not installed."""
        self._optuna()

    def _ensure_study(self) -> Any:
        if self._study is None:
            optuna = self._optuna()
            optuna.logging.set_verbosity(optuna.logging.WARNING)
            sampler = optuna.samplers.TPESampler(seed=self.seed)
            direction = "maximize" if self.maximize else "minimize"
            self._study = optuna.create_study(direction=direction, sampler=sampler)
        return self._study

    def ask(self) -> list[dict[str, Any]]:
        study = self._ensure_study()
        out: list[dict[str, Any]] = []
        keys: set[str] = set()
        while self._asked < self.n and len(out) < self.batch:
            trial = study.ask()
            self._asked += 1
            params = {}
            for name, axis in self.axes.items():
                if isinstance(axis, list):
                    # Optuna's categorical choices must be plain scalars: index the list.
                    params[name] = axis[trial.suggest_categorical(name, list(range(len(axis))))]
                else:
                    params[name] = axis.suggest(trial, name)
            key = config_key(params)
            self._pending.setdefault(key, []).append(trial)
            if key not in keys:
                keys.add(key)
                out.append(params)
        return out

    def tell(self, params: Mapping[str, Any], value: float) -> None:
        study = self._ensure_study()
        optuna = self._optuna()
        for trial in self._pending.pop(config_key(params), []):
            if value is None or not math.isfinite(value):
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            else:
                study.tell(trial, float(value))

    def spec(self) -> dict[str, Any]:
        return {**super().spec(), "trials": self.n, "seed": self.seed, "batch": self.batch}


def make_space(
    axes: Mapping[str, Any],
    sampler: str = "grid",
    *,
    trials: int | None = None,
    seed: int = 0,
    batch: int = 8,
    maximize: bool = True,
) -> SearchSpace:
    """Build the search space a sweep configuration names.

    Args:
        axes: axis name -> list or distribution.
        sampler: ``"grid"`` (default), ``"random"`` or ``"tpe"``.
        trials: number of configurations for ``random`` and ``tpe`` (required there).
        seed: sampler seed. Default 0.
        batch: TPE trials per round. Default 8.
        maximize: direction of the selection metric (TPE). Default True.

    Example:
        >>> make_space({"dropout.hidden": [0, 0.5]}).kind
        'grid'
    """
    check_choice("sampler", sampler, SAMPLERS)
    if sampler == "grid":
        if trials is not None:
            raise ConfigError("trials applies to sampler 'random' or 'tpe'; a grid runs every configuration")
        return GridSpace(axes)
    if trials is None:
        raise ConfigError(f"sampler {sampler!r} needs trials (the number of configurations to draw)")
    if sampler == "random":
        return RandomSpace(axes, trials, seed)
    space = OptunaSpace(axes, trials, seed, batch=batch, maximize=maximize)
    return space


def _is_distribution(axis: Any) -> bool:
    return isinstance(axis, (Uniform, IntUniform))


def axis_values(axis: Sequence[Any] | Distribution) -> list[Any]:
    """The values of a list axis, or the range ends of a distribution."""
    return list(axis) if not _is_distribution(axis) else axis.bounds()
