"""Optimizers and learning-rate schedules built from a :class:`~droplab.train.TrainConfig`.

One rule for weight decay (see :class:`~droplab.train.TrainConfig`): it is always decoupled and
applies to weights only (:func:`droplab.regularize.param_groups`), in torch's ``AdamW``
convention ``theta -= lr * weight_decay * theta`` (Loshchilov & Hutter, ICLR 2019,
arXiv:1711.05101).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:  # annotations only: an import at run time closes a cycle through the trainer
    from droplab.train.config import TrainConfig

__all__ = ["build_optimizer", "build_optimizer_over", "build_scheduler", "SCHEDULE_STEPS_PER_BATCH"]

#: Schedules stepped after every optimizer step (the others are stepped once per epoch).
SCHEDULE_STEPS_PER_BATCH = ("onecycle",)


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer ``config`` asks for, over the trainable parameters of ``model``.

    ``sgd`` -> ``torch.optim.SGD`` (or :class:`droplab.regularize.SGDW` when
    ``weight_decay > 0``, which without decay is exactly SGD); ``adam`` -> ``torch.optim.Adam``;
    ``adamw`` -> ``torch.optim.AdamW`` with decay on weights only; ``rmsprop`` ->
    ``torch.optim.RMSprop``. Hyper-parameters not in the config keep torch's defaults
    (Adam betas (0.9, 0.999), eps 1e-8; RMSprop alpha 0.99).

    Args:
        model: the network.
        config: the training configuration.

    Example:
        >>> opt = build_optimizer(nn.Linear(3, 2), TrainConfig(optimizer="sgd", lr=0.1))
    """
    params: Any = [p for p in model.parameters() if p.requires_grad]
    if not params:
        from droplab.errors import ConfigError

        raise ConfigError("the model has no trainable parameters")
    if config.weight_decay > 0:
        from droplab.regularize import param_groups

        params = param_groups(model, config.weight_decay)
    return _optimizer(params, config)


def build_optimizer_over(
    weights: Sequence[torch.Tensor],
    others: Sequence[torch.Tensor],
    config: TrainConfig,
    *,
    fused: bool = False,
) -> torch.optim.Optimizer:
    """The optimizer of :func:`build_optimizer` over tensors that no module holds.

    For stacked parameters (a sweep population's, one row per member): ``weights`` get
    ``config.weight_decay``, ``others`` (biases) none -- the groups
    :func:`droplab.regularize.param_groups` makes of a model.

    Args:
        weights: the decayed tensors (leaf tensors; views of a stack are fine).
        others: the tensors never decayed.
        config: the training configuration.
        fused: use torch's fused kernels where it has them (SGD, Adam, AdamW; on CPU and
            CUDA) and its ``foreach`` implementation for RMSprop (default False: torch's
            defaults, as :func:`build_optimizer`). Same updates up to float rounding.

    Example:
        >>> w, b = torch.zeros(3, 4, requires_grad=True), torch.zeros(3, 1, requires_grad=True)
        >>> opt = build_optimizer_over([w], [b], TrainConfig(weight_decay=1e-2))
    """
    wd = config.weight_decay
    params: Any = [*weights, *others]
    if wd > 0:
        params = [{"params": list(weights), "weight_decay": wd}]
        if others:
            params.append({"params": list(others), "weight_decay": 0.0})
    return _optimizer(params, config, fused=fused)


def _optimizer(params: Any, config: TrainConfig, *, fused: bool = False) -> torch.optim.Optimizer:
    """``config.optimizer`` over ``params`` (tensors or groups with their own weight decay)."""
    fast: dict[str, Any] = {"fused": True} if fused else {}
    if config.optimizer == "sgd":
        if config.weight_decay > 0:
            from droplab.regularize import SGDW

            return SGDW(params, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov)
        return torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov, **fast
        )
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, **fast)
    if config.optimizer == "adamw":
        # weight_decay=0.0 as the default so that a plain parameter list is not decayed with
        # torch's default 1e-2; the groups carry their own values.
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0, **fast)
    # RMSprop has no fused kernel: its foreach implementation is the fast one.
    return torch.optim.RMSprop(
        params, lr=config.lr, momentum=config.momentum, **({"foreach": True} if fused else {})
    )


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The learning-rate schedule ``config.lr_schedule`` asks for, or ``None`` for constant.

    ``step`` and ``cosine`` are stepped once per epoch; ``onecycle`` once per optimizer step
    (see :data:`SCHEDULE_STEPS_PER_BATCH`) over ``epochs * steps_per_epoch`` steps with
    ``max_lr = config.lr``. OneCycle cycles momentum only where the optimizer uses it (Adam's
    beta1 always; SGD/RMSprop only with ``momentum > 0``), so that it never switches momentum
    on behind the user's back.

    Args:
        optimizer: the optimizer to schedule.
        config: the training configuration.
        steps_per_epoch: optimizer steps in one epoch.
    """
    kind = config.lr_schedule
    if kind == "constant":
        return None
    if kind == "step":
        return torch.optim.lr_scheduler.StepLR(
            optimizer, step_size=config.step_size, gamma=config.gamma
        )
    if kind == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    cycle_momentum = config.optimizer in ("adam", "adamw") or config.momentum > 0
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=config.lr,
        total_steps=config.epochs * steps_per_epoch,
        cycle_momentum=cycle_momentum,
    )
