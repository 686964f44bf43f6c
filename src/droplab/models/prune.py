"""Prune the encoder blocks of a trained transformer: :func:`prune`."""

from __future__ import annotations

import copy
from collections.abc import Sequence

from torch import nn

from droplab.errors import ConfigError

__all__ = ["prune"]


def prune(model: nn.Module, keep: int | Sequence[int]) -> nn.Module:
    """A copy of ``model`` with only some of its residual blocks, for inference.

    Fan, Grave, Joulin, "Reducing Transformer Depth on Demand with Structured Dropout", ICLR
    2020, arXiv:1909.11556: a network trained with LayerDrop can run at a smaller depth without
    fine-tuning; the paper's strategy keeps *every other* layer. ``keep=n`` keeps ``n`` of the
    ``L`` blocks spread evenly, block ``floor(i * L / n)`` for ``i = 0..n-1`` (half the depth:
    blocks 0, 2, 4, ...); a sequence keeps those block indices. The copy's ``describe()`` lists
    the dropout layers of the kept blocks, and ``kept_blocks`` records which blocks remain.

    Args:
        model: a built transformer (any model with an ``nn.Sequential`` of residual ``blocks``).
        keep: number of blocks to keep (1..L), or the indices of the blocks to keep.

    Returns:
        A new model; ``model`` is unchanged.

    Example::

        half = prune(model, keep=model.spec.layers // 2)  # every other block
    """
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, nn.Sequential) or len(blocks) == 0:
        raise ConfigError(
            f"prune needs a model with residual blocks (a transformer), got {type(model).__name__}"
        )
    n = len(blocks)
    if isinstance(keep, int) and not isinstance(keep, bool):
        if not 1 <= keep <= n:
            raise ConfigError(f"keep must be in [1, {n}] (the model has {n} blocks), got {keep}")
        indices = [i * n // keep for i in range(keep)]
    elif isinstance(keep, Sequence) and not isinstance(keep, str) and keep:
        indices = list(keep)
        bad = [i for i in indices if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < n]
        if bad or len(set(indices)) != len(indices) or indices != sorted(indices):
            raise ConfigError(
                f"keep must list distinct block indices in [0, {n - 1}] in increasing order, "
                f"got {list(keep)}"
            )
    else:
        raise ConfigError(f"keep must be a number of blocks or a list of block indices, got {keep!r}")
    out = copy.deepcopy(model)
    out.blocks = nn.Sequential(*[out.blocks[i] for i in indices])
    if hasattr(out, "_placements"):
        live = {id(m) for m in out.modules()}
        pairs = [
            (pl, b)
            for pl, b in zip(out._placements, getattr(out, "_base_rates", [None] * len(out._placements)))
            if id(pl[1]) in live
        ]
        out._placements = [pl for pl, _ in pairs]
        out._base_rates = [b for _, b in pairs]
    out.kept_blocks = tuple(indices)
    return out
