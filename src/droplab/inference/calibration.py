"""Calibration: expected calibration error, NLL, Brier score, and temperature scaling.

A classifier is calibrated when, among the examples it predicts with confidence c, a fraction c
is right. Guo, Pleiss, Sun, Weinberger, "On Calibration of Modern Neural Networks", ICML 2017,
arXiv:1706.04599, measure this with the expected calibration error (Naeini, Cooper, Hauskrecht,
AAAI 2015) and fix most of it with *temperature scaling*: divide the logits by one scalar T > 0
fitted by minimizing the NLL on validation data. Accuracy is unchanged (argmax is invariant).

Definitions used here (all on top-label / full probability vectors ``probs`` of shape (N, C)):

* ``ece``: confidences ``max_c p_c`` are put in ``n_bins`` equal-width bins ``(k/B, (k+1)/B]``
  (the first bin also holds 0); ``ECE = sum_b (n_b / N) |acc_b - conf_b|``.
* ``nll``: ``-(1/N) sum_i log p_i[y_i]`` in nats (probabilities clipped at the smallest positive
  float64, so a zero probability gives about 708, not inf).
* ``brier``: ``(1/N) sum_i sum_c (p_ic - 1[y_i = c])^2`` (Brier 1950, multi-class form; in
  [0, 2]; some authors divide by C).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from torch import Tensor, nn

from droplab._checks import check_positive_int
from droplab.errors import DataError
from droplab.inference.mc import predict

__all__ = [
    "reliability_bins",
    "ece",
    "nll",
    "brier",
    "calibration_metrics",
    "fit_temperature",
    "calibration_report",
    "CalibrationReport",
]

# Rows of probs must sum to 1 within this (float32 softmax rounding is ~1e-6 per row).
_SUM_TOL = 1e-3
# Temperature search range: outside it the NLL is flat to float64 precision for usual logits.
_T_MIN, _T_MAX = 1e-2, 1e2


def _check(probs: Any, labels: Any) -> tuple[Tensor, Tensor]:
    if not isinstance(probs, Tensor) or probs.dim() != 2 or not probs.is_floating_point():
        got = f"shape {tuple(probs.shape)}, dtype {probs.dtype}" if isinstance(probs, Tensor) else type(probs).__name__
        raise DataError(f"probs must be a floating-point tensor of shape (N, C), got {got}")
    if not isinstance(labels, Tensor) or labels.dim() != 1 or labels.is_floating_point():
        got = f"shape {tuple(labels.shape)}, dtype {labels.dtype}" if isinstance(labels, Tensor) else type(labels).__name__
        raise DataError(f"labels must be an integer tensor of shape (N,), got {got}")
    if labels.shape[0] != probs.shape[0]:
        raise DataError(
            f"probs and labels must have the same length, got {probs.shape[0]} and {labels.shape[0]}"
        )
    if probs.shape[0] == 0:
        raise DataError("probs must hold at least one example, got 0")
    p = probs.detach().double().cpu()
    y = labels.detach().long().cpu()
    if int(y.min()) < 0 or int(y.max()) >= p.shape[1]:
        raise DataError(
            f"labels must be in [0, {p.shape[1]}), got labels in [{int(y.min())}, {int(y.max())}]"
        )
    sums = p.sum(dim=1)
    if not torch.isfinite(p).all() or float(p.min()) < 0 or float((sums - 1).abs().max()) > _SUM_TOL:
        raise DataError(
            f"probs must be probabilities (non-negative rows summing to 1), got rows summing "
            f"to [{float(sums.min()):.4g}, {float(sums.max()):.4g}]; pass softmax(logits)"
        )
    return p, y


def reliability_bins(probs: Tensor, labels: Tensor, n_bins: int = 15) -> list[dict[str, float]]:
    """Per-bin counts, mean confidence and accuracy of the top-label predictions.

    The data of a reliability diagram (Guo et al. 2017, arXiv:1706.04599, Fig. 1): bin ``k``
    holds the examples whose confidence ``max_c p_c`` lies in ``(k/B, (k+1)/B]`` (bin 0 also
    holds 0).

    Args:
        probs: class probabilities ``(N, C)``.
        labels: integer labels ``(N,)``.
        n_bins: number of equal-width bins ``B`` (default 15, as Guo et al.).

    Returns:
        One dict per bin: ``lo``, ``hi``, ``count``, ``confidence`` and ``accuracy`` (both
        ``nan`` for an empty bin).

    Example:
        >>> bins = reliability_bins(torch.tensor([[0.9, 0.1], [0.3, 0.7]]), torch.tensor([0, 0]), 2)
        >>> [(b["count"], b["accuracy"]) for b in bins]
        [(0, nan), (2, 0.5)]
    """
    p, y = _check(probs, labels)
    n_bins = check_positive_int("n_bins", n_bins)
    conf, pred = p.max(dim=1)
    correct = (pred == y).double()
    index = (torch.ceil(conf * n_bins).long() - 1).clamp(0, n_bins - 1)
    counts = torch.bincount(index, minlength=n_bins)
    conf_sum = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, index, conf)
    acc_sum = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, index, correct)
    out = []
    for k in range(n_bins):
        c = int(counts[k])
        out.append(
            {
                "lo": k / n_bins,
                "hi": (k + 1) / n_bins,
                "count": c,
                "confidence": float(conf_sum[k]) / c if c else math.nan,
                "accuracy": float(acc_sum[k]) / c if c else math.nan,
            }
        )
    return out


def ece(probs: Tensor, labels: Tensor, n_bins: int = 15) -> float:
    """Expected calibration error of the top-label predictions, equal-width bins.

    ``ECE = sum_b (n_b / N) |acc_b - conf_b|`` (Naeini, Cooper, Hauskrecht, AAAI 2015; Guo,
    Pleiss, Sun, Weinberger, ICML 2017, arXiv:1706.04599, eq. 3).

    Args:
        probs: class probabilities ``(N, C)``.
        labels: integer labels ``(N,)``.
        n_bins: number of equal-width bins (default 15).

    Example:
        >>> round(ece(torch.tensor([[0.8, 0.2], [0.8, 0.2]]), torch.tensor([0, 1])), 6)
        0.3
    """
    bins = reliability_bins(probs, labels, n_bins)
    n = sum(b["count"] for b in bins)
    return math.fsum(b["count"] / n * abs(b["accuracy"] - b["confidence"]) for b in bins if b["count"])


def nll(probs: Tensor, labels: Tensor) -> float:
    """Mean negative log-likelihood ``-(1/N) sum_i log p_i[y_i]`` in nats.

    Probabilities are clipped at the smallest positive float64 (a zero probability costs about
    708 nats instead of inf).

    Example:
        >>> round(nll(torch.tensor([[0.5, 0.5], [0.25, 0.75]]), torch.tensor([0, 1])), 4)
        0.4904
    """
    p, y = _check(probs, labels)
    true = p.gather(1, y.view(-1, 1)).squeeze(1).clamp_min(torch.finfo(torch.float64).tiny)
    return float(-true.log().mean())


def brier(probs: Tensor, labels: Tensor) -> float:
    """Multi-class Brier score ``(1/N) sum_i sum_c (p_ic - 1[y_i = c])^2`` (in [0, 2]).

    Brier, "Verification of forecasts expressed in terms of probability", Monthly Weather
    Review 78, 1950.

    Example:
        >>> brier(torch.tensor([[1.0, 0.0], [0.5, 0.5]]), torch.tensor([0, 0]))
        0.25
    """
    p, y = _check(probs, labels)
    onehot = torch.nn.functional.one_hot(y, p.shape[1]).double()
    return float(((p - onehot) ** 2).sum(dim=1).mean())


def calibration_metrics(probs: Tensor, labels: Tensor, n_bins: int = 15) -> dict[str, float]:
    """``{"acc", "ece", "nll", "brier"}`` of class probabilities (one configuration's row).

    Example:
        >>> calibration_metrics(torch.tensor([[0.9, 0.1]]), torch.tensor([0]))["acc"]
        1.0
    """
    p, y = _check(probs, labels)
    return {
        "acc": float((p.argmax(dim=1) == y).double().mean()),
        "ece": ece(p, y, n_bins),
        "nll": nll(p, y),
        "brier": brier(p, y),
    }


def fit_temperature(logits: Tensor, labels: Tensor, *, max_iter: int = 100) -> float:
    """Fit the temperature T > 0 minimizing the NLL of ``softmax(logits / T)``.

    Temperature scaling (Guo, Pleiss, Sun, Weinberger, ICML 2017, arXiv:1706.04599, section
    4.2): L-BFGS with a strong-Wolfe line search on ``log T`` (so T stays positive), in float64,
    starting from T = 1. Fit it on validation logits, never on the test set. The result is
    clipped to [0.01, 100].

    Args:
        logits: pre-softmax outputs ``(N, C)``.
        labels: integer labels ``(N,)``.
        max_iter: L-BFGS iterations (default 100).

    Returns:
        The temperature as a float (> 1 softens over-confident predictions).

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> z = 3 * torch.randn(2000, 5, generator=g)
        >>> y = torch.multinomial(torch.softmax(z / 2.0, 1), 1, generator=g).squeeze(1)
        >>> 1.8 < fit_temperature(z, y) < 2.2
        True
    """
    if not isinstance(logits, Tensor) or logits.dim() != 2 or not logits.is_floating_point():
        got = f"shape {tuple(logits.shape)}" if isinstance(logits, Tensor) else type(logits).__name__
        raise DataError(f"logits must be a floating-point tensor of shape (N, C), got {got}")
    if not torch.isfinite(logits).all():
        raise DataError("logits must be finite, got NaN or inf")
    max_iter = check_positive_int("max_iter", max_iter)
    z = logits.detach().double().cpu()
    _check(torch.softmax(z, dim=1), labels)
    y = labels.detach().long().cpu()
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    t = float(log_t.detach().exp())
    if not math.isfinite(t):
        return _T_MAX if float(log_t) > 0 else _T_MIN
    return min(max(t, _T_MIN), _T_MAX)


@dataclasses.dataclass(frozen=True)
class CalibrationReport:
    """Calibration of a model's test predictions before and after temperature scaling.

    Attributes:
        temperature: the T fitted on the validation split.
        before, after: :func:`calibration_metrics` of the test split with T = 1 and with T.
        n_bins: bins of the ECE.
    """

    temperature: float
    before: dict[str, float]
    after: dict[str, float]
    n_bins: int = 15

    def flat(self) -> dict[str, float]:
        """One flat row for a sweep: ``acc, ece, nll, brier, temperature, ece_ts, nll_ts, brier_ts``."""
        row = dict(self.before)
        row["temperature"] = self.temperature
        row.update({f"{k}_ts": v for k, v in self.after.items() if k != "acc"})
        return row


def calibration_report(
    model: nn.Module,
    x_val: Tensor,
    y_val: Tensor,
    x_test: Tensor,
    y_test: Tensor,
    *,
    n_bins: int = 15,
    batch_size: int = 1024,
) -> CalibrationReport:
    """Fit a temperature on the validation split and report test calibration before and after.

    Guo, Pleiss, Sun, Weinberger, "On Calibration of Modern Neural Networks", ICML 2017,
    arXiv:1706.04599. Logits come from the deterministic eval-mode pass
    (:func:`~droplab.inference.predict`; for MC-averaged probabilities use
    :func:`calibration_metrics` on ``mc_predict(...).probs``).

    Args:
        model: a trained classifier returning logits.
        x_val, y_val: validation inputs and labels (fit T).
        x_test, y_test: test inputs and labels (measure).
        n_bins: ECE bins (default 15).
        batch_size: examples per forward pass (default 1024).

    Returns:
        A :class:`CalibrationReport`; ``report.flat()`` gives one row for a sweep.

    Example::

        report = calibration_report(model, s.x_val, s.y_val, s.x_test, s.y_test)
        report.before["ece"], report.after["ece"], report.temperature
    """
    n_bins = check_positive_int("n_bins", n_bins)
    t = fit_temperature(predict(model, x_val, batch_size=batch_size).double(), y_val)
    z = predict(model, x_test, batch_size=batch_size).double()
    if z.dim() != 2:
        raise DataError(f"calibration needs logits of shape (N, C), got {tuple(z.shape)}")
    before = calibration_metrics(torch.softmax(z, dim=1), y_test, n_bins)
    after = calibration_metrics(torch.softmax(z / t, dim=1), y_test, n_bins)
    return CalibrationReport(temperature=t, before=before, after=after, n_bins=n_bins)
