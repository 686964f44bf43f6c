"""Implicit ensembles in one network: Masksembles masks and BatchEnsemble rank-one fast weights.

Both split a batch of ``M x B`` rows into M groups of B, one per ensemble member (row
``i * B + j`` belongs to member ``i``): to get every member's prediction on B inputs, tile the
inputs M times (``x.repeat(M, 1, ...)``), as :func:`droplab.inference.mc_predict` does.

* Masksembles (Durasov, Bagautdinov, Baque, Fua, "Masksembles for Uncertainty Estimation",
  CVPR 2021, arXiv:2012.08334): a fixed set of M binary channel masks whose overlap the
  ``scale`` parameter controls, between one model (scale 1: every mask all ones) and nearly
  disjoint masks (a real ensemble of thinner networks); MC dropout draws random masks instead.
* BatchEnsemble (Wen, Tran, Ba, "BatchEnsemble: An Alternative Approach to Efficient Ensemble
  and Lifelong Learning", ICLR 2020, arXiv:2002.06715): member ``i``'s weight is
  ``W * (s_i r_i^T)`` (shared slow weight W times a rank-one fast weight), computed without
  forming it: ``y = ((x * r_i) W^T) * s_i + b_i``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from droplab._checks import check_positive_int
from droplab.errors import ConfigError, DataError

__all__ = ["masksembles_masks", "masksembles", "batch_ensemble_linear", "batch_ensemble_conv2d"]

_MAX_SCALE = 6.0  # as the reference code: larger scales need too many candidate positions


def _draw_masks(m: int, n: int, s: float, generator: torch.Generator | None) -> Tensor:
    total = int(m * s)
    rows = torch.zeros(n, total, dtype=torch.bool)
    for i in range(n):
        rows[i, torch.randperm(total, generator=generator)[:m]] = True
    return rows[:, rows.any(0)]  # drop positions no mask uses


def _masks_of_size(m: int, n: int, s: float, generator: torch.Generator | None) -> Tensor:
    expected = int(m * s * (1 - (1 - 1 / s) ** n))  # the mean number of used positions
    for _ in range(1000):
        masks = _draw_masks(m, n, s, generator)
        if masks.shape[1] == expected:
            return masks
    return masks


def masksembles_masks(
    channels: int, n: int, scale: float, *, generator: torch.Generator | None = None
) -> Tensor:
    """The M = ``n`` binary masks of a Masksembles layer over ``channels`` features.

    The reference algorithm of Durasov et al. (CVPR 2021, arXiv:2012.08334, official code
    ``generation_wrapper``): each mask keeps ``m`` of ``int(m * s)`` candidate positions drawn
    uniformly without replacement, positions no mask keeps are removed, and ``m`` and ``s``
    (``s`` within 20% of ``scale``, by bisection) are chosen so that exactly ``channels``
    positions remain. So every mask keeps the same number ``m`` of features, every feature is
    kept by at least one mask, and two masks share about ``m / s`` features: a larger ``scale``
    means thinner, less overlapping members. ``scale == 1`` gives ``n`` all-ones masks.

    Args:
        channels: number of features (channels) C, at least 10 unless ``scale == 1``.
        n: number of masks (ensemble members) M, at least 1.
        scale: overlap control, in ``[1, 6]``.
        generator: optional ``torch.Generator`` for the draws (default: torch's global one).

    Returns:
        A float32 tensor ``(n, channels)`` of zeros and ones.

    Raises:
        ConfigError: arguments out of range, or no masks of exactly ``channels`` features found.

    Example:
        >>> masks = masksembles_masks(64, 4, 2.0, generator=torch.Generator().manual_seed(0))
        >>> masks.shape, bool((masks.sum(1) == masks.sum(1)[0]).all())
        (torch.Size([4, 64]), True)
    """
    channels = check_positive_int("channels", channels)
    n = check_positive_int("n", n)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 1.0 <= scale <= _MAX_SCALE:
        raise ConfigError(f"scale must be in [1, {_MAX_SCALE:g}], got {scale!r}")
    if scale == 1.0:
        return torch.ones(n, channels)
    if channels < 10:
        raise ConfigError(f"channels must be at least 10 for scale > 1, got {channels}")
    m = int(channels / (scale * (1 - (1 - 1 / scale) ** n)))
    lo, hi = max(scale * 0.8, 1.0), scale * 1.2
    masks = None
    for _ in range(1000):
        mid = (lo + hi) / 2
        masks = _masks_of_size(m, n, mid, generator)
        if masks.shape[1] == channels:
            return masks.float()
        if masks.shape[1] > channels:
            hi = mid
        else:
            lo = mid
    raise ConfigError(
        f"found no {n} masks over exactly {channels} features at scale {scale}; try another scale"
    )


def masksembles(x: Tensor, masks: Tensor) -> Tensor:
    """Masksembles: multiply member ``i``'s rows of ``x`` by mask ``i`` along the channel axis.

    Durasov et al., CVPR 2021, arXiv:2012.08334. No rescaling of kept features (as the
    reference code); the masks act the same in training and at inference.

    Args:
        x: ``(M * B, C, *)``: M groups of B rows, group ``i`` for member ``i``.
        masks: ``(M, C)`` (from :func:`masksembles_masks`).

    Returns:
        ``x`` with features outside each member's mask set to zero.

    Shape:
        ``(M * B, C, *)`` -> the same.

    Example:
        >>> masks = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> masksembles(torch.ones(4, 2), masks)
        tensor([[1., 0.],
                [1., 0.],
                [0., 1.],
                [0., 1.]])
    """
    if masks.dim() != 2:
        raise DataError(f"masks must have shape (M, C), got {tuple(masks.shape)}")
    n, c = masks.shape
    if x.dim() < 2 or x.shape[1] != c:
        raise DataError(f"x must have shape (M * B, {c}, ...), got {tuple(x.shape)}")
    if x.shape[0] % n:
        raise DataError(
            f"the batch ({x.shape[0]} rows) must split into {n} equal member groups; tile the "
            f"inputs {n} times (x.repeat({n}, ...)) to get every member's prediction"
        )
    groups = x.reshape(n, x.shape[0] // n, *x.shape[1:])
    shape = (n, 1, c) + (1,) * (x.dim() - 2)
    return (groups * masks.to(dtype=x.dtype, device=x.device).view(shape)).reshape(x.shape)


def _members(x: Tensor, r: Tensor, what: str) -> int:
    m = r.shape[0]
    if x.shape[0] % m:
        raise DataError(
            f"{what}: the batch ({x.shape[0]} rows) must split into {m} equal member groups; tile "
            f"the inputs {m} times (x.repeat({m}, ...)) to get every member's prediction"
        )
    return m


def batch_ensemble_linear(
    x: Tensor, weight: Tensor, r: Tensor, s: Tensor, bias: Tensor | None = None
) -> Tensor:
    """BatchEnsemble linear layer: member ``i`` uses ``weight * (s_i r_i^T)`` and bias ``b_i``.

    Wen, Tran, Ba, ICLR 2020, arXiv:2002.06715, eq. (1)-(2): ``y = ((x * r_i) W^T) * s_i + b_i``,
    the same as ``F.linear(x, W * outer(s_i, r_i), b_i)`` without forming M weight matrices.

    Args:
        x: ``(M * B, in)``; rows ``i * B`` to ``(i + 1) * B - 1`` go to member ``i``.
        weight: the shared slow weight ``(out, in)``.
        r: input fast weights ``(M, in)``.
        s: output fast weights ``(M, out)``.
        bias: per-member biases ``(M, out)``, or ``None``.

    Returns:
        ``(M * B, out)``.

    Shape:
        ``(M * B, in)`` -> ``(M * B, out)``.

    Example:
        >>> y = batch_ensemble_linear(torch.randn(6, 4), torch.randn(3, 4), torch.ones(2, 4), torch.ones(2, 3))
        >>> y.shape
        torch.Size([6, 3])
    """
    if x.dim() != 2 or x.shape[1] != weight.shape[1]:
        raise DataError(f"x must have shape (M * B, {weight.shape[1]}), got {tuple(x.shape)}")
    m = _members(x, r, "batch_ensemble_linear")
    xs = x.reshape(m, -1, x.shape[1]) * r.unsqueeze(1)
    y = F.linear(xs, weight) * s.unsqueeze(1)
    if bias is not None:
        y = y + bias.unsqueeze(1)
    return y.reshape(x.shape[0], weight.shape[0])


def batch_ensemble_conv2d(
    x: Tensor,
    weight: Tensor,
    r: Tensor,
    s: Tensor,
    bias: Tensor | None = None,
    *,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
) -> Tensor:
    """BatchEnsemble 2-d convolution: input channels scaled by ``r_i``, output channels by ``s_i``.

    Wen, Tran, Ba, ICLR 2020, arXiv:2002.06715: the rank-one factor of a convolution acts on
    its input and output channels, ``y = conv(x * r_i, W) * s_i + b_i``.

    Args:
        x: ``(M * B, C_in, H, W)``; group ``i`` of B rows goes to member ``i``.
        weight: shared kernel ``(C_out, C_in, kH, kW)``.
        r: ``(M, C_in)``. s: ``(M, C_out)``. bias: ``(M, C_out)`` or ``None``.
        stride, padding: as in ``F.conv2d``.

    Returns:
        ``(M * B, C_out, H', W')``.

    Shape:
        ``(M * B, C_in, H, W)`` -> ``(M * B, C_out, H', W')``.

    Example:
        >>> y = batch_ensemble_conv2d(torch.randn(4, 1, 8, 8), torch.randn(3, 1, 3, 3), torch.ones(2, 1), torch.ones(2, 3))
        >>> y.shape
        torch.Size([4, 3, 6, 6])
    """
    if x.dim() != 4 or x.shape[1] != weight.shape[1]:
        raise DataError(f"x must have shape (M * B, {weight.shape[1]}, H, W), got {tuple(x.shape)}")
    m = _members(x, r, "batch_ensemble_conv2d")
    b = x.shape[0] // m
    xs = (x.reshape(m, b, *x.shape[1:]) * r.view(m, 1, -1, 1, 1)).reshape(x.shape)
    y = F.conv2d(xs, weight, stride=stride, padding=padding)
    y = y.reshape(m, b, *y.shape[1:]) * s.view(m, 1, -1, 1, 1)
    if bias is not None:
        y = y + bias.view(m, 1, -1, 1, 1)
    return y.reshape(x.shape[0], *y.shape[2:])
