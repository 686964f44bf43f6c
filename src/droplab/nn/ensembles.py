"""Implicit-ensemble layers: Masksembles and BatchEnsemble (see :mod:`droplab.functional.ensembles`).

Both split a batch of ``M x B`` rows into M member groups (``members`` = M) and act the same in
training and in eval mode: they are ensembles at inference, not training-only noise, so they
are not :class:`~droplab.nn.StochasticLayer` s and :func:`~droplab.inference.mc_mode` leaves
them alone. :func:`droplab.inference.mc_predict` recognises a model holding them (attribute
``splits_batch_into_members``), tiles the inputs M times and returns the members' mean and
disagreement.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from droplab._checks import check_choice, check_positive_int
from droplab.functional.ensembles import (
    batch_ensemble_conv2d,
    batch_ensemble_linear,
    masksembles,
    masksembles_masks,
)

__all__ = ["Masksembles", "BatchEnsembleLinear", "BatchEnsembleConv2d"]

INITS = ("random_sign", "ones")


class Masksembles(nn.Module):
    """Masksembles: M fixed binary channel masks with controlled overlap, one per member.

    Durasov, Bagautdinov, Baque, Fua, "Masksembles for Uncertainty Estimation", CVPR 2021,
    arXiv:2012.08334. The masks are drawn once, at construction (a buffer, saved with the
    model); a batch of ``M x B`` rows is split into M groups and group ``i`` is multiplied by
    mask ``i`` along the channel axis (no rescaling, as the reference code), in training and in
    eval mode alike. ``scale`` moves the layer between one model (1.0: all masks all ones) and
    an ensemble of nearly disjoint sub-networks (up to 6.0); MC dropout is its random-mask limit.

    Args:
        channels: number of channels (features) C.
        members: number of masks M (default 4).
        scale: overlap control in ``[1, 6]`` (default 2.0: two masks share about half of
            their features).
        generator: optional ``torch.Generator`` for drawing the masks.

    Shape:
        ``(M * B, C, *)`` -> the same; the batch must split into M equal groups.

    Example:
        >>> layer = Masksembles(16, members=4, scale=2.0, generator=torch.Generator().manual_seed(0))
        >>> layer(torch.randn(8, 16)).shape
        torch.Size([8, 16])
    """

    splits_batch_into_members = True

    def __init__(
        self,
        channels: int,
        members: int = 4,
        scale: float = 2.0,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.channels = check_positive_int("channels", channels)
        self.members = check_positive_int("members", members)
        self.scale = float(scale) if not isinstance(scale, bool) else scale
        self.register_buffer("masks", masksembles_masks(channels, members, scale, generator=generator))

    def forward(self, x: Tensor) -> Tensor:
        return masksembles(x, self.masks)

    def extra_repr(self) -> str:
        kept = int(self.masks[0].sum())
        return f"channels={self.channels}, members={self.members}, scale={self.scale}, kept={kept}"


def _fast_weights(members: int, size: int, init: str, generator: torch.Generator | None) -> Tensor:
    if init == "ones":
        return torch.ones(members, size)
    bits = torch.randint(0, 2, (members, size), generator=generator)
    return bits.float() * 2 - 1


class _BatchEnsemble(nn.Module):
    splits_batch_into_members = True

    def _init(self, in_size: int, out_size: int, members: int, bias: bool, init: str, generator):
        self.members = check_positive_int("members", members)
        self.init = check_choice("init", init, INITS)
        self.r = nn.Parameter(_fast_weights(members, in_size, init, generator))
        self.s = nn.Parameter(_fast_weights(members, out_size, init, generator))
        if bias:
            bound = 1 / math.sqrt(self.weight[0].numel())
            b = torch.rand(members, out_size, generator=generator) * 2 * bound - bound
            self.bias = nn.Parameter(b)
        else:
            self.register_parameter("bias", None)

    def member_weight(self, i: int) -> Tensor:
        """Member ``i``'s full weight ``W * (s_i r_i^T)`` (for checks; forward never forms it)."""
        shape = (-1, 1) + (1,) * (self.weight.dim() - 2)
        return self.weight * self.s[i].view(shape) * self.r[i].view((1, -1) + (1,) * (self.weight.dim() - 2))


