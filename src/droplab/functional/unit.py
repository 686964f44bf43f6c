"""Unit-wise dropout: Bernoulli (inverted or classic), spatial, Gaussian, alpha, feature alpha,
drop path, and additive Gaussian noise.

Every Bernoulli mask here is drawn the same way: ``u = torch.rand(shape, generator=...)`` and
``drop = u < p``. For one generator state the masks are therefore *nested* across rates (a unit
dropped at p=0.2 is also dropped at p=0.5), which the sweeps use as common random numbers.
Uniforms (and the normals of Gaussian dropout) are drawn in float32 whatever the input's dtype,
so float16/bfloat16/float64 inputs get exactly the masks a float32 input would, and bfloat16's
8-bit mantissa does not quantize the rate.

Large tensors take a faster path in :func:`dropout` (inverted mode, no shared axes, at least
``COUNTER_MIN_NUMEL`` elements, torch.compile available, a dense memory layout, not inside a
user's torch.compile or torch.jit.trace): the mask is a counter-based hash of a seed drawn from
the same generator and the element's index in memory order (``droplab.functional.counter``),
so a channels_last input keeps its format without a copy.
It is the same for any thread count, nested across rates in the same way (``u < p``), and
regenerated in backward instead of stored. Below the threshold, a compiled call costs more than
it saves (measured: break-even near 64K elements), so torch's generator is used.
``DROPLAB_NO_COMPILE=1`` turns the counter path off (it is slower than torch when not compiled).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from droplab._checks import (
    check_choice,
    check_nonneg_float,
    check_probability,
    check_rank,
    check_shared_axes,
)
from droplab.errors import ConfigError
from droplab.functional.random import rand, randn
from droplab.functional.counter import counter_backend, counter_dropout, draw_seed

__all__ = [
    "dropout",
    "spatial_dropout",
    "gaussian_dropout",
    "alpha_dropout",
    "drop_path",
    "feature_alpha_dropout",
    "gaussian_noise",
    "batched_dropout_params",
    "batched_dropout_mask",
    "DROPOUT_MODES",
    "DROP_PATH_MODES",
]

#: The two forms of Bernoulli dropout; the first is the default everywhere in droplab.
DROPOUT_MODES: tuple[str, ...] = ("inverted", "classic")
#: Stochastic depth: one draw per sample (timm, torchvision ``"row"``) or one per batch.
DROP_PATH_MODES: tuple[str, ...] = ("row", "batch")

# Inputs at least this large use the counter-hash path (see the module docstring).
COUNTER_MIN_NUMEL = 1 << 17

# SELU constants (Klambauer et al. 2017, eq. 2): alpha' = -lambda * alpha is the value SELU
# saturates to for large negative inputs, the natural "off" value of a self-normalizing unit.
_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946
_ALPHA_PRIME = -_SELU_SCALE * _SELU_ALPHA


def _uniform(shape: Sequence[int], like: Tensor, generator: torch.Generator | None) -> Tensor:
    """Uniforms in [0, 1) of ``shape`` on ``like``'s device (float32, see module docstring)."""
    return rand(shape, generator, like.device)


def _keep_mask(
    shape: Sequence[int], p: float, like: Tensor, generator: torch.Generator | None
) -> Tensor:
    """Boolean keep mask with ``P(keep) = 1 - p``, drawn as ``u >= p`` so masks nest across p."""
    return _uniform(shape, like, generator) >= p


def _scaled_mask(keep: Tensor, p: float, dtype: torch.dtype, *, inverted: bool) -> Tensor:
    mask = keep.to(dtype)
    # Divide rather than multiply by 1/(1-p): 0/(1-p) stays 0 even where 1/(1-p) overflows.
    return mask.div_(1.0 - p) if inverted else mask


