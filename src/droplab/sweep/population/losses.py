"""Losses of a population's members, per member, with their hand-written gradients."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from droplab.errors import DataError

__all__ = ["GAUSSIAN_MIN_VAR", "gaussian_nll"]


#: Variance floor of the Gaussian head (Lakshminarayanan et al. 2017 add 1e-6 to the softplus).
GAUSSIAN_MIN_VAR = 1e-6
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def gaussian_nll(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Elementwise Gaussian negative log-likelihood of a mean/variance head, in nats.

    Task ``"gaussian"`` (Lakshminarayanan, Pritzel, Blundell, "Simple and Scalable Predictive
    Uncertainty Estimation using Deep Ensembles", NeurIPS 2017, arXiv:1612.01474): the last
    axis of ``out`` holds ``D`` means then ``D`` raw variances, ``var = softplus(raw) + 1e-6``;
    ``nll = 0.5 log(2 pi var) + (y - mean)^2 / (2 var)``.

    Args:
        out: ``(..., 2 D)``. y: ``(..., D)``.

    Returns:
        ``(..., D)``.

    Example:
        >>> float(gaussian_nll(torch.tensor([[0.0, 20.0]]), torch.tensor([[0.0]]))[0, 0])  # doctest: +ELLIPSIS
        2.4...
    """
    d = y.shape[-1]
    if out.shape[-1] != 2 * d:
        raise DataError(
            f"a Gaussian head needs 2 x {d} outputs (means, then raw variances), got {out.shape[-1]}"
        )
    mean, var = out[..., :d], F.softplus(out[..., d:]) + GAUSSIAN_MIN_VAR
    return 0.5 * var.log() + (y - mean).pow(2) / (2 * var) + _HALF_LOG_2PI


def _loss_and_grad_out(out: torch.Tensor, y: torch.Tensor, task: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-member mean loss (K,) and its gradient w.r.t. ``out`` (K, B, C), no autograd."""
    batch = out.shape[1]
    if task == "gaussian":
        d = y.shape[2]
        losses = gaussian_nll(out, y).mean((1, 2))
        mean, raw = out[..., :d], out[..., d:]
        var = F.softplus(raw) + GAUSSIAN_MIN_VAR
        diff = mean - y
        scale = 1.0 / (batch * d)
        d_mean = diff / var * scale
        d_raw = 0.5 * (1 / var - diff.pow(2) / var.pow(2)) * torch.sigmoid(raw) * scale
        return losses, torch.cat([d_mean, d_raw], dim=2)
    if task == "binary":  # one logit: BCE with logits, d/dz = sigmoid(z) - y
        losses = F.binary_cross_entropy_with_logits(out, y.expand_as(out), reduction="none").mean((1, 2))
        return losses, (torch.sigmoid(out) - y).mul_(1.0 / batch)
    if task == "classification":
        logp = torch.log_softmax(out, dim=2)
        losses = -logp.gather(2, y.unsqueeze(2)).squeeze(2).mean(1)
        d = logp.exp_()
        d.scatter_add_(2, y.unsqueeze(2), d.new_full((d.shape[0], batch, 1), -1.0))
        return losses, d.mul_(1.0 / batch)
    diff = out - y
    losses = diff.pow(2).mean((1, 2))
    return losses, diff.mul_(2.0 / diff[0].numel())


def _loss_per_member(out: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
    if task == "binary":
        return F.binary_cross_entropy_with_logits(out, y.expand_as(out), reduction="none").mean((1, 2))
    if task == "gaussian":
        return gaussian_nll(out, y).mean((1, 2))
    if task == "classification":
        return F.cross_entropy(out.transpose(1, 2), y, reduction="none").mean(1)
    return (out - y).pow(2).mean((1, 2))
