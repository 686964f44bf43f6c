"""Robustness: accuracy of a trained model under input noise of growing strength.

Dropout is often credited with robustness to corrupted inputs (it trains with noisy hidden
units; Srivastava et al. 2014, JMLR 15, section 1, relate it to denoising autoencoders). Two
axes measure that:

* **input noise at test time** -- :func:`accuracy_under_noise` evaluates a trained model on
  inputs corrupted at several strengths (:func:`corrupt_inputs`). The corruption is drawn once
  per seed and scaled (Gaussian) or thresholded (masking) per level, so levels are nested and
  every model of a sweep sees the same corrupted inputs (common random numbers): differences
  between dropout rates are not blurred by different noise draws.
* **label noise at training time** -- a data option, not an inference step: corrupt a fraction
  of the training labels with ``droplab.data.load_dataset(..., label_noise=f)`` (CLI:
  ``droplab train --label-noise f``; in a sweep, an axis over ``data.label_noise``) and compare
  test accuracy per dropout rate. Validation and test labels stay clean.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from droplab._checks import check_choice, check_nonneg_float, check_positive_int, check_probability
from droplab.errors import ConfigError, DataError
from droplab.inference.mc import predict

__all__ = ["NOISE_KINDS", "corrupt_inputs", "accuracy_under_noise"]

#: Corruptions: additive N(0, level^2) noise, or a fraction ``level`` of input values set to 0.
NOISE_KINDS: tuple[str, ...] = ("gaussian", "mask")


def _draw(x: Tensor, kind: str, generator: torch.Generator | None) -> Tensor:
    if kind == "gaussian":
        return torch.randn(x.shape, generator=generator, dtype=torch.float32).to(x.device)
    return torch.rand(x.shape, generator=generator, dtype=torch.float32).to(x.device)


def _apply(x: Tensor, draw: Tensor, level: float, kind: str) -> Tensor:
    if level == 0:
        return x
    if kind == "gaussian":
        return x + (level * draw).to(x.dtype)
    return x * (draw >= level).to(x.dtype)


def _check_level(level: Any, kind: str) -> float:
    if kind == "mask":
        return check_probability("level", level, allow_one=True)
    return check_nonneg_float("level", level)


def corrupt_inputs(
    x: Tensor, level: float, *, kind: str = "gaussian", generator: torch.Generator | None = None
) -> Tensor:
    """Corrupt inputs with noise of a given strength.

    * ``"gaussian"``: ``x + level * eps`` with ``eps ~ N(0, 1)`` per value (``level`` is the
      standard deviation, in the units of ``x``; standardized data: in feature standard
      deviations).
    * ``"mask"``: each value set to 0 with probability ``level`` in [0, 1] (0 is the mean of
      standardized data), drawn as ``u < level`` so masks nest across levels.

    Args:
        x: inputs ``(N, ...)``, floating point.
        level: strength, >= 0 (``"mask"``: in [0, 1]).
        kind: one of :data:`NOISE_KINDS` (default ``"gaussian"``).
        generator: optional ``torch.Generator``; ``None`` uses torch's global one.

    Returns:
        A new tensor like ``x`` (``x`` itself at level 0).

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> noisy = corrupt_inputs(torch.zeros(1000, 4), 0.5, generator=g)
        >>> 0.45 < float(noisy.std()) < 0.55
        True
    """
    check_choice("kind", kind, NOISE_KINDS)
    level = _check_level(level, kind)
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise DataError(f"x must be a floating-point tensor, got {getattr(x, 'dtype', type(x).__name__)}")
    if level == 0:
        return x
    return _apply(x, _draw(x, kind, generator), level, kind)


def accuracy_under_noise(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    levels: Sequence[float] = (0.0, 0.1, 0.2, 0.5, 1.0),
    *,
    seed: int = 0,
    kind: str = "gaussian",
    batch_size: int = 1024,
) -> list[dict[str, Any]]:
    """Evaluate a trained model on inputs corrupted at growing strengths.

    One corruption draw (seeded by ``seed``) is shared by all levels, so the levels are nested
    and two models evaluated with the same seed see identical corrupted inputs. Predictions are
    the deterministic eval-mode pass (:func:`~droplab.inference.predict`).

    Args:
        model: a trained network (logits ``(N, C)`` for classification).
        x: clean inputs ``(N, ...)`` (usually the test split).
        y: integer labels ``(N,)`` (classification) or float targets (regression).
        levels: strengths to evaluate (default ``(0, 0.1, 0.2, 0.5, 1.0)``; see
            :func:`corrupt_inputs`).
        seed: seed of the corruption draw (default 0).
        kind: one of :data:`NOISE_KINDS` (default ``"gaussian"``).
        batch_size: examples per forward pass (default 1024).

    Returns:
        One dict per level, in the given order: ``level``, ``kind``, ``seed`` and
        ``acc`` + ``nll`` (classification, integer ``y``) or ``rmse`` (regression, float ``y``).

    Example::

        rows = accuracy_under_noise(model, splits.x_test, splits.y_test, levels=(0, 0.5, 1))
        [(r["level"], round(r["acc"], 3)) for r in rows]
    """
    check_choice("kind", kind, NOISE_KINDS)
    if isinstance(levels, (int, float)) or not levels:
        raise ConfigError(f"levels must be a non-empty list of numbers, got {levels!r}")
    levels = [_check_level(v, kind) for v in levels]
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    batch_size = check_positive_int("batch_size", batch_size)
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.dim() == 0:
        raise DataError(f"x must be a floating-point tensor of shape (N, ...), got {getattr(x, 'shape', type(x).__name__)}")
    if not isinstance(y, Tensor) or y.dim() == 0 or y.shape[0] != x.shape[0]:
        got = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
        raise DataError(f"y must be a tensor with one entry per input ({x.shape[0]}), got {got}")
    classify = not y.is_floating_point()
    draw = _draw(x, kind, torch.Generator().manual_seed(seed))
    rows = []
    for level in levels:
        out = predict(model, _apply(x, draw, level, kind), batch_size=batch_size).double()
        row: dict[str, Any] = {"level": level, "kind": kind, "seed": seed}
        if classify:
            if out.dim() != 2:
                raise DataError(f"classification expects logits of shape (N, C), got {tuple(out.shape)}")
            labels = y.cpu().long()
            logp = torch.log_softmax(out, dim=1)
            row["acc"] = float((out.argmax(dim=1) == labels).double().mean())
            row["nll"] = float(-logp.gather(1, labels.view(-1, 1)).mean())
        else:
            target = y.cpu().double().reshape(out.shape) if y.numel() == out.numel() else None
            if target is None:
                raise DataError(f"y of shape {tuple(y.shape)} does not match the outputs {tuple(out.shape)}")
            row["rmse"] = math.sqrt(float(((out - target) ** 2).mean()))
        rows.append(row)
    return rows
