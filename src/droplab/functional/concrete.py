"""Concrete dropout: a dropout rate learned by gradient descent through a relaxed mask.

Gal, Hron, Kendall, "Concrete Dropout", NeurIPS 2017, arXiv:1705.07832.
"""

from __future__ import annotations

import torch

from droplab._checks import check_nonneg_float, check_positive_float, check_positive_int
from droplab.errors import ConfigError
from droplab.functional.random import rand

__all__ = ["concrete_dropout", "concrete_drop_mask", "batched_concrete_dropout", "concrete_regularization"]


def _as_logit(p_logit: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    if not isinstance(p_logit, torch.Tensor):
        p_logit = torch.as_tensor(float(p_logit), dtype=like.dtype, device=like.device)
    if p_logit.numel() != 1:
        raise ConfigError(
            f"p_logit must hold a single value, got a tensor of shape {tuple(p_logit.shape)}"
        )
    return p_logit.reshape(())


def concrete_drop_mask(
    shape: torch.Size | tuple[int, ...],
    p_logit: torch.Tensor | float,
    *,
    temperature: float = 0.1,
    generator: torch.Generator | None = None,
    eps: float = 1e-7,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Draw the relaxed *drop* indicator ``1 - z`` of concrete dropout, values in (0, 1).

    Gal, Hron, Kendall, NeurIPS 2017, arXiv:1705.07832. The paper's relaxed keep mask is
    ``z = 1 - sigmoid((log p - log(1-p) + log u - log(1-u)) / t)``. droplab draws the same
    distribution with ``u`` replaced by ``1 - u`` (also uniform), i.e. the drop indicator is
    ``sigmoid((logit p - logit u) / t)``, which tends to ``[u < p]`` as ``t -> 0``: the house
    convention ``drop = u < p``, nested across rates for the same draws. ``eps`` guards the
    logs of ``u`` (``torch.rand`` can return exactly 0). ``log p - log(1-p)`` is ``p_logit``
    itself, computed without ``eps``.

    Args:
        shape: shape of the mask.
        p_logit: ``log p - log(1 - p)``, a one-element tensor (gradients flow to it) or float.
        temperature: relaxation temperature ``t`` > 0 (paper: 0.1). Default 0.1.
        generator: optional ``torch.Generator`` for ``u``.
        eps: added inside the logs of ``u`` (paper's code: 1e-7). Default 1e-7.
        dtype, device: of the mask (default: those of ``p_logit``).

    Example:
        >>> drop = concrete_drop_mask((4, 10), torch.tensor(-2.0))
    """
    temperature = check_positive_float("temperature", temperature)
    eps = check_nonneg_float("eps", eps)
    ref = p_logit if isinstance(p_logit, torch.Tensor) else torch.empty(())
    logit = _as_logit(p_logit, ref)
    dtype = dtype if dtype is not None else logit.dtype
    device = device if device is not None else logit.device
    u = rand(shape, generator, device)  # float32 for every dtype (see droplab.functional.random)
    return _relaxed_drop(logit.to(dtype), u, temperature, eps, dtype)


def _relaxed_drop(logit: torch.Tensor, u: torch.Tensor, temperature: float, eps: float,
                  dtype: torch.dtype) -> torch.Tensor:
    """``sigmoid((logit - logit(u)) / t)``: the relaxed drop indicator for uniforms ``u``."""
    logit_u = (torch.log(u + eps) - torch.log(1 - u + eps)).to(dtype)
    return torch.sigmoid((logit - logit_u) / temperature)


def concrete_dropout(
    x: torch.Tensor,
    p_logit: torch.Tensor | float,
    *,
    temperature: float = 0.1,
    training: bool = True,
    generator: torch.Generator | None = None,
    eps: float = 1e-7,
) -> torch.Tensor:
    """Concrete dropout of ``x`` with a differentiable rate ``p = sigmoid(p_logit)``.

    Gal, Hron, Kendall, "Concrete Dropout", NeurIPS 2017, arXiv:1705.07832. Training output
    ``x * z / (1 - p)`` with the relaxed keep mask ``z`` of :func:`concrete_drop_mask` (one
    ``u`` per element); gradients reach ``p_logit`` through both ``z`` and ``1 / (1 - p)``.
    Inverted: eval returns ``x`` itself. Not exactly mean preserving at ``t > 0``:
    ``E[z] != 1 - p`` for a relaxed mask (it tends to ``1 - p`` as ``t -> 0``).

    Args:
        x: input of any shape.
        p_logit: ``log p - log(1 - p)`` (one-element tensor or float).
        temperature: relaxation temperature ``t`` > 0. Default 0.1 (paper).
        training: apply the relaxed mask; ``False`` returns ``x`` itself.
        generator: optional ``torch.Generator`` for the uniform noise.
        eps: added inside the logs of the uniform noise. Default 1e-7.

    Shape:
        any; the output has the shape of ``x``.

    Example:
        >>> logit = torch.zeros((), requires_grad=True)   # p = 0.5
        >>> y = concrete_dropout(torch.randn(8, 16), logit)
        >>> y.sum().backward()                             # logit.grad is set
    """
    temperature = check_positive_float("temperature", temperature)
    logit = _as_logit(p_logit, x)
    if not training:
        return x
    drop = concrete_drop_mask(
        x.shape, logit, temperature=temperature, generator=generator, eps=eps,
        dtype=x.dtype, device=x.device,
    )
    keep_prob = torch.sigmoid(-logit.to(x.dtype))  # 1 - p, stable for large |logit|
    return x * (1 - drop) / keep_prob


def batched_concrete_dropout(
    x: torch.Tensor,
    p_logit: torch.Tensor,
    u: torch.Tensor,
    *,
    temperature: float = 0.1,
    eps: float = 1e-7,
) -> torch.Tensor:
    """Concrete dropout of K members at once, one learned rate per member, given uniforms.

    Gal, Hron, Kendall, "Concrete Dropout", NeurIPS 2017, arXiv:1705.07832. The output of
    :func:`concrete_dropout` for each member ``k`` with ``p_logit[k]`` and the uniforms
    ``u[k]``: ``x * (1 - drop) / (1 - p)``, ``drop = sigmoid((p_logit - logit u) / t)`` (the
    same relaxation, same ``eps``); gradients reach ``p_logit`` and ``x``. The caller draws
    ``u`` (float32 in [0, 1)), so a population's noise comes from its own generator.

    Args:
        x: inputs ``(K, *)``.
        p_logit: ``(K,)`` logits ``log p - log(1 - p)``, one per member.
        u: uniforms of ``x``'s shape.
        temperature: relaxation temperature ``t`` > 0. Default 0.1 (paper).
        eps: added inside the logs of ``u``. Default 1e-7.

    Shape:
        ``x``, ``u``: ``(K, *)``; ``p_logit``: ``(K,)``; output ``(K, *)``.

    Example:
        >>> logit = torch.zeros(3, requires_grad=True)
        >>> x = torch.ones(3, 4, 5)
        >>> batched_concrete_dropout(x, logit, torch.rand(3, 4, 5)).sum().backward()
    """
    temperature = check_positive_float("temperature", temperature)
    eps = check_nonneg_float("eps", eps)
    if p_logit.dim() != 1 or x.dim() < 1 or p_logit.shape[0] != x.shape[0]:
        raise ConfigError(
            f"p_logit must have shape (K,) for inputs (K, ...), got {tuple(p_logit.shape)} "
            f"for inputs {tuple(x.shape)}"
        )
    if u.shape != x.shape:
        raise ConfigError(f"u must have the inputs' shape {tuple(x.shape)}, got {tuple(u.shape)}")
    logit = p_logit.to(x.dtype).view(-1, *([1] * (x.dim() - 1)))
    drop = _relaxed_drop(logit, u, temperature, eps, x.dtype)
    return x * (1 - drop) / torch.sigmoid(-logit)


def concrete_regularization(
    p_logit: torch.Tensor,
    sum_sq: torch.Tensor,
    input_dim: int,
    weight_regularizer: float,
    dropout_regularizer: float,
) -> torch.Tensor:
    """The concrete-dropout regularizer ``wr * ||W||^2 / (1 - p) + dr * K * (p log p + (1 - p) log(1 - p))``.

    Gal, Hron, Kendall, NeurIPS 2017, arXiv:1705.07832 (eq. 3 and the paper's code): ``||W||^2``
    the sum of squares of the weights that consume the dropped features, ``K`` the features
    entering dropout. Elementwise in ``p_logit`` and ``sum_sq`` (one value per member when
    both hold K), differentiable in both; ``p``, ``1 - p`` and their logs come from the logit
    (finite for any logit).

    Args:
        p_logit: logits ``log p - log(1 - p)``.
        sum_sq: ``||W||^2``, broadcastable against ``p_logit``.
        input_dim: ``K`` > 0. weight_regularizer, dropout_regularizer: ``wr``, ``dr`` >= 0.

    Example:
        >>> float(concrete_regularization(torch.tensor(0.0), torch.tensor(1.0), 1, 1.0, 0.0))
        2.0
    """
    input_dim = check_positive_int("input_dim", input_dim)
    wr = check_nonneg_float("weight_regularizer", weight_regularizer)
    dr = check_nonneg_float("dropout_regularizer", dropout_regularizer)
    p, q = torch.sigmoid(p_logit), torch.sigmoid(-p_logit)
    neg_entropy = p * torch.nn.functional.logsigmoid(p_logit) + q * torch.nn.functional.logsigmoid(-p_logit)
    return wr * sum_sq / q + dr * input_dim * neg_entropy
