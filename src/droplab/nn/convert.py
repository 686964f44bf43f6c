"""Swap torch's dropout modules in a user's model for droplab's layers of the same behaviour.

:func:`convert` is the bridge from a model written with ``torch.nn.Dropout`` & co. to droplab:
after it, the model's rates are droplab layers (seedable with a generator, found by the MC and
audit tools, set by rate schedules, and stackable across the members of a population sweep).
"""

from __future__ import annotations

import torch
from torch import nn

from droplab.errors import ConfigError
from droplab.nn.dropout import AlphaDropout, Dropout, FeatureAlphaDropout, SpatialDropout

__all__ = ["convert", "CONVERTED_TYPES"]

#: The torch modules :func:`convert` replaces, and the droplab layer each becomes. Exact types
#: only: a subclass may override ``forward``, so it is left as it is.
CONVERTED_TYPES: dict[type[nn.Module], type[nn.Module]] = {
    nn.Dropout: Dropout,
    nn.Dropout1d: SpatialDropout,
    nn.Dropout2d: SpatialDropout,
    nn.Dropout3d: SpatialDropout,
    nn.AlphaDropout: AlphaDropout,
    nn.FeatureAlphaDropout: FeatureAlphaDropout,
}


def _replacement(
    module: nn.Module, path: str, generator: torch.Generator | None
) -> nn.Module | None:
    target = CONVERTED_TYPES.get(type(module))
    if target is None:
        return None
    p = float(module.p)
    if p >= 1.0:
        where = f" at {path!r}" if path else ""
        raise ConfigError(
            f"cannot convert {type(module).__name__}(p={module.p}){where}: it drops every unit, "
            f"and droplab's layers take p in [0, 1); remove the layer or lower its rate"
        )
    new = target(p, generator=generator)
    new.train(module.training)
    return new


def convert(model: nn.Module, *, generator: torch.Generator | None = None) -> nn.Module:
    """Replace torch's dropout modules in ``model`` by droplab's equivalents, in place.

    Like torch's own converters (``nn.SyncBatchNorm.convert_sync_batchnorm``), the model is
    changed in place and returned; when ``model`` is itself a dropout module, the new layer is
    returned (a module cannot replace itself). Each layer keeps its rate and its train/eval
    mode and behaves the same: the identity in eval mode, the same distribution in training:

    ===============================================  ===============================================
    torch                                            droplab
    ===============================================  ===============================================
    ``nn.Dropout(p)``                                :class:`~droplab.nn.Dropout` ``(p)`` (inverted)
    ``nn.Dropout1d/2d/3d(p)``                        :class:`~droplab.nn.SpatialDropout` ``(p)``
    ``nn.AlphaDropout(p)``                           :class:`~droplab.nn.AlphaDropout` ``(p)``
    ``nn.FeatureAlphaDropout(p)``                    :class:`~droplab.nn.FeatureAlphaDropout` ``(p)``
    ===============================================  ===============================================

    Differences, all on inputs torch itself warns about or on options that change no output:
    ``inplace=True`` is dropped (droplab returns a new tensor; the values are the same);
    channel dropout takes batched input only, ``(N, C, L)``, ``(N, C, H, W)`` or
    ``(N, C, D, H, W)``, fixed by rank (torch's ``Dropout2d`` reinterprets 3-D input with a
    warning, pytorch/pytorch#69801), and raises on anything else. The masks are drawn from
    droplab's stream (``generator``, else torch's global one), so a converted model does not
    reproduce the exact masks of the original for a seed, only their distribution. Subclasses
    of these modules are left alone (they may override ``forward``).

    Dropout: Srivastava, Hinton, Krizhevsky, Sutskever, Salakhutdinov, JMLR 15, 2014; channel
    dropout: Tompson et al., CVPR 2015; alpha dropout: Klambauer et al., NeurIPS 2017,
    arXiv:1706.02515.

    Args:
        model: any ``nn.Module``.
        generator: optional ``torch.Generator`` every new layer draws its masks from. Default
            ``None``: torch's global generator.

    Returns:
        ``model`` (changed in place), or the new layer if ``model`` is a dropout module.

    Raises:
        ConfigError: a dropout module has ``p == 1`` (it zeroes every unit; droplab's layers
            take ``p`` in [0, 1)); the message names its path in the model.

    Example:
        >>> net = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Dropout(0.3), nn.Linear(8, 2))
        >>> net = convert(net)
        >>> type(net[2]).__name__, net[2].p
        ('Dropout', 0.3)
    """
    if not isinstance(model, nn.Module):
        raise ConfigError(f"convert expects an nn.Module, got {type(model).__name__}")
    root = _replacement(model, "", generator)
    if root is not None:
        return root
    # Collect first, replace after: named_modules must not see the tree change under it.
    found = []
    for parent_path, parent in model.named_modules():
        for name, child in parent.named_children():
            path = f"{parent_path}.{name}" if parent_path else name
            new = _replacement(child, path, generator)
            if new is not None:
                found.append((parent, name, new))
    for parent, name, new in found:
        setattr(parent, name, new)
    return model
