"""Max-norm constraint on each unit's incoming weight vector.

Srivastava, Hinton, Krizhevsky, Sutskever & Salakhutdinov, "Dropout: A Simple Way to Prevent
Neural Networks from Overfitting", JMLR 2014, section 5.1: after every update, each hidden
unit's incoming weight vector ``w`` is scaled by ``min(1, c / ||w||_2)``; the paper recommends
``c`` of 3-4 together with dropout.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from droplab._checks import check_positive_float
from droplab.errors import ConfigError
from droplab.regularize.penalties import _named_trainable, parameter_kind

__all__ = ["max_norm_", "MaxNorm", "clip_unit_norms_"]


def clip_unit_norms_(units: torch.Tensor, c: float, reduce_dims: tuple[int, ...]) -> None:
    """Scale slices of ``units`` whose L2 norm over ``reduce_dims`` exceeds ``c`` to norm ``c``.

    The max-norm rule of :func:`max_norm_` (Srivastava et al., JMLR 2014, section 5.1) on one
    tensor whose unit vectors span ``reduce_dims``, in place; slices within the bound stay
    bitwise intact. For layouts :func:`max_norm_` does not know, e.g. the stacked weights
    ``(K, in, out)`` of a sweep population (``reduce_dims=(1,)``: each member's units alone).
    ``c`` is not checked (the caller's configuration was).

    Args:
        units: the weights, changed in place.
        c: the bound, > 0.
        reduce_dims: the dims one unit's incoming weights span.

    Example:
        >>> w = torch.full((2, 4), 3.0)
        >>> clip_unit_norms_(w, 3.0, (1,)); w[0].norm().item()
        3.0
    """
    norms = torch.linalg.vector_norm(units, ord=2, dim=reduce_dims, keepdim=True)
    # Units within the bound are multiplied by exactly 1.0, which leaves them bitwise intact.
    scale = torch.where(norms > c, c / norms, torch.ones_like(norms))
    units.mul_(scale)


def _constrain_(w: torch.Tensor, c: float, module: nn.Module | None) -> None:
    if w.dim() < 2:
        raise ConfigError(
            f"max_norm_ expects weight tensors with >= 2 dims (units x fan-in), "
            f"got shape {tuple(w.shape)}"
        )
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        # Stored as (in, out / groups, *kernel): output channel j of group g reads
        # w[g*in_g:(g+1)*in_g, j]; its incoming vector spans the in and kernel axes.
        g = module.groups
        if g == 1:
            clip_unit_norms_(w, c, (0, *range(2, w.dim())))
            return
        grouped = w.contiguous().view(g, w.shape[0] // g, w.shape[1], -1)
        clip_unit_norms_(grouped, c, (1, 3))
        if grouped.data_ptr() != w.data_ptr():  # w was not contiguous: write the copy back
            w.copy_(grouped.view(w.shape))
        return
    # Linear (out, in), Conv (out, in / groups, *kernel), RNN (gates*hidden, in): one unit
    # per index of dim 0, its incoming weights spanning the other dims (any memory layout).
    clip_unit_norms_(w, c, tuple(range(1, w.dim())))


def max_norm_(model_or_params: nn.Module | Iterable[torch.Tensor], c: float) -> None:
    """Rescale every unit's incoming weight vector to L2 norm at most ``c``, in place.

    Srivastava et al., JMLR 2014, section 5.1 (max-norm regularization). Call it after each
    optimizer step. A vector ``w`` with ``||w|| > c`` becomes ``w * c / ||w||`` (norm ``c`` up
    to float rounding); a vector with ``||w|| <= c`` is left bitwise unchanged. Runs under
    ``torch.no_grad()`` and returns nothing.

    Units are: rows of a Linear weight (one per output feature), output channels of a Conv
    weight (each filter flattened over input channels and kernel), output channels of a
    ConvTranspose weight (respecting ``groups``), rows of RNN ``weight_ih`` / ``weight_hh``.
    Given a model, the constraint applies to its ``"weight"`` parameters (see
    :func:`~droplab.regularize.parameter_kind`): not to biases, norm layers or embeddings.
    Given tensors, each is treated as ``(units, *fan_in)``.

    Args:
        model_or_params: a model, or an iterable of weight tensors with >= 2 dims.
        c: the bound, > 0 (the paper uses 3-4).

    Shape:
        Each tensor keeps its shape; only its values change.

    Example:
        >>> net = nn.Linear(784, 1024)
        >>> opt.step(); max_norm_(net, 3.0)  # doctest: +SKIP
    """
    c = check_positive_float("c", c)
    with torch.no_grad():
        if isinstance(model_or_params, nn.Module):
            for module, local, _, p in _named_trainable(model_or_params):
                if parameter_kind(module, local, p) == "weight":
                    _constrain_(p, c, module)
            return
        if isinstance(model_or_params, torch.Tensor):
            model_or_params = [model_or_params]
        for i, p in enumerate(model_or_params):
            if not isinstance(p, torch.Tensor):
                raise ConfigError(
                    f"expected an nn.Module or an iterable of tensors; item {i} is "
                    f"{type(p).__name__}"
                )
            _constrain_(p, c, None)


class MaxNorm:
    """The max-norm constraint as a callable object: ``MaxNorm(3.0)(model)``.

    Srivastava et al., JMLR 2014, section 5.1. Calls :func:`max_norm_` with the stored bound;
    handy for a trainer that accepts a list of post-step constraints.

    Args:
        c: the bound on each unit's incoming weight norm, > 0.

    Example:
        >>> constraint = MaxNorm(3.0)
        >>> constraint(nn.Linear(4, 2))
    """

    def __init__(self, c: float) -> None:
        self.c = check_positive_float("c", c)

    def __call__(self, model_or_params: nn.Module | Iterable[torch.Tensor]) -> None:
        max_norm_(model_or_params, self.c)

    def __repr__(self) -> str:
        return f"MaxNorm(c={self.c})"
