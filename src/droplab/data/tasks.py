"""What kind of problem a target is: multi-class classification, binary (one logit) or regression.

:func:`infer_task` says which, and why, from the targets and (when known) the width of the
model's output; the caller prints the reason, so a guess is never silent, and ``task=`` overrides
it (checked against the targets: an override that cannot train fails here, not deep in a loss).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch

from droplab._checks import check_choice, check_positive_int
from droplab.errors import DataError

__all__ = ["ALL_TASKS", "InferredTask", "infer_task", "score_name", "MAX_AUTO_CLASSES"]

#: Every task :func:`infer_task` returns or accepts. ``"binary"``: one logit per example,
#: 0/1 float targets, BCE-with-logits; ``"classification"``: K logits, integer labels
#: 0..K-1, cross-entropy; ``"regression"``: float targets, MSE.
ALL_TASKS: tuple[str, ...] = ("classification", "binary", "regression")

#: Integer targets with more distinct values than this are taken as counts (regression).
MAX_AUTO_CLASSES = 20


class InferredTask(NamedTuple):
    """A task and the reason for it, e.g. ``("binary", "targets are 0/1 floats ...")``."""

    task: str
    reason: str


def score_name(task: str) -> str:
    """The task's score next to the loss: ``"acc"`` for classification (one logit or several),
    else ``"rmse"``. The one rule: the Trainer, populations and sweep selection ask it.

    Example:
        >>> "val_" + score_name("binary")
        'val_acc'
    """
    return "acc" if task in ("classification", "binary") else "rmse"


def _as_numpy(y: Any) -> np.ndarray:
    if isinstance(y, torch.Tensor):
        return y.detach().cpu().numpy()
    return np.asarray(y)


def _check_labels(task: str, y: np.ndarray, values: np.ndarray, n_outputs: int | None) -> None:
    integral = y.dtype == np.bool_ or np.issubdtype(y.dtype, np.integer) or bool(
        np.all(np.mod(values, 1) == 0)
    )
    if task == "binary":
        if not set(values.tolist()) <= {0, 1}:
            raise DataError(
                f"task 'binary' needs 0/1 targets, got values {values[:10].tolist()}"
                + (" ..." if len(values) > 10 else "")
            )
        if n_outputs not in (None, 1):
            raise DataError(f"task 'binary' needs a model with one output, got {n_outputs}")
    elif task == "classification":
        if y.ndim != 1:
            raise DataError(f"class labels must be 1-D, got shape {tuple(y.shape)}")
        if not integral or values.min() < 0:
            raise DataError(
                f"task 'classification' needs integer labels 0..K-1, got values "
                f"{values[:10].tolist()}" + (" ..." if len(values) > 10 else "")
            )
        if n_outputs is not None and values.max() >= n_outputs:
            raise DataError(
                f"label {int(values.max())} needs at least {int(values.max()) + 1} outputs; "
                f"the model has {n_outputs}"
            )


def infer_task(y: Any, n_outputs: int | None = None, *, task: str | None = None) -> InferredTask:
    """Classification, binary or regression for targets ``y``, and why.

    Rules, in order (``n_outputs``: the model's output width, when known):

    1. ``task`` given: it is checked against the targets (binary: 0/1 values and one output;
       classification: integer labels >= 0 below ``n_outputs``) and returned.
    2. Targets of shape ``(N, k)``, k > 1: regression (k targets).
    3. Only the values 0 and 1 and ``n_outputs == 1``: binary. Floats 0/1 (or booleans) with
       ``n_outputs`` unknown: binary too (0/1 floats are how a BCE target is written); integers
       0/1 with ``n_outputs`` unknown or 2: two-class classification (cross-entropy).
    4. ``n_outputs == 1`` otherwise: regression (one output cannot score several classes).
    5. Integer values (any dtype) that are exactly ``0..K-1`` with ``2 <= K <=``
       :data:`MAX_AUTO_CLASSES`, or that fit ``n_outputs > 1``: classification. Integer dtype
       only; floats with more than two distinct values stay regression unless ``n_outputs``
       says otherwise.
    6. Otherwise regression: non-integer values, negative integers, integers with gaps or with
       more than ``MAX_AUTO_CLASSES`` distinct values (counts, years, prices in cents).

    Args:
        y: targets, a tensor or array-like of shape ``(N,)`` or ``(N, k)``.
        n_outputs: the model's output width, if known. Default ``None``.
        task: an override, one of :data:`ALL_TASKS`. Default ``None``: infer.

    Returns:
        :class:`InferredTask` ``(task, reason)``.

    Raises:
        ConfigError: ``task`` is not one of :data:`ALL_TASKS`; ``n_outputs`` is not positive.
        DataError: the targets are empty, not numeric, hold NaN/inf, or do not fit ``task``.

    Example:
        >>> infer_task(torch.tensor([0.0, 1.0, 1.0]), n_outputs=1).task
        'binary'
        >>> infer_task(torch.arange(100) % 57).task
        'regression'
    """
    if task is not None:
        check_choice("task", task, ALL_TASKS)
    if n_outputs is not None:
        n_outputs = check_positive_int("n_outputs", n_outputs)
    a = _as_numpy(y)
    if a.size == 0:
        raise DataError("targets are empty")
    if not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_):
        raise DataError(f"targets must be numeric, got dtype {a.dtype}")
    if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all():
        n_nan = int(np.isnan(a).sum())
        raise DataError(
            f"targets contain {n_nan} NaN and {int((~np.isfinite(a)).sum()) - n_nan} infinite values"
        )
    values = np.unique(a.astype(np.float64))
    if task is not None:
        _check_labels(task, a, values, n_outputs)
        return InferredTask(task, f"task={task!r} given")
    is_int = a.dtype == np.bool_ or np.issubdtype(a.dtype, np.integer)
    kind = "booleans" if a.dtype == np.bool_ else ("integers" if is_int else "floats")
    if a.ndim == 2 and a.shape[1] > 1:
        return InferredTask("regression", f"targets have {a.shape[1]} columns: {a.shape[1]} regression targets")
    zero_one = set(values.tolist()) <= {0.0, 1.0} and len(values) == 2
    if zero_one and n_outputs == 1:
        return InferredTask("binary", f"targets are 0/1 {kind} and the model has one output: "
                                      "binary classification, BCE with logits")
    if zero_one and n_outputs is None and not (is_int and a.dtype != np.bool_):
        return InferredTask("binary", f"targets are 0/1 {kind}: binary classification with one "
                                      "logit, BCE with logits")
    if n_outputs == 1:
        return InferredTask("regression", f"the model has one output and the targets take "
                                          f"{len(values)} values: regression")
    integral = bool(np.all(np.mod(values, 1) == 0))
    if n_outputs is not None and n_outputs > 1 and integral and values.min() >= 0 and values.max() < n_outputs:
        return InferredTask("classification", f"{kind} in 0..{n_outputs - 1} and the model has "
                                              f"{n_outputs} outputs: {n_outputs}-class classification")
    k = len(values)
    if is_int and 2 <= k <= MAX_AUTO_CLASSES and np.array_equal(values, np.arange(k)):
        return InferredTask("classification", f"integer labels 0..{k - 1}: {k}-class classification")
    if not integral:
        why = "non-integer float targets"
    elif values.min() < 0:
        why = f"{kind} with negative values"
    elif k > MAX_AUTO_CLASSES:
        why = f"{kind} with {k} distinct values (more than {MAX_AUTO_CLASSES}: counts, not classes)"
    elif not is_int:
        why = f"float targets with {k} distinct values"
    elif np.array_equal(values, np.arange(1, k + 1)):
        why = f"integers 1..{k}, not class labels 0..K-1 (task='classification' reads them as {k} classes)"
    else:
        why = f"{kind} with gaps (values {values[:8].astype(np.int64).tolist()}, not 0..K-1)"
    return InferredTask("regression", f"{why}: regression")
