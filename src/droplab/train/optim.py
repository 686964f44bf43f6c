"""Optimizers and learning-rate schedules built from a :class:`~droplab.train.TrainConfig`.

One rule for weight decay (see :class:`~droplab.train.TrainConfig`): it is always decoupled and
applies to weights only (:func:`droplab.regularize.param_groups`), in torch's ``AdamW``
convention ``theta -= lr * weight_decay * theta`` (Loshchilov & Hutter, ICLR 2019,
arXiv:1711.05101).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import nn

if TYPE_CHECKING:  # annotations only: an import at run time closes a cycle through the trainer
    from droplab.train.config import TrainConfig

__all__ = ["build_optimizer", "build_optimizer_over", "build_scheduler", "direct_step", "SCHEDULE_STEPS_PER_BATCH"]

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


def direct_step(optimizer: torch.optim.Optimizer) -> Callable[[], None] | None:
    """``optimizer.step()`` of a fused torch Adam as one direct call per group, or None.

    ``torch.optim.Adam.step`` spends about 0.3 ms per call in Python (hooks, grad-mode guards,
    collecting every parameter's state) before its fused kernel (0.01-0.06 ms for a sweep
    population's few stacked tensors): at a training step of 1 ms that is a third of it. The
    returned function calls the same kernels on lists collected once (``_foreach_add_`` of the
    step counts, then ``torch._fused_adam_``), so the parameters and state get the same bits as
    with ``optimizer.step()``; learning rates are read from the groups at each call (schedules
    keep working).

    Returns None -- the caller keeps ``optimizer.step()`` -- unless the optimizer is a
    ``torch.optim.Adam`` built with ``fused=True`` on one device and dtype, without amsgrad,
    maximize, capturable, differentiable or decoupled decay, with no step hooks, every parameter
    with a gradient and its state made by an earlier ``step()``. The function is valid while
    the optimizer's state tensors are the same objects: build a new one after
    ``load_state_dict``.

    Example:
        >>> w = torch.zeros(3, 4, requires_grad=True)
        >>> opt = torch.optim.Adam([w], lr=0.1, fused=True)
        >>> w.grad = torch.ones(3, 4); opt.step()
        >>> step = direct_step(opt); step()  # the same update as opt.step()
    """
    import torch.optim.optimizer as base

    if type(optimizer) is not torch.optim.Adam or getattr(optimizer, "grad_scale", None) is not None:
        return None
    # hooks and the fused kernel are torch internals: whatever is not where torch 2.4-2.13 keeps
    # it counts as "cannot", and optimizer.step() stays
    hooks = [getattr(optimizer, "_optimizer_step_pre_hooks", None),
             getattr(optimizer, "_optimizer_step_post_hooks", None),
             getattr(base, "_global_optimizer_pre_hooks", None),
             getattr(base, "_global_optimizer_post_hooks", None)]
    if any(h is None or len(h) for h in hooks) or not hasattr(torch, "_fused_adam_"):
        return None
    plans = []
    kinds = set()
    for group in optimizer.param_groups:
        if not group.get("fused") or any(
            group.get(flag) for flag in ("amsgrad", "maximize", "capturable", "differentiable", "decoupled_weight_decay")
        ):
            return None
        params = list(group["params"])
        states = [optimizer.state.get(p, {}) for p in params]
        if any(p.grad is None or "exp_avg" not in st or p.is_complex() for p, st in zip(params, states)):
            return None
        kinds.update((p.device, p.dtype) for p in params)
        steps = [st["step"] for st in states]
        plans.append((group, params, [st["exp_avg"] for st in states], [st["exp_avg_sq"] for st in states], steps))
    if len(kinds) > 1:  # torch groups the tensors by device and dtype: one group only here
        return None

    def step() -> None:
        with torch.no_grad():
            for group, params, exp_avgs, exp_avg_sqs, steps in plans:
                if not params:
                    continue
                beta1, beta2 = group["betas"]
                torch._foreach_add_(steps, 1)
                torch._fused_adam_(
                    params, [p.grad for p in params], exp_avgs, exp_avg_sqs, [], steps,
                    amsgrad=False, lr=group["lr"], beta1=beta1, beta2=beta2,
                    weight_decay=group["weight_decay"], eps=group["eps"], maximize=False,
                    grad_scale=None, found_inf=None,
                )

    return step
