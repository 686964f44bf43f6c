"""Evaluation metrics as plain functions of a model's outputs and the targets: AUROC, F1, MAE.

Each takes raw model outputs (logits, or predictions for regression) and targets as tensors,
so the trainer, the population engine and a user's own loop compute them the same way.
Results match scikit-learn's ``roc_auc_score``, ``f1_score`` and ``mean_absolute_error``
(the tests compare). :func:`task_loss` is the training loss of each task of
:data:`droplab.data.tasks.ALL_TASKS`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from droplab._checks import check_choice
from droplab.data.tasks import ALL_TASKS
from droplab.errors import DataError

__all__ = ["auroc", "f1", "mae", "task_loss"]


def _check_rows(name: str, out: Tensor, y: Tensor) -> None:
    if len(out) != len(y):
        raise DataError(f"{name}: {len(out)} outputs but {len(y)} targets")
    if len(y) == 0:
        raise DataError(f"{name}: no examples")


def _binary_scores(name: str, out: Tensor) -> Tensor | None:
    """The one score per example of a 1-logit output ``(N,)`` / ``(N, 1)``, else None."""
    if out.dim() == 1:
        return out
    if out.dim() == 2 and out.shape[1] == 1:
        return out[:, 0]
    if out.dim() == 2:
        return None
    raise DataError(f"{name} expects outputs (N,), (N, 1) or (N, K), got shape {tuple(out.shape)}")


def _rank_auc(scores: Tensor, positive: Tensor) -> float:
    """Mann-Whitney U / (n_pos * n_neg) with mid-ranks for ties (= the trapezoidal ROC area)."""
    s = scores.detach().double().cpu()
    pos = positive.cpu()
    n_pos = int(pos.sum())
    n_neg = len(pos) - n_pos
    order = torch.argsort(s, stable=True)
    ranks = torch.empty_like(s)
    sorted_s = s[order]
    # mid-ranks: every run of equal scores gets the mean of its 1-based positions
    _, inverse, counts = torch.unique_consecutive(sorted_s, return_inverse=True, return_counts=True)
    ends = torch.cumsum(counts, 0).double()
    mid = ends - (counts.double() - 1) / 2
    ranks[order] = mid[inverse]
    u = ranks[pos].sum().item() - n_pos * (n_pos + 1) / 2
    return u / (n_pos * n_neg)


def auroc(outputs: Tensor, targets: Tensor) -> float:
    """Area under the ROC curve: binary, or one-vs-rest macro average over classes.

    Hanley & McNeil, "The meaning and use of the area under a receiver operating
    characteristic (ROC) curve", Radiology 143(1), 1982: the AUROC is the probability that a
    random positive scores above a random negative (ties count one half). Computed from ranks,
    so any monotone transform of the scores (logit or probability) gives the same value.

    Args:
        outputs: ``(N,)`` or ``(N, 1)`` scores (logits) for binary targets; ``(N, K)`` logits
            for K classes, turned into probabilities with a softmax, then scored one class
            against the rest and averaged (scikit-learn's ``multi_class="ovr"``,
            ``average="macro"``).
        targets: ``(N,)`` 0/1 targets (binary) or integer labels ``0..K-1``.

    Returns:
        The AUROC in [0, 1], a Python float.

    Raises:
        DataError: rows differ, a class has no positive or no negative example, bad shapes.

    Example:
        >>> auroc(torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([0, 0, 1, 1]))
        0.75
    """
    _check_rows("auroc", outputs, targets)
    scores = _binary_scores("auroc", outputs)
    if scores is not None:
        positive = targets.reshape(-1) == 1
        if bool(positive.all()) or not bool(positive.any()):
            raise DataError("auroc needs both positive and negative targets")
        return _rank_auc(scores, positive)
    probs = F.softmax(outputs.detach().double(), dim=1)
    y = targets.reshape(-1).long()
    areas = []
    for k in range(outputs.shape[1]):
        positive = y == k
        if bool(positive.all()) or not bool(positive.any()):
            raise DataError(f"auroc: class {k} has no positive or no negative example; "
                            f"one-vs-rest AUROC needs both for every class")
        areas.append(_rank_auc(probs[:, k], positive))
    return sum(areas) / len(areas)


def f1(outputs: Tensor, targets: Tensor) -> float:
    """F1 score: of the positive class for one logit, macro over classes for K logits.

    Van Rijsbergen, "Information Retrieval", 2nd ed., 1979: the harmonic mean of precision and
    recall, ``2 TP / (2 TP + FP + FN)``; 0 for a class with no true and no predicted example
    (scikit-learn's ``zero_division=0``).

    Args:
        outputs: ``(N,)`` / ``(N, 1)`` logits (predicted positive where the logit is > 0) or
            ``(N, K)`` logits (the prediction is the argmax).
        targets: ``(N,)`` 0/1 targets or integer labels ``0..K-1``.

    Returns:
        Binary: F1 of class 1. Multi-class: the unweighted mean of the per-class F1 over the
        classes present in the targets or the predictions (scikit-learn's ``average="macro"``).

    Example:
        >>> f1(torch.tensor([2.0, -1.0, 0.5, -3.0]), torch.tensor([1, 1, 0, 0]))
        0.5
    """
    _check_rows("f1", outputs, targets)
    scores = _binary_scores("f1", outputs)
    y = targets.reshape(-1).long().cpu()
    if scores is not None:
        pred = (scores.detach().cpu() > 0).long()
        labels = [1]
    else:
        pred = outputs.detach().argmax(1).cpu()
        labels = torch.unique(torch.cat([y, pred])).tolist()
    values = []
    for k in labels:
        tp = int(((pred == k) & (y == k)).sum())
        fp = int(((pred == k) & (y != k)).sum())
        fn = int(((pred != k) & (y == k)).sum())
        values.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return sum(values) / len(values)


def mae(outputs: Tensor, targets: Tensor) -> float:
    """Mean absolute error over every example and target.

    Args:
        outputs: predictions ``(N,)``, ``(N, 1)`` or ``(N, k)``.
        targets: ``(N,)`` or ``(N, k)``; ``(N,)`` against ``(N, 1)`` is matched.

    Example:
        >>> mae(torch.tensor([1.0, 2.0, 4.0]), torch.tensor([1.5, 2.0, 3.0]))
        0.5
    """
    _check_rows("mae", outputs, targets)
    out = outputs.detach().double().reshape(len(outputs), -1)
    y = targets.detach().double().reshape(len(targets), -1)
    if out.shape != y.shape:
        raise DataError(f"mae: outputs {tuple(outputs.shape)} do not match targets {tuple(targets.shape)}")
    return (out - y).abs().mean().item()


def _bce(out: Tensor, y: Tensor) -> Tensor:
    return F.binary_cross_entropy_with_logits(out.reshape(y.shape), y.to(out.dtype))


def _mse(out: Tensor, y: Tensor) -> Tensor:
    return F.mse_loss(out.reshape(y.shape) if out.numel() == y.numel() else out, y)


def task_loss(task: str) -> Callable[[Tensor, Tensor], Tensor]:
    """The training loss of ``task``: cross-entropy, BCE with logits on one logit, or MSE.

    ``"binary"``: ``binary_cross_entropy_with_logits`` of the ``(N,)`` or ``(N, 1)`` logit
    against 0/1 float targets (the numerically stable form of sigmoid + BCE).

    Example:
        >>> loss = task_loss("binary")(torch.zeros(4, 1), torch.tensor([0.0, 1.0, 1.0, 0.0]))
    """
    check_choice("task", task, ALL_TASKS)
    return {"classification": F.cross_entropy, "binary": _bce, "regression": _mse}[task]
