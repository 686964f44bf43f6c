"""Which parameters count as weights, and the L1 / L2 penalties added to the loss.

The selection rule (:func:`weight_parameters`) is shared by the penalties, the weight-decay
parameter groups and the max-norm constraint, so "weights only" means the same thing everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn

from droplab._checks import check_choice, check_nonneg_float
from droplab.errors import ConfigError

__all__ = ["PARAMETER_KINDS", "parameter_kind", "weight_parameters", "l1_penalty", "l2_penalty"]

#: The kinds :func:`parameter_kind` sorts a parameter into.
PARAMETER_KINDS: tuple[str, ...] = ("weight", "embedding", "bias", "norm", "other")

_NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,  # BatchNorm1d/2d/3d, SyncBatchNorm, InstanceNorm*
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
    nn.RMSNorm,
)
_EMBEDDING_TYPES: tuple[type[nn.Module], ...] = (nn.Embedding, nn.EmbeddingBag)

Predicate = Callable[[str, nn.Parameter], bool]


def parameter_kind(module: nn.Module, name: str, param: torch.Tensor) -> str:
    """Sort one parameter of ``module`` into ``"weight"``, ``"embedding"``, ``"bias"``,
    ``"norm"`` or ``"other"``.

    The rule, in order (the one timm's ``param_groups_weight_decay`` uses, made explicit):

    1. every parameter of a normalization layer (BatchNorm, InstanceNorm, LayerNorm, GroupNorm,
       RMSNorm) is ``"norm"``;
    2. the table of an ``nn.Embedding`` / ``nn.EmbeddingBag`` is ``"embedding"``;
    3. a parameter whose name contains ``"bias"`` (``bias``, RNN ``bias_ih_l0``, attention
       ``in_proj_bias``) is ``"bias"``;
    4. any other parameter with two or more dimensions is a ``"weight"``: Linear, Conv*,
       ConvTranspose*, Bilinear, RNN/LSTM/GRU ``weight_ih_l*`` / ``weight_hh_l*`` /
       ``weight_hr_l*``, attention projections, and raw weights that wrappers such as
       ``WeightDrop`` register;
    5. the rest (1-D or scalar: PReLU slopes, concrete-dropout ``p_logit``, layer scales) is
       ``"other"``.

    Args:
        module: the module that owns ``param`` directly.
        name: the parameter's local name in ``module`` (``"weight"``, ``"bias_hh_l0"``, ...).
        param: the parameter.

    Example:
        >>> parameter_kind(nn.Linear(3, 2), "weight", nn.Linear(3, 2).weight)
        'weight'
    """
    if isinstance(module, _NORM_TYPES):
        return "norm"
    if isinstance(module, _EMBEDDING_TYPES):
        return "embedding"
    if "bias" in name:
        return "bias"
    if param.dim() >= 2:
        return "weight"
    return "other"


def _named_trainable(model: nn.Module) -> list[tuple[nn.Module, str, str, nn.Parameter]]:
    """(owner, local name, qualified name, parameter) for every trainable parameter, once each."""
    seen: set[int] = set()
    out = []
    for mod_name, module in model.named_modules():
        for local, param in module.named_parameters(recurse=False):
            if id(param) in seen or not param.requires_grad:
                continue
            seen.add(id(param))
            out.append((module, local, f"{mod_name}.{local}" if mod_name else local, param))
    return out


def _check_include(include: Sequence[str]) -> tuple[str, ...]:
    if isinstance(include, str):
        include = (include,)
    for kind in include:
        check_choice("include", kind, PARAMETER_KINDS)
    return tuple(include)


def weight_parameters(
    model: nn.Module,
    include: Sequence[str] = ("weight", "embedding"),
    *,
    predicate: Predicate | None = None,
) -> list[nn.Parameter]:
    """Return the trainable parameters of ``model`` that are weights (not biases, not norms).

    A parameter is selected when its kind (see :func:`parameter_kind`) is in ``include`` and,
    if given, ``predicate(qualified_name, param)`` is true. Frozen parameters
    (``requires_grad=False``) are never selected; shared (tied) parameters appear once. The
    order is that of ``model.named_modules()``, so it is deterministic.

    Embedding tables count as weights by default (they are decayed in AWD-LSTM and in most
    transformer recipes); pass ``include=("weight",)`` to leave them out.

    Args:
        model: the network.
        include: kinds to select, from ``"weight"``, ``"embedding"``, ``"bias"``, ``"norm"``,
            ``"other"``. Default ``("weight", "embedding")``. Add ``"bias"`` to penalize biases.
        predicate: optional extra filter ``(qualified_name, param) -> bool``.

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
        >>> [p.shape for p in weight_parameters(net)]
        [torch.Size([8, 4]), torch.Size([2, 8])]
    """
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    kinds = _check_include(include)
    return [
        p
        for module, local, qualified, p in _named_trainable(model)
        if parameter_kind(module, local, p) in kinds
        and (predicate is None or predicate(qualified, p))
    ]


def _resolve(model_or_params: nn.Module | Iterable[torch.Tensor]) -> list[torch.Tensor]:
    """The weights of a model, or the given tensors (kept as they are) when not a model."""
    if isinstance(model_or_params, nn.Module):
        return weight_parameters(model_or_params)
    if isinstance(model_or_params, torch.Tensor):
        return [model_or_params]
    params = list(model_or_params)
    for i, p in enumerate(params):
        if not isinstance(p, torch.Tensor):
            raise ConfigError(
                f"expected an nn.Module or an iterable of tensors; item {i} is "
                f"{type(p).__name__}"
            )
    return params


def _penalty(
    model_or_params: nn.Module | Iterable[torch.Tensor],
    strength: float,
    term: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    params = _resolve(model_or_params)
    if not params:
        return torch.zeros(())
    total = torch.stack([term(p) for p in params]).sum()
    return total * strength


def l1_penalty(
    model_or_params: nn.Module | Iterable[torch.Tensor], strength: float
) -> torch.Tensor:
    """L1 penalty ``strength * sum |w|`` over the weights, to add to the loss.

    Tibshirani (1996), the lasso; compared with dropout in Srivastava et al. (JMLR 2014),
    Table 9.

    Args:
        model_or_params: a model (its :func:`weight_parameters`, biases and norms excluded) or
            an iterable of tensors, used as given.
        strength: the coefficient, >= 0.

    Returns:
        A scalar tensor that carries gradients to the weights (a plain zero when there are no
        weights).

    Example:
        >>> net = nn.Linear(3, 2)
        >>> loss = criterion(net(x), y) + l1_penalty(net, 1e-4)  # doctest: +SKIP
    """
    strength = check_nonneg_float("strength", strength)
    return _penalty(model_or_params, strength, lambda p: p.abs().sum())


def l2_penalty(
    model_or_params: nn.Module | Iterable[torch.Tensor], strength: float
) -> torch.Tensor:
    """L2 penalty ``strength * sum w**2`` over the weights (no factor 1/2), to add to the loss.

    Its gradient is ``2 * strength * w``, so ``l2_penalty(net, s)`` with plain SGD equals
    ``torch.optim.SGD(weight_decay=2 * s)``; with adaptive optimizers (Adam) an L2 penalty is
    *not* weight decay (Loshchilov & Hutter, ICLR 2019, arXiv:1711.05101): use
    :func:`~droplab.regularize.param_groups` with ``torch.optim.AdamW`` or :class:`SGDW` for that.

    Args:
        model_or_params: a model (its :func:`weight_parameters`, biases and norms excluded) or
            an iterable of tensors, used as given.
        strength: the coefficient, >= 0.

    Returns:
        A scalar tensor that carries gradients to the weights (a plain zero when there are no
        weights).

    Example:
        >>> net = nn.Linear(3, 2)
        >>> loss = criterion(net(x), y) + l2_penalty(net, 1e-4)  # doctest: +SKIP
    """
    strength = check_nonneg_float("strength", strength)
    return _penalty(model_or_params, strength, lambda p: p.pow(2).sum())
