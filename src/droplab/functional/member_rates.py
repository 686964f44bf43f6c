"""Unit dropout with the rate as a tensor: one rate per member of a vectorized population.

A population sweep trains many copies of one model as one ``torch.func.vmap`` computation
(:mod:`droplab.sweep.population`). A rate that is a Python float is part of the *code* and
must be the same for every member; a rate held in a tensor is *data* and is stacked with the
members' weights, so configurations that differ only in their rates train together. These
functions are :func:`~droplab.functional.dropout`, :func:`~droplab.functional.spatial_dropout`,
:func:`~droplab.functional.alpha_dropout` and :func:`~droplab.functional.feature_alpha_dropout`
with ``p`` a 0-dim float64 tensor: the same keep rule ``u >= p`` on the same float32 uniforms
and the same scaling, written so that a member computes the same bits as the float form with
its rate (a 0-dim tensor, like a Python number, does not promote the input's dtype, and
float64 holds a Python float exactly).

This is the rule of :func:`~droplab.functional.dropout`'s generator path (scale: divide by
``1 - p`` in the input's dtype), which a module population ran before rates became data, not
:func:`~droplab.functional.unit.batched_dropout_params` (the batched MLP's rule, scale
``1 / (1 - p)`` rounded once; the two differ in the last bit for some rates): a model whose
rates all agree trains to the same bits with or without per-member rates.

Outside ``vmap`` (a plain tensor, not a member batch) they call the float functions with
``float(p)``: one meaning of ``p``, and the float path's own shortcuts (the counter-hash path
for large inputs, ``x`` returned as is at ``p == 0``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from droplab._checks import check_rank
from droplab.functional.random import rand
from droplab.functional.unit import _alpha_affine, _normalize_axes, alpha_dropout, dropout, spatial_dropout

__all__ = [
    "is_member_batched",
    "member_dropout",
    "member_spatial_dropout",
    "member_alpha_dropout",
    "member_feature_alpha_dropout",
]

def is_member_batched(p: Tensor) -> bool:
    """Whether ``p`` is a member batch inside ``torch.func`` (one rate per member)."""
    return torch._C._functorch.is_functorch_wrapped_tensor(p)


def _keep(shape: Sequence[int], p: Tensor, like: Tensor, generator: torch.Generator | None) -> Tensor:
    return rand(shape, generator, like.device) >= p


def _shape(x: Tensor, shared_axes: Sequence[int]) -> list[int]:
    axes = _normalize_axes(tuple(shared_axes), x)  # the float form's range check and message
    return [1 if d in axes else size for d, size in enumerate(x.shape)]


def member_dropout(
    x: Tensor,
    p: Tensor,
    *,
    mode: str = "inverted",
    shared_axes: Sequence[int] = (),
    training: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """:func:`droplab.functional.dropout` with ``p`` a 0-dim tensor (one rate per member).

    Srivastava, Hinton, Krizhevsky, Sutskever, Salakhutdinov, JMLR 15, 2014.

    Args:
        x: input of any shape.
        p: 0-dim float64 tensor, the drop probability in [0, 1) (checked where it is set).
        mode, shared_axes, training, generator: as for :func:`droplab.functional.dropout`.

    Shape:
        Input ``(*)``, output ``(*)``.

    Example:
        >>> from torch.func import vmap
        >>> rates = torch.tensor([0.0, 0.5], dtype=torch.float64)
        >>> y = vmap(lambda p: member_dropout(torch.ones(4, 8), p), randomness="different")(rates)
    """
    if not is_member_batched(p):
        return dropout(x, float(p), mode=mode, shared_axes=shared_axes, training=training,
                       generator=generator)
    if not training:
        return x if mode == "inverted" else x * (1.0 - p)
    mask = _keep(_shape(x, shared_axes), p, x, generator).to(x.dtype)
    return x * (mask.div(1.0 - p) if mode == "inverted" else mask)


def member_spatial_dropout(
    x: Tensor, p: Tensor, *, training: bool = True, generator: torch.Generator | None = None
) -> Tensor:
    """:func:`droplab.functional.spatial_dropout` with ``p`` a 0-dim tensor.

    Tompson, Goroshin, Jain, LeCun, Bregler, CVPR 2015.

    Shape:
        Input ``(N, C, *spatial)`` with 1 to 3 spatial dimensions; output the same shape.

    Example:
        >>> y = member_spatial_dropout(torch.ones(2, 4, 3, 3), torch.tensor(0.5, dtype=torch.float64))
    """
    if not is_member_batched(p):
        return spatial_dropout(x, float(p), training=training, generator=generator)
    check_rank("spatial_dropout", x, [3, 4, 5], "(N, C, L), (N, C, H, W) or (N, C, D, H, W)")
    if not training:
        return x
    shape = [x.shape[0], x.shape[1]] + [1] * (x.dim() - 2)
    return x * _keep(shape, p, x, generator).to(x.dtype).div(1.0 - p)


def member_alpha_dropout(
    x: Tensor,
    p: Tensor,
    *,
    shared_axes: Sequence[int] = (),
    training: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """:func:`droplab.functional.alpha_dropout` with ``p`` a 0-dim tensor.

    Klambauer, Unterthiner, Mayr, Hochreiter, NeurIPS 2017, arXiv:1706.02515.

    Shape:
        Input ``(*)``, output ``(*)``.

    Example:
        >>> y = member_alpha_dropout(torch.randn(4, 8), torch.tensor(0.1, dtype=torch.float64))
    """
    if not is_member_batched(p):
        return alpha_dropout(x, float(p), shared_axes=shared_axes, training=training,
                             generator=generator)
    if not training:
        return x
    return _alpha_affine(x, _keep(_shape(x, shared_axes), p, x, generator).to(x.dtype), p)


def member_feature_alpha_dropout(
    x: Tensor, p: Tensor, *, training: bool = True, generator: torch.Generator | None = None
) -> Tensor:
    """:func:`droplab.functional.feature_alpha_dropout` with ``p`` a 0-dim tensor.

    Klambauer et al., NeurIPS 2017, arXiv:1706.02515; channel-wise as Tompson et al., CVPR 2015.

    Shape:
        Input ``(N, C, *spatial)`` with 1 to 3 spatial dimensions; output the same shape.

    Example:
        >>> y = member_feature_alpha_dropout(torch.randn(2, 4, 3, 3), torch.tensor(0.1, dtype=torch.float64))
    """
    check_rank("feature_alpha_dropout", x, [3, 4, 5], "(N, C, L), (N, C, H, W) or (N, C, D, H, W)")
    return member_alpha_dropout(x, p, shared_axes=tuple(range(2, x.dim())), training=training,
                                generator=generator)
