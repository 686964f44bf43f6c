"""DropBlock layers (1d, 2d, 3d) with the paper's optional linear schedule of the drop rate.

Ghiasi, Lin, Le, "DropBlock: A regularization method for convolutional networks",
NeurIPS 2018, arXiv:1810.12890.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch

from droplab._checks import check_bool, check_nonneg_int, check_positive_int
from droplab.functional.structured import drop_block1d, drop_block2d, drop_block3d
from droplab.nn._base import StochasticLayer

__all__ = ["DropBlock1d", "DropBlock2d", "DropBlock3d"]


class _DropBlockNd(StochasticLayer):
    # Not mean preserving unit by unit: the paper normalises by the realised kept count of the
    # whole tensor, and border units are dropped less often than interior ones, so
    # E[train output] differs from the input per unit (the total over the tensor of a constant
    # input is preserved exactly).
    mean_preserving: ClassVar[bool] = False
    _fn: ClassVar[Callable[..., torch.Tensor]]

    schedule_step: torch.Tensor

    def __init__(
        self,
        p: float = 0.1,
        block_size: int = 7,
        shared_channels: bool = False,
        schedule_steps: int = 0,
        *,
        with_noise: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(p, generator=generator)
        self.block_size = check_positive_int("block_size", block_size)
        self.shared_channels = bool(shared_channels)
        self.with_noise = check_bool("with_noise", with_noise)
        self.schedule_steps = check_nonneg_int("schedule_steps", schedule_steps)
        # A buffer, so the schedule's progress is saved and restored with the model.
        self.register_buffer("schedule_step", torch.zeros((), dtype=torch.long))

    @property
    def current_p(self) -> float:
        """Drop rate at the schedule's current step (``p`` when there is no schedule)."""
        if self.schedule_steps == 0:
            return self.p
        return self.p * int(self.schedule_step) / self.schedule_steps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.schedule_steps and int(self.schedule_step) < self.schedule_steps:
            self.schedule_step += 1
        return type(self)._fn(
            x,
            self.current_p,
            self.block_size,
            shared_channels=self.shared_channels,
            with_noise=self.with_noise,
            training=self.training,
            generator=self.generator,
        )

    def extra_repr(self) -> str:
        parts = [f"p={self.p}", f"block_size={self.block_size}"]
        if self.shared_channels:
            parts.append("shared_channels=True")
        if self.with_noise:
            parts.append("with_noise=True")
        if self.schedule_steps:
            parts.append(
                f"scheduled {int(self.schedule_step)}/{self.schedule_steps} "
                f"(current p={self.current_p:.4g})"
            )
        return ", ".join(parts)


_ARGS_DOC = """
    Args:
        p: target fraction of units to drop, in [0, 1). Default 0.1 (the paper's keep_prob 0.9).
        block_size: side of the dropped blocks. Default 7. In training a block larger than the
            input is clamped to its smallest spatial size (timm, torchvision); eval mode is the
            identity whatever the input's size.
        shared_channels: one mask per example for all channels (default: one per channel).
        schedule_steps: if > 0, the drop rate grows linearly from ``p / schedule_steps`` on the
            first training call to ``p`` on call ``schedule_steps`` and stays there (the paper
            anneals keep_prob linearly from 1). The counter is the buffer ``schedule_step``,
            saved in ``state_dict``; eval calls do not advance it. Default 0 (no schedule).
        with_noise: fill dropped units with standard normal noise, kept units unscaled (timm's
            ``with_noise``; keyword only). Default ``False``.
        generator: optional ``torch.Generator`` for the masks (keyword only).

    Not mean preserving unit by unit: kept units are scaled by ``count / count_ones`` of the
    realised mask over the whole tensor, as in the paper.
"""


class DropBlock1d(_DropBlockNd):
    __doc__ = (
        """DropBlock for sequences ``(N, C, L)``: drops runs of ``block_size`` positions.

    Ghiasi, Lin, Le, NeurIPS 2018, arXiv:1810.12890; delegates to
    :func:`droplab.functional.drop_block1d`.
"""
        + _ARGS_DOC
        + """
    Shape:
        ``(N, C, L)`` in and out.

    Example:
        >>> layer = DropBlock1d(0.1, block_size=5)
        >>> y = layer(torch.randn(4, 8, 100))
"""
    )
    _fn = staticmethod(drop_block1d)


class DropBlock2d(_DropBlockNd):
    __doc__ = (
        """DropBlock for feature maps ``(N, C, H, W)``: drops ``block_size``-sided squares.

    Ghiasi, Lin, Le, "DropBlock: A regularization method for convolutional networks",
    NeurIPS 2018, arXiv:1810.12890; delegates to :func:`droplab.functional.drop_block2d`.
"""
        + _ARGS_DOC
        + """
    Shape:
        ``(N, C, H, W)`` in and out.

    Example:
        >>> layer = DropBlock2d(0.1, block_size=7, schedule_steps=1000)
        >>> y = layer(torch.randn(2, 16, 32, 32))
        >>> layer                      # DropBlock2d(p=0.1, block_size=7, scheduled 1/1000 ...)
"""
    )
    _fn = staticmethod(drop_block2d)


class DropBlock3d(_DropBlockNd):
    __doc__ = (
        """DropBlock for volumes ``(N, C, D, H, W)``: drops ``block_size``-sided cubes.

    Ghiasi, Lin, Le, NeurIPS 2018, arXiv:1810.12890; delegates to
    :func:`droplab.functional.drop_block3d`.
"""
        + _ARGS_DOC
        + """
    Shape:
        ``(N, C, D, H, W)`` in and out.

    Example:
        >>> layer = DropBlock3d(0.1, block_size=3)
        >>> y = layer(torch.randn(2, 4, 8, 16, 16))
"""
    )
    _fn = staticmethod(drop_block3d)
