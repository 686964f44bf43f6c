"""DropConnect: drop individual weights instead of units.

Wan, Zeiler, Zhang, LeCun, Fergus, "Regularization of Neural Networks using DropConnect",
ICML 2013.
"""

from __future__ import annotations

import torch

from droplab._checks import check_probability
from droplab.functional.random import rand

__all__ = ["drop_connect"]


def drop_connect(
    weight: torch.Tensor,
    p: float,
    *,
    training: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Return ``weight`` with each entry dropped with probability ``p`` (inverted scaling).

    Wan, Zeiler, Zhang, LeCun, Fergus, "Regularization of Neural Networks using DropConnect",
    ICML 2013. The paper keeps ``M * W`` in training and rescales at inference; droplab uses the
    inverted form: kept weights are scaled by ``1 / (1 - p)`` so that ``E[result] = weight`` and
    the plain weight is the inference-time mean. The mask is drawn as ``u = torch.rand(...)``,
    dropped where ``u < p`` (nested across rates for the same draws). Differentiable: the
    gradient reaching ``weight`` is zero at dropped entries and ``1 / (1 - p)`` times the
    upstream gradient elsewhere.

    Args:
        weight: any weight tensor (it is not modified).
        p: probability of dropping each weight, in [0, 1).
        training: apply the mask; ``False`` returns ``weight`` itself.
        generator: optional ``torch.Generator`` for the mask.

    Shape:
        any; the result has the shape of ``weight``.

    Example:
        >>> w = drop_connect(layer.weight, 0.5)
        >>> y = torch.nn.functional.linear(x, w, layer.bias)
    """
    p = check_probability("p", p)
    if not training or p == 0:
        return weight
    u = rand(weight.shape, generator, weight.device)  # float32 for every dtype
    return weight * ((u >= p).to(weight.dtype) / (1 - p))
