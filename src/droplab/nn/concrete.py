"""Concrete dropout layer: the dropout rate is a parameter learned with the weights.

Gal, Hron, Kendall, "Concrete Dropout", NeurIPS 2017, arXiv:1705.07832.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import ClassVar

import torch
from torch import nn

from droplab._checks import (
    check_nonneg_float,
    check_positive_float,
    check_positive_int,
    check_probability,
)
from droplab.errors import ConfigError
from droplab.functional.concrete import concrete_dropout, concrete_regularization
from droplab.nn._base import StochasticLayer

__all__ = ["ConcreteDropout"]


def _logit(p: float) -> float:
    return math.log(p) - math.log1p(-p)


def _open_probability(name: str, value: float) -> float:
    value = check_probability(name, value)
    if value == 0:
        raise ConfigError(f"{name} must be in (0, 1) for a learned rate, got {value!r}")
    return value


class ConcreteDropout(StochasticLayer):
    """Dropout whose rate ``p = sigmoid(p_logit)`` is learned, through a concrete relaxation.

    Gal, Hron, Kendall, "Concrete Dropout", NeurIPS 2017, arXiv:1705.07832. Training output
    ``x * z / (1 - p)`` with the relaxed keep mask ``z`` (see
    :func:`droplab.functional.concrete_dropout`); eval returns ``x`` (inverted). The rate only
    learns something sensible if the loss includes :meth:`regularization` for the layer that
    *consumes* this layer's output, with the paper's scaling ``weight_regularizer = l**2 / N``
    and ``dropout_regularizer = 2 / N`` (``N`` training examples, ``l`` a prior length scale):
    with more data the data term dominates and ``p`` falls.

    ``p`` is a property: reading it returns the current rate as a float; assigning to it
    (``layer.p = 0.2``) resets the learned logit. The parameter itself is ``p_logit``.

    Args:
        init_p: initial rate, in (0, 1), or a range ``(low, high)`` from which the initial
            logit is drawn uniformly (the paper's ``init_min``/``init_max``, both 0.1 there).
            Default 0.1.
        temperature: relaxation temperature ``t`` > 0. Default 0.1 (paper).
        weight_regularizer: ``wr`` in ``wr * ||W||^2 / (1 - p)``. Default 1e-6.
        dropout_regularizer: ``dr`` in ``dr * K * (p log p + (1 - p) log(1 - p))``.
            Default 1e-5.
        generator: optional ``torch.Generator`` for the noise and a ranged init (keyword only).

    Not mean preserving: at ``t > 0`` the relaxed mask has ``E[z] != 1 - p``.

    Shape:
        any; the output has the shape of the input.

    Example:
        >>> drop, dense = ConcreteDropout(weight_regularizer=1e-4**2 / N,
        ...                               dropout_regularizer=2 / N), nn.Linear(20, 1)
        >>> y = dense(drop(x))
        >>> loss = mse(y, t) + drop.regularization(dense, input_dim=20)
    """

    mean_preserving: ClassVar[bool] = False

    p_logit: nn.Parameter

    def __init__(
        self,
        init_p: float | tuple[float, float] = 0.1,
        temperature: float = 0.1,
        weight_regularizer: float = 1e-6,
        dropout_regularizer: float = 1e-5,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        if isinstance(init_p, tuple | list):
            if len(init_p) != 2:
                raise ConfigError(f"init_p range must be (low, high), got {init_p!r}")
            low, high = (_open_probability("init_p", v) for v in init_p)
            if low > high:
                raise ConfigError(f"init_p range must have low <= high, got {tuple(init_p)!r}")
        else:
            low = high = _open_probability("init_p", init_p)
        # StochasticLayer's __init__ assigns self.p, which the setter turns into p_logit.
        super().__init__(low, generator=generator)
        if high > low:
            with torch.no_grad():
                u = torch.rand((), generator=generator)
                self.p_logit.fill_(_logit(low) + float(u) * (_logit(high) - _logit(low)))
        self.temperature = check_positive_float("temperature", temperature)
        self.weight_regularizer = check_nonneg_float("weight_regularizer", weight_regularizer)
        self.dropout_regularizer = check_nonneg_float("dropout_regularizer", dropout_regularizer)

    @property  # type: ignore[override]
    def p(self) -> float:
        """Current drop rate ``sigmoid(p_logit)`` as a float."""
        return float(torch.sigmoid(self.p_logit.detach()))

    @p.setter
    def p(self, value: float) -> None:
        logit = _logit(_open_probability("p", value))
        if "p_logit" not in self._parameters:
            self.p_logit = nn.Parameter(torch.tensor(logit))
        else:
            with torch.no_grad():
                self.p_logit.fill_(logit)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return concrete_dropout(
            x, self.p_logit, temperature=self.temperature, training=self.training,
            generator=self.generator,
        )

    def regularization(
        self,
        weights: nn.Module | torch.Tensor | Iterable[torch.Tensor],
        input_dim: int,
    ) -> torch.Tensor:
        """The paper's regularizer for this layer, to add to the loss.

        ``wr * ||W||^2 / (1 - p) + dr * K * (p log p + (1 - p) log(1 - p))`` with ``K`` the
        number of features entering dropout (per example) and ``||W||^2`` the sum of squares of
        the weights that consume the dropped features: all parameters of a module (weight and
        bias, as in the paper's code), a tensor, or an iterable of tensors. Differentiable in
        ``p_logit`` and in the weights.

        Args:
            weights: the layer fed by this dropout (module), or its weight tensor(s).
            input_dim: ``K``, the per-example feature count of this layer's input.

        Example:
            >>> loss = loss + drop.regularization(dense, input_dim=x[0].numel())
        """
        input_dim = check_positive_int("input_dim", input_dim)
        if isinstance(weights, nn.Module):
            tensors = list(weights.parameters())
        elif isinstance(weights, torch.Tensor):
            tensors = [weights]
        else:
            tensors = list(weights)
        if not tensors:
            raise ConfigError("regularization needs at least one weight tensor, got none")
        sum_sq = sum(t.pow(2).sum() for t in tensors)
        return concrete_regularization(self.p_logit, sum_sq, input_dim, self.weight_regularizer,
                                       self.dropout_regularizer)

    def extra_repr(self) -> str:
        return (
            f"p={self.p:.4g}, temperature={self.temperature}, "
            f"weight_regularizer={self.weight_regularizer}, "
            f"dropout_regularizer={self.dropout_regularizer}"
        )
