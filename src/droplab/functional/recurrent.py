"""Dropout for sequence models: one mask per sequence (locked) and per word type (embedding).

Masks are drawn as in :mod:`droplab.functional.unit` (``drop = u < p``, float32 uniforms), so
they nest across rates for one generator state. :class:`droplab.nn.WeightDrop`, the third piece
of Merity et al.'s AWD-LSTM recipe, lives in :mod:`droplab.nn.recurrent` because it wraps a module.
"""

from __future__ import annotations

import torch
from torch import Tensor

from droplab._checks import check_probability, check_rank
from droplab.errors import ConfigError
from droplab.functional.unit import _keep_mask, _scaled_mask, _uniform

__all__ = ["locked_dropout", "embedding_dropout"]


def locked_dropout(
    x: Tensor,
    p: float,
    *,
    batch_first: bool = False,
    training: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Variational (locked) dropout: one mask per sequence, reused at every time step.

    Gal & Ghahramani, "A Theoretically Grounded Application of Dropout in Recurrent Neural
    Networks", NeurIPS 2016, arXiv:1512.05287; the ``LockedDropout`` of Merity et al.'s AWD-LSTM
    (arXiv:1708.02182). A unit (example, feature) is either dropped for the whole sequence or
    kept for the whole sequence; kept units are scaled by ``1 / (1 - p)``.

    Args:
        x: a batch of sequences, ``(T, N, F)`` or ``(N, T, F)`` with ``batch_first``.
        p: probability of dropping a unit for the whole sequence, in [0, 1).
        batch_first: input is ``(N, T, F)`` instead of ``(T, N, F)`` (default ``False``, as in
            ``torch.nn.LSTM``).
        training: apply the mask (default ``True``); ``False`` returns ``x``.
        generator: optional ``torch.Generator`` for the mask.

    Shape:
        Input ``(T, N, F)`` (or ``(N, T, F)``), output the same shape.

    Example:
        >>> out, _ = torch.nn.LSTM(8, 16)(torch.randn(5, 3, 8))
        >>> out = locked_dropout(out, 0.3)   # out[t] uses the same mask for every t
    """
    p = check_probability("p", p)
    check_rank("locked_dropout", x, [3], "(N, T, F)" if batch_first else "(T, N, F)")
    if not training or p == 0.0:
        return x
    time_dim = 1 if batch_first else 0
    shape = [1 if d == time_dim else size for d, size in enumerate(x.shape)]
    keep = _keep_mask(shape, p, x, generator)
    return x * _scaled_mask(keep, p, x.dtype, inverted=True)


def embedding_dropout(
    x: Tensor,
    ids: Tensor,
    p: float,
    *,
    training: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Drop whole word types: every occurrence of a token id in the batch shares one mask value.

    Gal & Ghahramani, "A Theoretically Grounded Application of Dropout in Recurrent Neural
    Networks", NeurIPS 2016, arXiv:1512.05287, section 4 (word embedding dropout; used in
    AWD-LSTM, arXiv:1708.02182). Dropping an embedding row is the same as zeroing the embedded
    vectors of every occurrence of that word, which is what this does on the embedded batch: one
    uniform is drawn per distinct id in ``ids`` and the id's vectors are zeroed when it is below
    ``p``; kept vectors are scaled by ``1 / (1 - p)``. Working on the embedded batch rather than
    on the weight keeps the embedding layer untouched (weight tying, sparse gradients still work).

    Use it right after the lookup::

        e = emb(ids)
        e = embedding_dropout(e, ids, 0.1)

    Args:
        x: embedded ids, shape ``(*ids.shape, D)``.
        ids: integer token ids that produced ``x``.
        p: probability of dropping a word type, in [0, 1).
        training: apply the mask (default ``True``); ``False`` returns ``x``.
        generator: optional ``torch.Generator`` for the mask.

    Shape:
        ``ids``: ``(*)``; ``x``: ``(*, D)``; output ``(*, D)``.

    Example:
        >>> emb = torch.nn.Embedding(100, 8)
        >>> ids = torch.randint(0, 100, (5, 3))
        >>> e = embedding_dropout(emb(ids), ids, 0.1)
    """
    p = check_probability("p", p)
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise ConfigError(f"ids must be an integer tensor, got dtype {ids.dtype}")
    if x.dim() != ids.dim() + 1 or tuple(x.shape[:-1]) != tuple(ids.shape):
        want = ", ".join(str(s) for s in (*ids.shape, "D"))
        raise ConfigError(
            f"embedding_dropout expects x of shape (*ids.shape, D) = ({want}) for ids of shape "
            f"{tuple(ids.shape)}, got x of shape {tuple(x.shape)}"
        )
    if not training or p == 0.0:
        return x
    types, position = torch.unique(ids, return_inverse=True)
    keep = _uniform(types.shape, x, generator) >= p
    mask = _scaled_mask(keep, p, x.dtype, inverted=True)[position]
    return x * mask.unsqueeze(-1)