def _normalize_axes(shared_axes: Sequence[int], x: Tensor) -> tuple[int, ...]:
    ndim = x.dim()
    out: list[int] = []
    for axis in shared_axes:
        if not -ndim <= axis < ndim:
            raise ConfigError(
                f"shared_axes entry {axis} is out of range for a {ndim}D input of shape "
                f"{tuple(x.shape)} (expected an axis in [{-ndim}, {ndim - 1}])"
            )
        axis = axis % ndim
        if axis in out:
            raise ConfigError(
                f"shared_axes {tuple(shared_axes)} names dimension {axis} more than once "
                f"for a {ndim}D input of shape {tuple(x.shape)}"
            )
        out.append(axis)
    return tuple(out)


def dropout(
    x: Tensor,
    p: float,
    *,
    mode: str = "inverted",
    shared_axes: int | Sequence[int] = (),
    training: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Bernoulli dropout of units, in the inverted (default) or the classic form.

    Srivastava, Hinton, Krizhevsky, Sutskever, Salakhutdinov, "Dropout: A Simple Way to Prevent
    Neural Networks from Overfitting", JMLR 15, 2014. Each unit is dropped with probability
    ``p``. The two modes are equal in expectation and differ only in where the keep probability
    ``1 - p`` is applied:

    * ``"inverted"`` (default, torch's form): training ``y = x * r / (1 - p)``, eval ``y = x``.
    * ``"classic"`` (the paper's form): training ``y = x * r``, eval ``y = (1 - p) * x``
      (the paper scales the outgoing weights by the keep probability at test time).

    Args:
        x: input tensor of any shape.
        p: probability of dropping a unit, in [0, 1).
        mode: ``"inverted"`` (default) or ``"classic"``.
        shared_axes: dimensions along which one mask value is shared (the mask has size 1
            there), e.g. ``shared_axes=1`` on ``(N, T, F)`` drops the same features at every
            time step. Negative dimensions count from the end. Default ``()``: independent units.
        training: apply the random mask (default ``True``); ``False`` gives the eval output.
        generator: optional ``torch.Generator`` for the mask; ``None`` uses torch's global one.

    Returns:
        A tensor like ``x``. In inverted mode, at ``p == 0`` or when not training, ``x`` itself.

    Shape:
        Input ``(*)``, output ``(*)``, the same shape.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> y = dropout(torch.ones(4, 8), 0.5, generator=g)   # entries are 0 or 2
        >>> y = dropout(torch.ones(4, 8), 0.5, mode="classic", training=False)  # all 0.5
    """
    p = check_probability("p", p)
    check_choice("mode", mode, DROPOUT_MODES)
    axes = _normalize_axes(check_shared_axes(shared_axes), x)
    if not training:
        return x if mode == "inverted" or p == 0.0 else x * (1.0 - p)
    if p == 0.0:
        return x
    if mode == "inverted" and not axes and _use_counter(x):
        order = _memory_order(x)
        if order is not None:
            return _counter_in_memory_order(x, p, draw_seed(generator), order)
    shape = [1 if d in axes else size for d, size in enumerate(x.shape)]
    keep = _keep_mask(shape, p, x, generator)
    return x * _scaled_mask(keep, p, x.dtype, inverted=mode == "inverted")


def _memory_order(x: Tensor) -> tuple[int, ...] | None:
    """Dimensions of ``x`` from the slowest to the fastest in memory, if ``x`` is dense.

    ``x.permute(order)`` is then contiguous: ``(0, 2, 3, 1)`` for a channels_last image batch.
    ``None`` for overlapping or gapped views (slices, expands), which take torch's generator.
    """
    order = tuple(sorted(range(x.dim()), key=lambda d: -x.stride(d)))  # stable: ties keep order
    return order if x.permute(order).is_contiguous() else None


def _counter_in_memory_order(x: Tensor, p: float, seed: int, order: tuple[int, ...]) -> Tensor:
    # The counter kernels run over memory, row-major: on the permuted view that is contiguous,
    # so a channels_last input costs no copy and its output is channels_last again. Element
    # indices therefore follow memory order (a channels_last and a contiguous copy of the same
    # values get different masks, each deterministic for its seed).
    inverse = tuple(sorted(range(len(order)), key=order.__getitem__))
    return counter_dropout(x.permute(order), p, seed).permute(inverse)


def _use_counter(x: Tensor) -> bool:
    """Whether :func:`dropout` takes the counter-hash path for ``x`` (see module docstring)."""
    # Under vmap/grad transforms tensors are functorch wrappers; the autograd.Function of the
    # counter path has no vmap rule, so those keep torch's generator. Inside a user's
    # torch.compile or torch.jit.trace the mask comes from torch's random ops, which the tracer
    # records as ops: the counter path's seed is a Python int drawn per call, which dynamo
    # would specialise on (a recompile per step) and jit.trace would freeze into a constant.
    if torch.compiler.is_compiling() or torch.jit.is_tracing():
        return False
    return (
        x.numel() >= COUNTER_MIN_NUMEL
        and x.is_floating_point()
        and not torch._C._functorch.is_functorch_wrapped_tensor(x)
        and counter_backend() == "compiled"
    )


def batched_dropout_params(p: Tensor, *, mode: str = "inverted") -> tuple[Tensor, Tensor, Tensor]:
    """Thresholds and scales of Bernoulli dropout for many members, each with its own rate.

    The rule of :func:`dropout` (Srivastava et al., JMLR 15, 2014) for a stack of ``K`` members
    trained at once (the sweep's batched MLP, :class:`droplab.sweep.MLPNet`): a unit is kept iff
    its float32 uniform ``u >= p``, with ``p`` rounded to float32 as in :func:`dropout`, so one
    member's draws give masks nested across rates. Kept units are scaled by ``1 / (1 - p)``
    (``"inverted"``: computed in float64 and rounded once to float32, as torch's dropout and
    ``droplab.functional.counter.counter_dropout`` scale; :func:`dropout`'s generator path
    divides by ``float32(1 - p)`` instead, which differs in the last bit for about a quarter of
    rates, none of 0.05, 0.1, 0.2, ..., 0.9) or by 1 (``"classic"``, which scales by ``1 - p``
    in eval mode instead). Apply them with :func:`batched_dropout_mask`.

    Args:
        p: per-member rates in [0, 1), float64 (any shape, e.g. ``(K,)``, or ``(K, 1, W)`` with
            one rate per column). Not checked: the caller validated the rates.
        mode: ``"inverted"`` (default) or ``"classic"``.

    Returns:
        ``(threshold, scale, eval_scale)``, float32 tensors of ``p``'s shape: keep iff
        ``u >= threshold``; kept units times ``scale`` in training; outputs times
        ``eval_scale`` in eval mode (ones in inverted mode).

    Example:
        >>> thr, scale, _ = batched_dropout_params(torch.tensor([0.0, 0.5], dtype=torch.float64))
        >>> scale.tolist()
        [1.0, 2.0]
    """
    check_choice("mode", mode, DROPOUT_MODES)
    p = p.to(torch.float64)
    threshold = p.float()
    if mode == "inverted":
        return threshold, (1.0 / (1.0 - p)).float(), torch.ones_like(threshold)
    return threshold, torch.ones_like(threshold), (1.0 - p).float()


def batched_dropout_mask(
    u: Tensor, threshold: Tensor, scale: Tensor, *, out: Tensor | None = None
) -> Tensor:
    """Keep-and-scale masks of many members at once: ``(u >= threshold) * scale``.

    ``threshold`` and ``scale`` come from :func:`batched_dropout_params` and broadcast against
    the uniforms ``u`` (float32 in [0, 1), e.g. ``(K, B, W)`` against ``(K, 1, W)``). With the
    uniforms :func:`dropout` draws for member ``k`` and a classic-mode member, or an inverted
    one at a rate whose two roundings of ``1 / (1 - p)`` agree (see
    :func:`batched_dropout_params`), ``x * mask[k]`` equals :func:`dropout`'s output bit for bit.

    Args:
        u: uniforms, float32.
        threshold: float32 thresholds, broadcastable to ``u``.
        scale: float32 scales of kept units, broadcastable to ``u``.
        out: where to write the masks; ``out=u`` builds them in the uniforms' own memory (two
            passes, no new tensor).

    Shape:
        ``u``: ``(*)``; result: ``(*)`` (``u``'s shape).

    Example:
        >>> thr, scale, _ = batched_dropout_params(torch.tensor([[0.5]], dtype=torch.float64))
        >>> batched_dropout_mask(torch.tensor([[0.2, 0.7]]), thr, scale).tolist()
        [[0.0, 2.0]]
    """
    if out is None:
        return torch.ge(u, threshold).to(scale.dtype).mul_(scale)
    return torch.ge(u, threshold, out=out).mul_(scale)


def spatial_dropout(
    x: Tensor, p: float, *, training: bool = True, generator: torch.Generator | None = None
) -> Tensor:
    """Drop whole feature maps: one draw per (example, channel), inverted scaling.

    Tompson, Goroshin, Jain, LeCun, Bregler, "Efficient Object Localization Using Convolutional
    Networks", CVPR 2015 (SpatialDropout). Adjacent activations of a feature map are strongly
    correlated, so dropping single pixels barely regularizes; dropping the channel does.

    Args:
        x: input of layout ``(N, C, L)``, ``(N, C, H, W)`` or ``(N, C, D, H, W)``.
        p: probability of dropping a channel, in [0, 1).
        training: apply the mask (default ``True``); ``False`` returns ``x``.
        generator: optional ``torch.Generator`` for the mask.

    Shape:
        Input ``(N, C, *spatial)`` with 1 to 3 spatial dimensions; output the same shape.

    Example:
        >>> y = spatial_dropout(torch.ones(2, 16, 8, 8), 0.2)  # whole 8x8 maps are 0 or 1.25
    """
    p = check_probability("p", p)
    # The layout is fixed by rank and never guessed: torch's Dropout2d silently changed its
    # meaning on 3D input (pytorch/pytorch#69801), treating (C, H, W) as (N, C, L) or vice versa.
    check_rank(
        "spatial_dropout", x, [3, 4, 5], "(N, C, L), (N, C, H, W) or (N, C, D, H, W)"
    )
    if not training or p == 0.0:
        return x
    shape = [x.shape[0], x.shape[1]] + [1] * (x.dim() - 2)
    keep = _keep_mask(shape, p, x, generator)
    return x * _scaled_mask(keep, p, x.dtype, inverted=True)


def gaussian_dropout(
    x: Tensor, p: float, *, training: bool = True, generator: torch.Generator | None = None
) -> Tensor:
    """Multiplicative Gaussian noise ``x * N(1, p / (1 - p))``; identity at inference.

    Srivastava et al., "Dropout: A Simple Way to Prevent Neural Networks from Overfitting",
    JMLR 15, 2014, section 10: noise with the mean and variance of inverted Bernoulli dropout at
    rate ``p`` (standard deviation ``sqrt(p / (1 - p))``). The same generator state gives the same
    standard normal draws at every ``p``, so noise at two rates differs only by its scale.

    Args:
        x: input tensor of any shape.
        p: equivalent Bernoulli drop probability, in [0, 1).
        training: add the noise (default ``True``); ``False`` returns ``x``.
        generator: optional ``torch.Generator`` for the noise.

    Shape:
        Input ``(*)``, output ``(*)``.

    Example:
        >>> y = gaussian_dropout(torch.ones(3, 5), 0.5)  # multiplier ~ N(1, 1)
    """
    p = check_probability("p", p)
    if not training or p == 0.0:
        return x
    std = math.sqrt(p / (1.0 - p))
    z = randn(x.shape, generator, x.device)
    return x * z.mul_(std).add_(1.0).to(x.dtype)


def alpha_dropout(
    x: Tensor,
    p: float,
    *,
    shared_axes: int | Sequence[int] = (),
    training: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Alpha dropout for self-normalizing networks (SELU): keeps zero mean and unit variance.

    Klambauer, Unterthiner, Mayr, Hochreiter, "Self-Normalizing Neural Networks", NeurIPS 2017,
    arXiv:1706.02515. Dropped units are set to ``alpha' = -lambda * alpha`` (SELU's negative
    saturation value) instead of 0, then the affine map ``a * y + b`` with
    ``a = ((1 - p) * (1 + p * alpha'^2)) ** -0.5`` and ``b = -a * p * alpha'`` restores mean 0 and
    variance 1 *for standardized inputs*. For other inputs the expectation is not ``x``.

    Args:
        x: input tensor of any shape (meant for SELU activations with mean 0, variance 1).
        p: probability of dropping a unit, in [0, 1).
        shared_axes: dimensions along which one mask value is shared, like Keras'
            ``noise_shape`` (``shared_axes=1`` on ``(N, T, F)`` is ``noise_shape=(N, 1, F)``).
            Negative dimensions count from the end. Default ``()``: independent units.
        training: apply the mask (default ``True``); ``False`` returns ``x``.
        generator: optional ``torch.Generator`` for the mask.

    Shape:
        Input ``(*)``, output ``(*)``.

    Example:
        >>> y = alpha_dropout(torch.randn(64, 32), 0.1)  # mean ~0, variance ~1
        >>> y = alpha_dropout(torch.randn(8, 20, 32), 0.1, shared_axes=1)  # same at every step
    """
    p = check_probability("p", p)
    axes = _normalize_axes(check_shared_axes(shared_axes), x)
    if not training or p == 0.0:
        return x
    shape = [1 if d in axes else size for d, size in enumerate(x.shape)]
    return _alpha_affine(x, _keep_mask(shape, p, x, generator).to(x.dtype), p)


def _alpha_affine(x: Tensor, keep: Tensor, p: float | Tensor) -> Tensor:
    """``a * (keep ? x : alpha') + b``: alpha dropout's output for a 0/1 ``keep`` mask (Klambauer
    et al. 2017, section 3); ``p`` a float or a 0-dim tensor (one rate per population member)."""
    a = ((1.0 - p) * (1.0 + p * _ALPHA_PRIME**2)) ** -0.5
    b = -a * p * _ALPHA_PRIME
    # x is the first operand of a product so the output keeps x's memory format (torch.where
    # takes the mask's, a contiguous one).
    return x * (keep * a) + (keep * (-a * _ALPHA_PRIME) + (a * _ALPHA_PRIME + b))


def drop_path(
    x: Tensor,
    p: float,
    *,
    mode: str = "row",
    scale_by_keep: bool = True,
    training: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Stochastic depth: drop a residual branch for whole examples (or for the whole batch).

    Huang, Sun, Liu, Sedra, Weinberger, "Deep Networks with Stochastic Depth", ECCV 2016,
    arXiv:1603.09382, in the per-sample form of timm's ``drop_path``: apply it to the output of
    a residual branch, ``x = x + drop_path(branch(x), p)``, so a dropped sample skips the block.
    ``mode="batch"`` is torchvision's ``stochastic_depth(..., mode="batch")``: one draw drops
    the branch for every sample of the batch at once (the paper's original form).

    Args:
        x: branch output whose first dimension is the batch.
        p: probability of dropping a sample's branch, in [0, 1).
        mode: ``"row"`` (default): one draw per sample; ``"batch"``: one draw for the batch.
        scale_by_keep: divide kept samples by ``1 - p`` (default ``True``) so the expectation is
            unchanged; ``False`` leaves them unscaled (the paper then scales at test time).
        training: apply the mask (default ``True``); ``False`` returns ``x``.
        generator: optional ``torch.Generator`` for the mask.

    Shape:
        Input ``(N, *)``, output ``(N, *)``.

    Example:
        >>> y = drop_path(torch.ones(8, 3, 4, 4), 0.25)  # each sample all 0 or all 4/3
        >>> y = drop_path(torch.ones(8, 3, 4, 4), 0.25, mode="batch")  # all 0 or all 4/3
    """
    p = check_probability("p", p)
    check_choice("mode", mode, DROP_PATH_MODES)
    if x.dim() < 1:
        raise ConfigError(
            "drop_path expects an input with a batch dimension (N, *), "
            f"got 0D input of shape {tuple(x.shape)}"
        )
    if not training or p == 0.0:
        return x
    shape = [x.shape[0] if mode == "row" else 1] + [1] * (x.dim() - 1)
    keep = _keep_mask(shape, p, x, generator)
    return x * _scaled_mask(keep, p, x.dtype, inverted=scale_by_keep)


def feature_alpha_dropout(
    x: Tensor, p: float, *, training: bool = True, generator: torch.Generator | None = None
) -> Tensor:
    """Alpha dropout of whole feature maps: one draw per (example, channel), as torch's.

    Klambauer, Unterthiner, Mayr, Hochreiter, "Self-Normalizing Neural Networks", NeurIPS 2017,
    arXiv:1706.02515, applied channel-wise like SpatialDropout (Tompson et al., CVPR 2015):
    :func:`alpha_dropout` with the spatial dimensions shared, which is
    ``torch.nn.functional.feature_alpha_dropout``. A dropped channel is set to SELU's saturation
    value, then the affine map of alpha dropout restores mean 0 and variance 1.

    Args:
        x: input of layout ``(N, C, L)``, ``(N, C, H, W)`` or ``(N, C, D, H, W)``.
        p: probability of dropping a channel, in [0, 1).
        training: apply the mask (default ``True``); ``False`` returns ``x``.
        generator: optional ``torch.Generator`` for the mask.

    Shape:
        Input ``(N, C, *spatial)`` with 1 to 3 spatial dimensions; output the same shape.

    Example:
        >>> y = feature_alpha_dropout(torch.randn(2, 16, 8, 8), 0.1)  # whole maps dropped
    """
    p = check_probability("p", p)
    # As spatial_dropout: the layout is fixed by rank, never guessed.
    check_rank(
        "feature_alpha_dropout", x, [3, 4, 5], "(N, C, L), (N, C, H, W) or (N, C, D, H, W)"
    )
    spatial = tuple(range(2, x.dim()))
    return alpha_dropout(x, p, shared_axes=spatial, training=training, generator=generator)


def gaussian_noise(
    x: Tensor, stddev: float, *, training: bool = True, generator: torch.Generator | None = None
) -> Tensor:
    """Additive zero-mean Gaussian noise ``x + N(0, stddev**2)`` in training; identity in eval.

    Keras' ``GaussianNoise`` (training with input noise: Sietsma & Dow, "Creating artificial
    neural networks that generalize", Neural Networks 4(1), 1991; Bishop, "Training with noise is
    equivalent to Tikhonov regularization", Neural Computation 7(1), 1995). Unlike
    :func:`gaussian_dropout` the noise is added, not multiplied, and its scale does not depend
    on ``x``. Normals are drawn in float32 whatever ``x``'s dtype.

    Args:
        x: input tensor of any shape.
        stddev: standard deviation of the noise, a finite number >= 0.
        training: add the noise (default ``True``); ``False`` returns ``x``.
        generator: optional ``torch.Generator`` for the noise.

    Shape:
        Input ``(*)``, output ``(*)``.

    Example:
        >>> y = gaussian_noise(torch.zeros(3, 5), 0.1)  # entries ~ N(0, 0.01)
    """
    stddev = check_nonneg_float("stddev", stddev)
    if not training or stddev == 0.0:
        return x
    z = randn(x.shape, generator, x.device)
    return x + z.mul_(stddev).to(x.dtype)
