"""The ``[data]`` section of a run or sweep file: :class:`DataConfig`, the options of
:func:`droplab.data.load_dataset` as one validated, TOML-friendly value."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from droplab._checks import check_bool, check_keys, check_nonneg_int
from droplab.data.datasets import load_dataset
from droplab.data.splits import Splits
from droplab.errors import ConfigError

__all__ = ["DataConfig"]


def _optional_str(name: str, value: Any) -> str | None:
    if value is not None and (not isinstance(value, str) or not value):
        raise ConfigError(f"{name} must be a non-empty string or absent, got {value!r}")
    return value


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Which dataset to load and how: the ``[data]`` section, passed to
    :func:`droplab.data.load_dataset` (which validates the values and documents them).

    Args:
        name: dataset name (``mnist1d``, ``fashion_mnist``, ``digits``, ``csv``, ``npz``, ...).
            Default ``"mnist1d"``.
        data_dir, path, target, x_key, y_key, task, cache_dir: see ``load_dataset``.
        val_fraction: fraction of the training data held out for validation. Default 0.1.
        seed: seed of the split, subsample and corruptions; ``None`` (default) uses the run's
            ``[train] seed`` so that one seed drives a whole run.
        subsample, label_noise, input_noise, standardize: see ``load_dataset``.

    Example:
        >>> DataConfig(name="mnist1d", subsample=1000).name
        'mnist1d'
    """

    name: str = "mnist1d"
    data_dir: str | None = None
    path: str | None = None
    target: str | None = None
    x_key: str = "x"
    y_key: str = "y"
    task: str | None = None
    cache_dir: str | None = None
    val_fraction: float = 0.1
    seed: int | None = None
    subsample: int | None = None
    label_noise: float = 0.0
    input_noise: float = 0.0
    standardize: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"data name must be a non-empty string, got {self.name!r}")
        for name in ("data_dir", "path", "target", "task", "cache_dir"):
            _optional_str(name, getattr(self, name))
        if self.seed is not None:
            check_nonneg_int("data seed", self.seed)
        check_bool("standardize", self.standardize)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], where: str = "[data]") -> DataConfig:
        """Build from a mapping; unknown keys raise with a did-you-mean hint."""
        if not isinstance(values, Mapping):
            raise ConfigError(f"{where} must be a table of options, got {type(values).__name__}")
        check_keys(where, values, cls.__dataclass_fields__)
        return cls(**dict(values))

    def to_dict(self) -> dict[str, Any]:
        """Plain dictionary without ``None`` values (TOML has no null)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    def load(self, default_seed: int = 0) -> Splits:
        """Load the splits (``seed`` falls back to ``default_seed``)."""
        options = dataclasses.asdict(self)
        name = options.pop("name")
        if options["seed"] is None:
            options["seed"] = default_seed
        return load_dataset(name, **options)
