"""LayerDrop: skip a whole residual block for the whole batch in training."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from droplab.functional.unit import drop_path
from droplab.nn._base import StochasticLayer

__all__ = ["LayerDrop"]


class LayerDrop(StochasticLayer):
    """Run ``block`` with probability ``1 - p`` per training step, else pass the input through.

    Fan, Grave, Joulin, "Reducing Transformer Depth on Demand with Structured Dropout", ICLR
    2020, arXiv:1909.11556. One draw per call decides for the whole batch (the paper's
    structured dropout of layers), so a dropped block costs nothing. Meant for residual blocks
    ``x -> x + f(x)``, where passing ``x`` through is dropping ``f``. Kept blocks are not
    rescaled (as in the paper), so the layer is not mean preserving; in eval mode it is the
    block. Trained this way, the network can be pruned to a sub-depth at inference without
    fine-tuning: :func:`droplab.models.prune`.

    Args:
        block: the residual block; it must return a tensor shaped like its first input.
        p: probability of skipping the block at a training step, in [0, 1). Default 0.2 (the
            paper's rate).
        generator: optional ``torch.Generator`` for the draws.

    Shape:
        Input ``(N, *)``, output ``(N, *)``.

    Example:
        >>> layer = LayerDrop(nn.Sequential(nn.Linear(8, 8)), p=0.2)
        >>> layer(torch.randn(4, 8)).shape
        torch.Size([4, 8])
    """

    mean_preserving = False

    def __init__(
        self, block: nn.Module, p: float = 0.2, *, generator: torch.Generator | None = None
    ) -> None:
        super().__init__(p, generator=generator)
        self.block = block

    def forward(self, x: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        if self.training and self.p > 0.0:
            # The same draw drop_path makes for one example: u >= p keeps the block.
            keep = drop_path(x.new_ones(1), self.p, scale_by_keep=False, generator=self.generator)
            if not bool(keep[0]):
                return x
        return self.block(x, *args, **kwargs)
