"""Decoupled weight decay: parameter groups that decay weights only, and SGDW.

Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019, arXiv:1711.05101.

Convention. droplab follows torch's ``AdamW``: the decay is multiplied by the learning rate,
``theta <- theta - lr * weight_decay * theta``, applied to the parameter from *before* the
gradient step. The paper writes the decay as ``eta_t * lambda * theta`` with ``eta_t`` a
schedule multiplier separate from the step size ``alpha``, so a paper ``lambda`` equals
droplab's ``weight_decay`` only when ``lr`` plays the role of ``eta_t``; with a learning-rate
schedule on ``lr`` both the step and the decay follow it, as in torch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn

from droplab._checks import check_nonneg_float, check_probability
from droplab.errors import ConfigError
from droplab.regularize.penalties import (
    Predicate,
    _check_include,
    _named_trainable,
    parameter_kind,
)

__all__ = ["param_groups", "SGDW"]


def param_groups(
    model: nn.Module,
    weight_decay: float,
    *,
    include: Sequence[str] = ("weight", "embedding"),
    predicate: Predicate | None = None,
) -> list[dict[str, Any]]:
    """Split the trainable parameters of ``model`` into a decayed and a non-decayed group.

    Weights (as selected by :func:`~droplab.regularize.weight_parameters` with the same
    ``include`` and ``predicate``) get ``weight_decay``; biases, normalization parameters and
    the rest get ``0.0``. Pass the result to any torch optimizer (``AdamW``, ``SGD``,
    :class:`SGDW`). Empty groups are left out.

    Args:
        model: the network.
        weight_decay: decay for the weights, >= 0.
        include: parameter kinds that are decayed; default ``("weight", "embedding")``.
        predicate: optional extra filter ``(qualified_name, param) -> bool`` on decayed ones.

    Returns:
        ``[{"params": weights, "weight_decay": weight_decay},
        {"params": rest, "weight_decay": 0.0}]``

    Example:
        >>> opt = torch.optim.AdamW(param_groups(net, 1e-2), lr=1e-3)  # doctest: +SKIP
    """
    weight_decay = check_nonneg_float("weight_decay", weight_decay)
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    kinds = _check_include(include)
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for module, local, qualified, p in _named_trainable(model):
        chosen = parameter_kind(module, local, p) in kinds and (
            predicate is None or predicate(qualified, p)
        )
        (decay if chosen else no_decay).append(p)
    if not decay and not no_decay:
        raise ConfigError("model has no trainable parameters")
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


class SGDW(torch.optim.Optimizer):
    """SGD with momentum (optionally Nesterov) and decoupled weight decay.

    Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019, arXiv:1711.05101
    (Algorithm 1, SGDW). Per parameter ``theta`` with gradient ``g``, one step is::

        buf   = g                                   (first step)
        buf   = momentum * buf + (1 - dampening) * g (later steps)
        d     = g + momentum * buf if nesterov else buf     (d = g without momentum)
        theta = theta - lr * weight_decay * theta - lr * d

    The momentum buffer is torch's ``SGD`` form (learning rate outside the buffer); the decay
    uses the torch ``AdamW`` convention ``lr * weight_decay`` (see the module docstring), and
    never enters the momentum buffer -- which is what makes it decoupled. Without decay it is
    exactly ``torch.optim.SGD``.

    Args:
        params: parameters or parameter groups (e.g. from :func:`param_groups`).
        lr: learning rate, >= 0. Default 1e-3.
        momentum: momentum factor, >= 0. Default 0.
        dampening: dampening of the momentum, in [0, 1]. Default 0.
        weight_decay: decoupled decay factor, >= 0. Default 0.
        nesterov: Nesterov momentum (needs momentum > 0 and dampening 0). Default False.

    Example:
        >>> opt = SGDW(param_groups(net, 5e-4), lr=0.1, momentum=0.9)  # doctest: +SKIP
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        lr = check_nonneg_float("lr", lr)
        momentum = check_nonneg_float("momentum", momentum)
        dampening = check_probability("dampening", dampening, allow_one=True)
        weight_decay = check_nonneg_float("weight_decay", weight_decay)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ConfigError(
                f"nesterov momentum needs momentum > 0 and dampening 0, "
                f"got momentum={momentum}, dampening={dampening}"
            )
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=bool(nesterov),
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(  # type: ignore[override]
        self, closure: Callable[[], float] | None = None
    ) -> float | None:
        """Perform one optimization step; ``closure`` re-evaluates the loss if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, wd = group["lr"], group["weight_decay"]
            momentum, dampening = group["momentum"], group["dampening"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise ConfigError("SGDW does not support sparse gradients")
                d = p.grad
                if momentum != 0:
                    state = self.state[p]
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = torch.clone(d).detach()
                        state["momentum_buffer"] = buf
                    else:
                        buf.mul_(momentum).add_(d, alpha=1 - dampening)
                    d = d.add(buf, alpha=momentum) if group["nesterov"] else buf
                if wd != 0:
                    p.mul_(1 - lr * wd)
                p.add_(d, alpha=-lr)
        return loss
