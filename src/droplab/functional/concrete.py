"""Concrete dropout: a dropout rate learned by gradient descent through a relaxed mask.

Gal, Hron, Kendall, "Concrete Dropout", NeurIPS 2017, arXiv:1705.07832.
"""

from __future__ import annotations

import torch

from droplab._checks import check_nonneg_float, check_positive_float
from droplab.errors import ConfigError
from droplab.functional.random import rand

__all__ = ["concrete_dropout", "concrete_drop_mask"]


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
    logit_u = (torch.log(u + eps) - torch.log(1 - u + eps)).to(dtype)
    return torch.sigmoid((logit.to(dtype) - logit_u) / temperature)


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
