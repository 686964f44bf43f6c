"""DropConnect: a wrapper that drops the weights of a Linear or Conv layer.

Wan, Zeiler, Zhang, LeCun, Fergus, "Regularization of Neural Networks using DropConnect",
ICML 2013.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from droplab._checks import check_choice, check_positive_int
from droplab.errors import ConfigError
from droplab.functional.random import randn
from droplab.functional.weights import drop_connect
from droplab.nn._base import StochasticLayer

__all__ = ["DropConnect"]

_SUPPORTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_INFERENCE = ("mean", "moment")


class DropConnect(StochasticLayer):
    """Wrap ``nn.Linear`` / ``nn.Conv1d/2d/3d`` so that each weight is dropped with rate ``p``.

    Wan, Zeiler, Zhang, LeCun, Fergus, "Regularization of Neural Networks using DropConnect",
    ICML 2013. Training computes ``activation((M * W / (1 - p)) v + b)`` with a fresh Bernoulli
    mask ``M`` (keep probability ``1 - p``) per forward call, through
    :func:`droplab.functional.drop_connect` (inverted scaling, so ``E[M * W / (1 - p)] = W``).

    Design choices, stated:

    * One mask per forward call is shared by every example of the batch. The paper draws a mask
      per example; that costs a ``batch x weights`` tensor and a batched matmul per layer, which
      defeats the point for wide layers; sharing keeps the cost of one extra weight-sized tensor,
      and the expectation over calls is the same.
    * The bias is not dropped (the paper masks the weight matrix; biases are few and dropping
      them only adds noise to the offset).
    * The wrapped module's stored weights are never modified: the masked weight is a temporary
      fed to ``F.linear`` / the conv op, so gradients reach ``module.weight`` (zero at dropped
      entries) and ``module`` itself stays usable on its own.

    Inference (eval mode):

    * ``"mean"``: the wrapped module unchanged, ``activation(W v + b)``; this is the exact mean of
      the training pre-activation (weight scaling).
    * ``"moment"``: the paper's moment matching. With ``M_ij ~ Bernoulli(k)``, ``k = 1 - p``, the
      pre-activation ``u = (M * W / k) v`` has mean ``W v`` and variance
      ``sum_j W_ij^2 v_j^2 k (1 - k) / k^2 = p / (1 - p) * (W*W)(v*v)`` (the paper's
      ``k (1 - k) (W*W)(v*v)`` for its unscaled ``M * W``, divided by ``k^2`` for the inverted
      form). droplab draws ``samples`` Gaussians ``u ~ N(W v + b, var)`` per output and returns
      the average of ``activation(u)``. For convolutions the variance is the same conv applied
      to ``v*v`` with ``W*W``. With ``activation=None`` (identity) the average of a Gaussian is
      its mean, so ``"moment"`` returns the mean exactly, without sampling.

    Args:
        module: an ``nn.Linear``, ``nn.Conv1d``, ``nn.Conv2d`` or ``nn.Conv3d`` (kept as
            ``self.module``; its parameters are this layer's parameters).
        p: probability of dropping each weight, in [0, 1). Default 0.5.
        inference: ``"mean"`` or ``"moment"``. Default ``"mean"``.
        samples: Gaussian draws per output for ``"moment"`` inference. Default 64.
        activation: optional callable applied after the wrapped layer in every mode (needed
            for moment matching, which averages after the nonlinearity). Default ``None``.
        generator: optional ``torch.Generator`` for masks and moment samples (keyword only).

    Mean preserving (E[training output] == eval output) only when ``activation`` is ``None``;
    with an activation the instance reports ``mean_preserving = False``.

    Shape:
        that of the wrapped module.

    Example:
        >>> layer = DropConnect(nn.Linear(20, 10), p=0.5, inference="moment",
        ...                     activation=torch.relu)
        >>> y = layer(torch.randn(8, 20))
    """

    def __init__(
        self,
        module: nn.Module,
        p: float = 0.5,
        inference: str = "mean",
        samples: int = 64,
        activation: Callable[[torch.Tensor], torch.Tensor] | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(p, generator=generator)
        if not isinstance(module, _SUPPORTED):
            raise ConfigError(
                "DropConnect wraps nn.Linear, nn.Conv1d, nn.Conv2d or nn.Conv3d, "
                f"got {type(module).__name__}"
            )
        if activation is not None and not callable(activation):
            raise ConfigError(f"activation must be callable or None, got {activation!r}")
        self.module = module
        self.inference = check_choice("inference", inference, _INFERENCE)
        self.samples = check_positive_int("samples", samples)
        self.activation = activation
        if activation is not None:
            # E[a(u)] != a(E[u]) for a nonlinear a: this instance is not mean preserving.
            self.mean_preserving = False  # type: ignore[misc]

    def _apply_op(
        self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        if isinstance(self.module, nn.Linear):
            return F.linear(x, weight, bias)
        # The conv module's own op applies its padding mode, stride, dilation and groups.
        return self.module._conv_forward(x, weight, bias)  # type: ignore[operator]

    def _activate(self, u: torch.Tensor) -> torch.Tensor:
        return u if self.activation is None else self.activation(u)

    def preactivation_moments(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of the training-mode pre-activation (bias included in the mean).

        ``mean = W v + b`` and ``var = p / (1 - p) * (W*W)(v*v)`` for the inverted mask (see the
        class docstring), per example and output unit.

        Example:
            >>> mean, var = layer.preactivation_moments(torch.randn(8, 20))
        """
        weight, bias = self.module.weight, self.module.bias
        mean = self._apply_op(x, weight, bias)
        var = self._apply_op(x * x, weight * weight, None) * (self.p / (1 - self.p))
        return mean, var

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            weight = drop_connect(
                self.module.weight, self.p, training=True, generator=self.generator
            )
            return self._activate(self._apply_op(x, weight, self.module.bias))
        if self.inference == "mean" or self.activation is None or self.p == 0:
            return self._activate(self._apply_op(x, self.module.weight, self.module.bias))
        mean, var = self.preactivation_moments(x)
        noise = randn((self.samples, *mean.shape), self.generator, mean.device)
        noise = noise.to(mean.dtype)
        return self._activate(mean + var.sqrt() * noise).mean(dim=0)

    def extra_repr(self) -> str:
        parts = [f"p={self.p}", f"inference={self.inference!r}"]
        if self.inference == "moment":
            parts.append(f"samples={self.samples}")
        if self.activation is not None:
            name = getattr(self.activation, "__name__", type(self.activation).__name__)
            parts.append(f"activation={name}")
        return ", ".join(parts)
