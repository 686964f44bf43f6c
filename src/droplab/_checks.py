"""Argument validation shared by every droplab module (one place, one message format).

Messages say what was expected, then what came: ``p must be in [0, 1), got 1.2``.
"""

from __future__ import annotations

import difflib
import math
import numbers
import os
from collections.abc import Iterable, Sequence
from typing import Any

from droplab.errors import ConfigError

__all__ = [
    "check_probability",
    "check_positive_int",
    "check_nonneg_int",
    "check_positive_float",
    "check_nonneg_float",
    "check_bool",
    "check_writable_file",
    "check_choice",
    "check_rank",
    "check_shared_axes",
    "check_keys",
    "did_you_mean",
]


def _is_real(value: Any) -> bool:
    # numbers.Real admits numpy's float and integer scalars (np.float32(0.25), as torch does);
    # bools (Python's and numpy's) are refused: True is not a rate.
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_probability(name: str, value: Any, *, allow_one: bool = False) -> float:
    """Return ``value`` as float if it lies in [0, 1) ([0, 1] with ``allow_one``)."""
    interval = "[0, 1]" if allow_one else "[0, 1)"
    if not _is_real(value) or math.isnan(value):
        raise ConfigError(f"{name} must be a number in {interval}, got {value!r}")
    upper_ok = value <= 1 if allow_one else value < 1
    if not (0 <= value and upper_ok):
        raise ConfigError(f"{name} must be in {interval}, got {value!r}")
    return float(value)


def _is_int(value: Any) -> bool:
    # numbers.Integral admits numpy's integer scalars (shapes and counts often come from numpy).
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_positive_int(name: str, value: Any) -> int:
    if not _is_int(value) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_nonneg_int(name: str, value: Any) -> int:
    if not _is_int(value) or value < 0:
        raise ConfigError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def check_positive_float(name: str, value: Any) -> float:
    if not _is_real(value) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def check_nonneg_float(name: str, value: Any) -> float:
    if not _is_real(value) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def check_bool(name: str, value: Any) -> bool:
    """Return ``value`` if it is a real ``bool`` (not 0/1 or a string), else raise."""
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    return value


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest choice, or ``""``."""
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> Any:
    """Raise unless ``value`` is one of ``choices``; the message lists them all."""
    if value not in choices:
        listed = ", ".join(repr(c) for c in choices)
        hint = did_you_mean(value, choices) if isinstance(value, str) else ""
        raise ConfigError(f"{name} must be one of {listed}; got {value!r}{hint}")
    return value


def check_keys(where: str, keys: Iterable[str], allowed: Iterable[str]) -> None:
    """Raise on the first key not in ``allowed``, with a did-you-mean hint."""
    allowed = list(allowed)
    for key in keys:
        if key not in allowed:
            raise ConfigError(
                f"unknown key {key!r} in {where}{did_you_mean(key, allowed)}; "
                f"valid keys: {', '.join(sorted(allowed))}"
            )


def check_rank(name: str, x: Any, ranks: Sequence[int], layout: str = "") -> None:
    """Raise unless tensor ``x`` has one of ``ranks`` dimensions; say expected and actual."""
    if x.dim() not in ranks:
        want = " or ".join(f"{r}D" for r in ranks)
        lay = f" {layout}" if layout else ""
        raise ConfigError(
            f"{name} expects a {want} input{lay}, got {x.dim()}D input of shape {tuple(x.shape)}"
        )


def check_shared_axes(shared_axes: Any) -> tuple[int, ...]:
    """Return ``shared_axes`` (an int or a sequence of distinct ints) as a tuple.

    Types only: whether each axis exists is checked against the input when it comes.
    """
    is_int = isinstance(shared_axes, int) and not isinstance(shared_axes, bool)
    axes = (shared_axes,) if is_int else shared_axes
    if isinstance(axes, (str, bytes)) or not isinstance(axes, Sequence):
        raise ConfigError(f"shared_axes must be an int or a sequence of ints, got {shared_axes!r}")
    for axis in axes:
        if not isinstance(axis, int) or isinstance(axis, bool):
            raise ConfigError(
                f"shared_axes must contain only ints, got {axis!r} in {tuple(axes)!r}"
            )
    if len(set(axes)) != len(axes):
        raise ConfigError(f"shared_axes must not repeat an axis, got {tuple(axes)!r}")
    return tuple(axes)


def check_writable_file(what: str, path: Any) -> str:
    """Raise unless ``path`` can be written as a file: not a folder, under a writable folder.

    Missing folders on the way are fine (the writer creates them) as long as the nearest
    existing one is a writable folder. Creates nothing: called before a long job, so that the
    job is not lost to a path it cannot save to. Returns ``path`` as a string.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ConfigError(f"{what} {path} is a folder; expected a file path")
    if os.path.exists(path):
        if not os.access(path, os.W_OK):
            raise ConfigError(f"cannot write {what} {path}: permission denied")
        return path
    folder = os.path.dirname(os.path.abspath(path))
    while not os.path.lexists(folder):
        folder = os.path.dirname(folder)
    if not os.path.isdir(folder):
        raise ConfigError(f"cannot write {what} {path}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write {what} {path}: folder {folder} is not writable")
    return path
