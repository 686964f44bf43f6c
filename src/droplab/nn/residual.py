"""A residual block with stochastic depth that skips dropped rows: :class:`ResidualDropPath`."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from droplab.functional.residual import drop_path_residual
from droplab.nn._base import StochasticLayer

__all__ = ["ResidualDropPath"]


class ResidualDropPath(StochasticLayer):
    """``x + DropPath(branch(x))`` with the branch computed on the kept examples only.

    Huang, Sun, Liu, Sedra, Weinberger, "Deep Networks with Stochastic Depth", ECCV 2016,
    arXiv:1603.09382. Same results as ``x + DropPath(p)(branch(x))`` under the same mask (see
    :func:`droplab.functional.drop_path_residual`), at about ``1 - p`` of the branch's compute
    in training. The branch must treat examples independently (no BatchNorm in training).

    Args:
        branch: the residual branch, mapping ``(M, *)`` to ``(M, *)``.
        p: probability of dropping a sample's branch, in [0, 1). Default 0.1.
        scale_by_keep: scale kept branch outputs by ``1 / (1 - p)`` (default ``True``).
        generator: optional ``torch.Generator`` the masks are drawn from.

    Shape:
        Input ``(N, *)``, output ``(N, *)``.

    Example:
        >>> block = ResidualDropPath(nn.Sequential(nn.Linear(64, 64), nn.ReLU()), p=0.3)
        >>> block(torch.randn(8, 64)).shape
        torch.Size([8, 64])
    """

    def __init__(
        self,
        branch: nn.Module,
        p: float = 0.1,
        scale_by_keep: bool = True,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(p, generator=generator)
        self.branch = branch
        self.scale_by_keep = bool(scale_by_keep)
        self.mean_preserving = self.scale_by_keep  # type: ignore[misc]

    def forward(self, x: Tensor) -> Tensor:
        return drop_path_residual(
            x,
            self.branch,
            self.p,
            scale_by_keep=self.scale_by_keep,
            training=self.training,
            generator=self.generator,
        )

    def extra_repr(self) -> str:
        return f"p={self.p}, scale_by_keep={self.scale_by_keep}"
