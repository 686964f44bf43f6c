"""DropBlock: drop contiguous blocks of a feature map instead of independent units.

Ghiasi, Lin, Le, "DropBlock: A regularization method for convolutional networks",
NeurIPS 2018, arXiv:1810.12890. One N-d implementation serves the 1d, 2d and 3d functions.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from droplab._checks import check_bool, check_positive_int, check_probability, check_rank
from droplab.errors import ConfigError
from droplab.functional.random import rand, randn

__all__ = ["drop_block1d", "drop_block2d", "drop_block3d", "drop_block_gamma"]

_POOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_LAYOUT = {1: "(N, C, L)", 2: "(N, C, H, W)", 3: "(N, C, D, H, W)"}


def drop_block_gamma(p: float, block_size: int, spatial: tuple[int, ...]) -> float:
    """Seed rate of DropBlock so that about a fraction ``p`` of the map is dropped.

    The paper's Eq. (1), generalised from 2d to d dimensions::

        gamma = p * prod(size) / (block_size**d * prod(size - block_size + 1))

    Seeds fall only in the valid region (``size - block_size + 1`` positions per axis, where a
    full block fits), and each covers ``block_size**d`` units; ``gamma`` makes the expected
    number of covered units, counted with multiplicity, exactly ``p * prod(size)``. Blocks can
    overlap, so the expected dropped fraction is slightly *below* ``p`` (by about
    ``(gamma * block_size**d)**2 / 2``; see the tests).

    Args:
        p: target drop fraction, in [0, 1).
        block_size: side of the square (cubic) block.
        spatial: the spatial sizes of the input, e.g. ``(H, W)``.

    Example:
        >>> drop_block_gamma(0.1, 7, (32, 32))   # 0.1 * 1024 / (49 * 26 * 26)
        0.003091...
    """
    valid = [s - block_size + 1 for s in spatial]
    if min(valid) < 1:
        raise ConfigError(
            f"block_size={block_size} does not fit the spatial size {tuple(spatial)}; "
            f"block_size must be <= {min(spatial)}"
        )
    return p * math.prod(spatial) / (block_size ** len(spatial) * math.prod(valid))


def _drop_block_nd(
    x: torch.Tensor,
    p: float,
    block_size: int,
    dims: int,
    *,
    shared_channels: bool,
    with_noise: bool,
    training: bool,
    generator: torch.Generator | None,
) -> torch.Tensor:
    name = f"drop_block{dims}d"
    p = check_probability("p", p)
    block_size = check_positive_int("block_size", block_size)
    with_noise = check_bool("with_noise", with_noise)
    check_rank(name, x, (dims + 2,), _LAYOUT[dims])
    # Eval is the identity whatever the input's size; an empty input has nothing to drop.
    if not training or p == 0 or x.numel() == 0:
        return x

    spatial = tuple(x.shape[2:])
    # A block larger than the input is clamped to the smallest spatial size, as timm and
    # torchvision do (a square/cubic block, so on (3, 10) a block of 7 becomes 3x3).
    block_size = min(block_size, *spatial)
    gamma = drop_block_gamma(p, block_size, spatial)
    n, c = x.shape[:2]
    valid = tuple(s - block_size + 1 for s in spatial)
    # Uniforms in float32 whatever x's dtype (see functional/random.py), and the mask is built
    # in float32: float16 would overflow counting kept units (65504) and bfloat16 would round it.
    u = rand((n, 1 if shared_channels else c, *valid), generator, x.device)
    seeds = (u < gamma).to(torch.float32)
    # A seed at valid position i drops [i, i + block_size - 1] along each axis, so unit j is
    # dropped iff some seed lies in [j - block_size + 1, j]. Zero-padding block_size - 1 on both
    # sides and max-pooling with an unpadded window of block_size gives exactly that, for odd
    # and even block sizes alike (symmetric "same" padding shifts even blocks by one).
    pad = [block_size - 1] * (2 * dims)
    keep = 1 - _POOL[dims](F.pad(seeds, pad), kernel_size=block_size, stride=1)
    if with_noise:
        # timm's with_noise: dropped units take standard normal noise, kept units stay as they
        # are (no rescaling). Drawn after the mask, so the mask is the one without noise.
        noise = randn(x.shape, generator, x.device)
        return x * keep.to(x.dtype) + (noise * (1 - keep)).to(x.dtype)
    # Paper: A = A * count(M) / count_ones(M). Normalising by the realised kept count (not by
    # the expected one) keeps the tensor's total activation fixed; all-dropped gives zeros.
    # clamp_min(1): when nothing is kept the mask is all zeros anyway, so the output is zeros.
    # Counted as an integer: exact at any size (a float16 sum overflowed: issue 20).
    scale = keep.numel() / keep.count_nonzero().clamp_min(1)
    # x first: the product keeps x's memory format (channels_last stays channels_last).
    return x * (keep * scale).to(x.dtype)


def drop_block1d(
    x: torch.Tensor,
    p: float,
    block_size: int,
    *,
    shared_channels: bool = False,
    with_noise: bool = False,
    training: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """DropBlock on sequences: drop runs of ``block_size`` consecutive positions.

    Ghiasi, Lin, Le, NeurIPS 2018, arXiv:1810.12890 (the 1d case of the 2d method).
    See :func:`drop_block2d` for the algorithm and the arguments.

    Shape:
        ``(N, C, L)`` in and out.

    Example:
        >>> y = drop_block1d(torch.randn(4, 8, 100), 0.1, 5)
    """
    return _drop_block_nd(
        x, p, block_size, 1, shared_channels=shared_channels, with_noise=with_noise,
        training=training, generator=generator,
    )


def drop_block2d(
    x: torch.Tensor,
    p: float,
    block_size: int,
    *,
    shared_channels: bool = False,
    with_noise: bool = False,
    training: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """DropBlock: drop ``block_size x block_size`` squares of a feature map (inverted scaling).

    Ghiasi, Lin, Le, "DropBlock: A regularization method for convolutional networks",
    NeurIPS 2018, arXiv:1810.12890.

    Block seeds are drawn with rate ``gamma`` (:func:`drop_block_gamma`) only where a whole
    block fits, then grown to full blocks; kept units are scaled by
    ``count(mask) / count_ones(mask)`` over the whole tensor, as in the paper (all-dropped gives
    zeros). Masks are drawn as ``u = torch.rand(...)``, seed where ``u < gamma``, so for the same
    draws the dropped set at a lower ``p`` is contained in the one at a higher ``p``.

    Uniforms are drawn and the mask is built in float32 whatever the input's dtype, so a
    float16, bfloat16 or float64 input gets the float32 input's mask and rate; the output has
    the input's dtype and memory format. An empty input (no channels, say) is returned as is.

    Because the normalisation uses the realised kept count, the output is not mean preserving
    unit by unit (units near the border are dropped less often and so come out scaled up on
    average); it preserves the sum over the whole tensor of a constant input exactly.

    Args:
        x: input feature map.
        p: target fraction of units to drop, in [0, 1) (the paper's ``1 - keep_prob``).
        block_size: side of the square block. Odd and even sizes both give blocks of exactly
            ``block_size`` units per side. In training, a block larger than the input is clamped
            to the smallest spatial size (as timm and torchvision do); eval ignores it.
        shared_channels: draw one mask per example shared by all channels (timm's
            ``batchwise`` option spirit); default ``False`` draws one per (example, channel)
            like torchvision.
        with_noise: fill dropped units with standard normal noise and leave kept units
            unscaled, as timm's ``with_noise=True`` (default ``False``: zeros and rescaling).
            The mask is the one drawn without noise from the same generator state.
        training: apply the mask; ``False`` returns ``x`` itself (whatever its size).
        generator: optional ``torch.Generator`` for the mask (and the noise).

    Shape:
        ``(N, C, H, W)`` in and out.

    Example:
        >>> y = drop_block2d(torch.randn(2, 16, 32, 32), 0.1, 7)
    """
    return _drop_block_nd(
        x, p, block_size, 2, shared_channels=shared_channels, with_noise=with_noise,
        training=training, generator=generator,
    )


def drop_block3d(
    x: torch.Tensor,
    p: float,
    block_size: int,
    *,
    shared_channels: bool = False,
    with_noise: bool = False,
    training: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """DropBlock on volumes: drop ``block_size``-sided cubes.

    Ghiasi, Lin, Le, NeurIPS 2018, arXiv:1810.12890 (the 3d case of the 2d method).
    See :func:`drop_block2d` for the algorithm and the arguments.

    Shape:
        ``(N, C, D, H, W)`` in and out.

    Example:
        >>> y = drop_block3d(torch.randn(2, 4, 8, 16, 16), 0.1, 3)
    """
    return _drop_block_nd(
        x, p, block_size, 3, shared_channels=shared_channels, with_noise=with_noise,
        training=training, generator=generator,
    )
