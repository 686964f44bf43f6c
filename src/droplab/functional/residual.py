"""Stochastic depth that skips the dropped computation: :func:`drop_path_residual`.

:func:`droplab.functional.drop_path` multiplies a residual branch's output by a per-example
mask, so the branch is computed for every example, dropped or not. Here the mask is drawn
first (the same draw :func:`drop_path` makes, from the same generator), the branch runs on the
kept examples only, and its scaled output is added back into their rows: at rate p the branch
costs about ``1 - p`` of its full-batch compute (timm issue #1836 asks for this). The result
equals ``x + drop_path(branch(x), p)`` under the same mask, up to the float rounding of running
the branch on a smaller batch.

The branch must treat examples independently (no batch statistics in training mode: BatchNorm
would see only the kept rows).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from droplab._checks import check_probability
from droplab.errors import DataError
from droplab.functional.unit import drop_path

__all__ = ["drop_path_residual"]


def drop_path_residual(
    x: Tensor,
    branch: Callable[[Tensor], Tensor],
    p: float,
    *,
    scale_by_keep: bool = True,
    training: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """``x + drop_path(branch(x), p)``, computing ``branch`` on the kept examples only.

    Huang, Sun, Liu, Sedra, Weinberger, "Deep Networks with Stochastic Depth", ECCV 2016,
    arXiv:1603.09382: a dropped example skips the block. The per-example mask is drawn by
    :func:`~droplab.functional.drop_path` on an ``(N,)`` tensor of ones, so a generator in the
    same state gives the same mask as the masked form.

    Args:
        x: block input ``(N, *)``; the branch must map it to the same shape.
        branch: the residual branch, a callable on ``(M, *)`` batches.
        p: probability of dropping a sample's branch, in [0, 1).
        scale_by_keep: divide kept branch outputs by ``1 - p`` (default ``True``).
        training: draw the mask (default ``True``); ``False`` returns ``x + branch(x)``.
        generator: optional ``torch.Generator`` for the mask.

    Shape:
        Input ``(N, *)``, output ``(N, *)``.

    Example:
        >>> f = torch.nn.Linear(16, 16)
        >>> y = drop_path_residual(torch.randn(32, 16), f, 0.3)  # f sees about 22 rows
    """
    p = check_probability("p", p)
    if x.dim() < 1:
        raise DataError(
            "drop_path_residual expects an input with a batch dimension (N, *), "
            f"got 0D input of shape {tuple(x.shape)}"
        )
    if not training or p == 0.0:
        return x + _checked(branch(x), x)
    n = x.shape[0]
    mask = drop_path(
        x.new_ones(n), p, scale_by_keep=scale_by_keep, training=True, generator=generator
    )
    index = mask.nonzero().squeeze(1)
    if len(index) == n:  # nothing dropped: no gather
        return x + _checked(branch(x), x) * mask.view((n,) + (1,) * (x.dim() - 1))
    if len(index) == 0:  # everything dropped: the branch is not run
        return x.clone()
    y = _checked(branch(x.index_select(0, index)), x, len(index))
    y = y * mask.index_select(0, index).view((len(index),) + (1,) * (x.dim() - 1))
    return x.index_add(0, index, y)


def _checked(y: Tensor, x: Tensor, rows: int | None = None) -> Tensor:
    rows = x.shape[0] if rows is None else rows
    if y.shape != (rows,) + tuple(x.shape[1:]):
        raise DataError(
            f"drop_path_residual: the branch must keep the shape of its input, expected "
            f"{(rows,) + tuple(x.shape[1:])}, got {tuple(y.shape)}"
        )
    return y