class BatchEnsembleLinear(_BatchEnsemble):
    """BatchEnsemble linear layer: member ``i``'s weight is ``W * (s_i r_i^T)``.

    Wen, Tran, Ba, "BatchEnsemble: An Alternative Approach to Efficient Ensemble and Lifelong
    Learning", ICLR 2020, arXiv:2002.06715. One shared slow weight W ``(out, in)`` plus, per
    member, rank-one fast weights r_i ``(in,)``, s_i ``(out,)`` and a bias: M members for the
    memory of about one. A batch of ``M x B`` rows is split into M groups, one per member.

    Args:
        in_features, out_features: as ``nn.Linear``.
        members: ensemble size M (default 4).
        bias: per-member biases (default True).
        init: fast-weight initialisation, ``"random_sign"`` (default; each entry +1 or -1 with
            probability 1/2, so the members differ from the start) or ``"ones"``.
        generator: optional ``torch.Generator`` for the initial values.

    Shape:
        ``(M * B, in_features)`` -> ``(M * B, out_features)``.

    Example:
        >>> layer = BatchEnsembleLinear(8, 3, members=4)
        >>> layer(torch.randn(4 * 5, 8)).shape
        torch.Size([20, 3])
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        members: int = 4,
        *,
        bias: bool = True,
        init: str = "random_sign",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.in_features = check_positive_int("in_features", in_features)
        self.out_features = check_positive_int("out_features", out_features)
        bound = 1 / math.sqrt(in_features)  # nn.Linear's default range
        w = torch.rand(out_features, in_features, generator=generator) * 2 * bound - bound
        self.weight = nn.Parameter(w)
        self._init(in_features, out_features, members, bias, init, generator)

    def forward(self, x: Tensor) -> Tensor:
        return batch_ensemble_linear(x, self.weight, self.r, self.s, self.bias)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"members={self.members}, bias={self.bias is not None}, init={self.init!r}"
        )


class BatchEnsembleConv2d(_BatchEnsemble):
    """BatchEnsemble 2-d convolution: rank-one fast weights on input and output channels.

    Wen, Tran, Ba, ICLR 2020, arXiv:2002.06715: member ``i``'s kernel is
    ``W[o, c] * s_i[o] * r_i[c]``, computed as ``conv(x * r_i, W) * s_i + b_i``.

    Args:
        in_channels, out_channels, kernel_size, stride, padding: as ``nn.Conv2d`` (square
            kernel given as an int).
        members: ensemble size M (default 4).
        bias, init, generator: as :class:`BatchEnsembleLinear`.

    Shape:
        ``(M * B, C_in, H, W)`` -> ``(M * B, C_out, H', W')``.

    Example:
        >>> layer = BatchEnsembleConv2d(1, 4, 3, members=2, padding=1)
        >>> layer(torch.randn(6, 1, 8, 8)).shape
        torch.Size([6, 4, 8, 8])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        members: int = 4,
        *,
        stride: int = 1,
        padding: int = 0,
        bias: bool = True,
        init: str = "random_sign",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.in_channels = check_positive_int("in_channels", in_channels)
        self.out_channels = check_positive_int("out_channels", out_channels)
        self.kernel_size = check_positive_int("kernel_size", kernel_size)
        self.stride, self.padding = stride, padding
        fan_in = in_channels * kernel_size * kernel_size
        bound = 1 / math.sqrt(fan_in)
        shape = (out_channels, in_channels, kernel_size, kernel_size)
        self.weight = nn.Parameter(torch.rand(shape, generator=generator) * 2 * bound - bound)
        self._init(in_channels, out_channels, members, bias, init, generator)

    def forward(self, x: Tensor) -> Tensor:
        return batch_ensemble_conv2d(
            x, self.weight, self.r, self.s, self.bias, stride=self.stride, padding=self.padding
        )

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, out_channels={self.out_channels}, "
            f"kernel_size={self.kernel_size}, members={self.members}, stride={self.stride}, "
            f"padding={self.padding}, bias={self.bias is not None}, init={self.init!r}"
        )
