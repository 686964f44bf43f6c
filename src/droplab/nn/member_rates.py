"""Dropout rates as data: per-member rates for a population that trains many models as one.

A population (:mod:`droplab.sweep.population`) stacks the weights and buffers of many copies of
one model and trains them with ``torch.func.vmap``. :func:`rates_as_buffers` gives every
droplab unit and channel dropout layer of a model a ``rate`` buffer holding its ``p``; the
layer then reads its rate from that buffer (:mod:`droplab.functional.member_rates`), so when
the copies are stacked each member trains with its own rate, and models that differ only in
their rates form one population. :func:`structure_repr` is the description of a module that
leaves those rates out: two models with equal ``structure_repr`` over all their modules stack.

The buffer is not persistent: ``state_dict`` keys and checkpoints do not change. Outside
``vmap`` the layer behaves exactly as before (it calls the float function with its rate).
"""

from __future__ import annotations

import re

import torch
from torch import nn

from droplab.nn.dropout import AlphaDropout, Dropout, FeatureAlphaDropout, SpatialDropout

__all__ = ["RATE_LAYERS", "rates_as_buffers", "structure_repr"]

#: The layers whose rate can be a per-member buffer (the layers :func:`droplab.nn.convert`
#: produces).
RATE_LAYERS: tuple[type[nn.Module], ...] = (Dropout, SpatialDropout, AlphaDropout, FeatureAlphaDropout)

_P = re.compile(r"^p=[^,]*")


def rates_as_buffers(model: nn.Module) -> list[str]:
    """Give every layer of :data:`RATE_LAYERS` in ``model`` a ``rate`` buffer equal to its ``p``.

    In place; calling it again refreshes the buffers from ``p``. The buffer is a non-persistent
    0-dim float64 tensor (float64 holds the Python float ``p`` exactly, so a member computes the
    same bits as the layer with that float). Srivastava et al., JMLR 15, 2014 (dropout);
    the population engine this serves stacks models with ``torch.func.stack_module_state``.

    Args:
        model: any ``nn.Module``.

    Returns:
        The module paths of the layers that got a buffer, in module order.

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 4), Dropout(0.3))
        >>> rates_as_buffers(net)
        ['1']
        >>> net[1].rate
        tensor(0.3000, dtype=torch.float64)
    """
    names = []
    for name, module in model.named_modules():
        if isinstance(module, RATE_LAYERS):
            module.register_buffer("rate", torch.tensor(float(module.p), dtype=torch.float64), persistent=False)
            names.append(name)
    return names


def structure_repr(module: nn.Module) -> str:
    """``module.extra_repr()``, with the rate shown as ``p=<member>`` where it is a buffer.

    Example:
        >>> layer = Dropout(0.3)
        >>> _ = rates_as_buffers(layer)
        >>> structure_repr(layer)
        "p=<member>, mode='inverted', shared_axes=()"
    """
    text = module.extra_repr()
    if isinstance(module, RATE_LAYERS) and "rate" in module._buffers:
        text = _P.sub("p=<member>", text)
    return text
