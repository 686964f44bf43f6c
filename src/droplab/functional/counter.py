"""Counter-based dropout masks: a pure function of (seed, element index), never stored.

The uniform of element ``i`` is a hash of ``(seed, i)``, so a mask costs no generator state, is
the same for any thread count, and backward regenerates it from the integer seed instead of
keeping a byte per element. Counter-based generation follows Salmon, Moraes, Dror & Shaw (2011),
"Parallel random numbers: as easy as 1, 2, 3" (SC'11); the mixer is two rounds of Wellons'
``lowbias32`` (hash-prospector, 2018). Dropout itself: Srivastava et al. (2014), JMLR 15;
Hinton et al. (2012), arXiv:1207.0580.

Definition (the contract the tests check):

* ``(k0, k1)``: 64 bits of ``splitmix64(seed)``, computed in Python.
* ``h(i) = mix(mix(i + k0) ^ k1)`` on 32-bit words, ``u(i) = (h(i) >> 8) / 2**24`` in [0, 1).
* element ``i`` is dropped iff ``u(i) < p`` (compared exactly), so masks drawn with one seed are
  nested across rates: common random numbers for rate sweeps at no cost.

Element indices are row-major logical positions (memory layout does not matter), counted from
``offset``. With a 1-D ``seed`` of length K (a vectorised population of K members, ``x`` of shape
``(K, ...)``), member ``k`` uses ``seed[k]`` and counts its own elements from ``offset``: members
with equal seeds draw identical uniforms whatever their rates.

The kernel runs through ``torch.compile`` (compiled lazily, once, with dynamic shapes) and
falls back to eager torch ops if compilation is unavailable or fails; both give bitwise identical
results. Set the environment variable ``DROPLAB_NO_COMPILE=1`` to force the eager path (the
first compilation in a process takes tens of seconds; eager is slower per call than
``torch.nn.functional.dropout`` on large tensors).

Outputs of 32 MiB and more (on Linux CPU) are written into their own anonymous mapping advised
for transparent huge pages instead of memory from malloc, which would fault in every 4 KiB page
of a fresh output: see ``_fresh_output``.
"""

from __future__ import annotations

import functools
import math
import mmap
import os
import sys
import types
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor

from droplab._checks import check_nonneg_int, check_probability
from droplab.errors import ConfigError

__all__ = [
    "counter_uniform",
    "counter_dropout",
    "counter_threshold",
    "draw_seed",
    "counter_backend",
    "U_BITS",
]

_MASK32 = 0xFFFFFFFF
_MASK64 = 0xFFFFFFFFFFFFFFFF
_TWO32 = 1 << 32
#: Bits of a counter uniform: every uniform is a multiple of ``2**-U_BITS``, exact in float32,
#: so a threshold compare against :func:`counter_threshold` is exact.
U_BITS = 24
_MAX_ROW = 1 << 30  # a kernel launch counts within int32 range with room to spare


def _i32(value: int) -> int:
    """The signed int32 whose two's-complement bits are the low 32 bits of ``value``."""
    value &= _MASK32
    return value - _TWO32 if value >= 1 << 31 else value


# lowbias32 multipliers (Wellons), as signed int32 so torch keeps the ops in int32.
_M1 = _i32(0x7FEB352D)
_M2 = _i32(0x846CA68B)


# --------------------------------------------------------------------------------------------
# Kernels: pure torch ops on int32 (wrap-around multiply, arithmetic shift masked to a logical
# one), written so inductor fuses each into one vectorised loop with the index made in-loop.
# --------------------------------------------------------------------------------------------


def _mix(h: Tensor) -> Tensor:
    h = h ^ ((h >> 16) & 0xFFFF)
    h = h * _M1
    h = h ^ ((h >> 15) & 0x1FFFF)
    h = h * _M2
    return h ^ ((h >> 16) & 0xFFFF)


def _bits24(m: int, prm: Tensor) -> Tensor:
    """24-bit draws of an (R, m) grid; ``prm[:, :3]`` holds each row's (start, k0, k1)."""
    idx = torch.arange(m, dtype=torch.int32, device=prm.device) + prm[:, 0:1]
    return (_mix(_mix(idx + prm[:, 1:2]) ^ prm[:, 2:3]) >> 8) & 0xFFFFFF


def _uniform_kernel(m: int, prm: Tensor) -> Tensor:
    return _bits24(m, prm).to(torch.float32) * (2.0**-U_BITS)


def _dropout_kernel(x: Tensor, prm: Tensor, scale: Tensor, out: Tensor) -> Tensor:
    # ``prm[:, 3]`` is the row's threshold. x * 0 (not a select) keeps NaN/inf propagating
    # exactly as in torch's dropout. Written into ``out`` (compiled: stored there directly, no
    # temporary) so that the caller chooses the output's memory (see _fresh_output).
    return out.copy_(x * torch.where(_bits24(x.shape[1], prm) < prm[:, 3:4], 0.0, scale))


# --------------------------------------------------------------------------------------------
# Compilation: lazy, cached, silent fallback to eager.
# --------------------------------------------------------------------------------------------

_EAGER = {"uniform": _uniform_kernel, "dropout": _dropout_kernel}
# Below this many elements a call runs single-threaded: a kernel compiled for large inputs
# forks OpenMP threads on every call, which costs milliseconds on a busy machine.
_SERIAL_BELOW = 1 << 16
_compiled: dict[tuple[str, bool, bool], Callable[..., Tensor]] = {}
_compile_failed = False


def _compile_disabled() -> bool:
    return os.environ.get("DROPLAB_NO_COMPILE", "") not in ("", "0")


def counter_backend() -> str:
    """Return ``"compiled"`` or ``"eager"``: the path the counter kernels take in this process.

    ``"eager"`` when the environment variable ``DROPLAB_NO_COMPILE=1`` is set or an earlier
    compilation failed (the failure is remembered, silently, for the rest of the process). Both
    paths give bitwise identical results; only their speed differs.

    Example:
        >>> counter_backend() in ("compiled", "eager")
        True
    """
    return "eager" if _compile_failed or _compile_disabled() else "compiled"


def _own_code(fn: Callable[..., Tensor], tag: str) -> Callable[..., Tensor]:
    """A copy of ``fn`` with its own code object.

    Dynamo keeps one cache (and one recompile budget) per code object; a copy per variant
    keeps the variants from evicting each other's graphs or exhausting that budget.
    """
    code = fn.__code__.replace(co_name=f"{fn.__name__}_{tag}")
    return types.FunctionType(code, fn.__globals__, code.co_name, fn.__defaults__, fn.__closure__)


def _run(name: str, numel: int, rows: int, *args: Any) -> Tensor:
    global _compile_failed
    eager = _EAGER[name]
    # Inside a user's torch.compile trace the eager ops are traced and fused by the outer graph;
    # inside torch.jit.trace a nested torch.compile cannot run (it fails, and that failure must
    # not switch the whole process to eager), so the eager ops are recorded instead.
    if counter_backend() == "eager" or torch.compiler.is_compiling() or torch.jit.is_tracing():
        return eager(*args)
    key = (name, numel < _SERIAL_BELOW, rows > 1)  # one row is specialised apart by dynamo
    fn = _compiled.get(key)
    try:
        if fn is None:
            tag = f"{'serial' if key[1] else 'threaded'}_{'rows' if key[2] else 'row'}"
            options = {"cpp.threads": 1} if key[1] else None
            fn = torch.compile(_own_code(eager, tag), dynamic=True, options=options)
            _compiled[key] = fn
        return fn(*args)
    except Exception:  # no compiler, no C++ toolchain, unsupported device: use eager for good
        _compile_failed = True
        return eager(*args)


# --------------------------------------------------------------------------------------------
# Output memory.
# --------------------------------------------------------------------------------------------

# glibc's malloc serves requests above its largest mmap threshold (32 MiB on 64-bit) with fresh
# mmap()ed pages, every time, so a large out-of-place output pays a page fault per 4 KiB page:
# at 16M float32 elements that costs more than the dropout kernel itself (a 64 MiB torch.empty
# plus copy took 33.6 ms, the same copy into memory mapped with MADV_HUGEPAGE 8.6 ms). Below the
# threshold malloc reuses freed memory and huge pages would only add cost (measured slower).
_HUGE_MIN_BYTES = 32 << 20


@functools.lru_cache(maxsize=1)
def _huge_pages_available() -> bool:
    """Linux with transparent huge pages not switched off, and Python exposing MADV_HUGEPAGE."""
    if not sys.platform.startswith("linux") or not hasattr(mmap, "MADV_HUGEPAGE"):
        return False
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return "[never]" not in f.read()
    except OSError:
        return False


def _fresh_output(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
    """An uninitialised contiguous tensor for a kernel's output.

    Large CPU outputs live in their own anonymous mapping advised for transparent huge pages,
    faulted in 2 MiB at a time; the mapping is unmapped when the tensor is freed. Such a tensor's
    storage cannot grow (``resize_`` to a larger size raises), like any ``torch.frombuffer``
    tensor; everything else behaves as usual.
    """
    numel = math.prod(shape)
    nbytes = numel * dtype.itemsize
    if (
        device.type != "cpu"
        or nbytes < _HUGE_MIN_BYTES
        or torch.compiler.is_compiling()  # inside a user's compiled graph, which plans memory
        or not _huge_pages_available()
    ):
        return torch.empty(shape, dtype=dtype, device=device)
    try:
        buf = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        buf.madvise(mmap.MADV_HUGEPAGE)
    except (OSError, ValueError):  # e.g. a seccomp sandbox refusing madvise: plain memory
        return torch.empty(shape, dtype=dtype, device=device)
    return torch.frombuffer(buf, dtype=dtype, count=numel).view(shape)


# --------------------------------------------------------------------------------------------
# Seeds and argument handling.
# --------------------------------------------------------------------------------------------


def counter_threshold(p: float) -> float:
    """The uniform threshold of the counter masks at rate ``p``: drop iff ``u < threshold``.

    ``ceil(p * 2**24) / 2**24``, a float32-exact number. Comparing a counter uniform (a multiple
    of ``2**-24``, see :data:`U_BITS`) against it equals comparing it against ``p`` exactly,
    which a compare against ``float32(p)`` does not (``p`` rounds); :func:`counter_dropout`'s
    kernels compare the 24-bit draws against the same threshold. For code that hashes the
    draws once (:func:`counter_uniform`) and thresholds them for several rates.

    Args:
        p: drop probability in [0, 1] (not checked: the caller's rates are).

    Example:
        >>> u = counter_uniform(1000, seed=3)
        >>> torch.equal(counter_dropout(torch.ones(1000), 0.3, 3) != 0, u >= counter_threshold(0.3))
        True
    """
    return math.ceil(p * 2**U_BITS) * 2.0**-U_BITS


def _splitmix64(z: int) -> int:
    z = (z + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def _keys(seed: int, hi: int) -> tuple[int, int]:
    """Round keys for ``seed`` and the high 32 bits ``hi`` of the element counter."""
    state = seed if hi == 0 else _splitmix64(seed ^ _splitmix64(hi))
    k = _splitmix64(state)
    return _i32(k), _i32(k >> 32)


def draw_seed(generator: torch.Generator | None = None) -> int:
    """Draw a 63-bit seed for the counter kernels from ``generator`` (or torch's global RNG).

    One draw advances the generator once, so code that takes its masks from a seeded generator
    (or from ``torch.manual_seed``) stays deterministic when it moves to the counter path.

    Args:
        generator: a ``torch.Generator``; ``None`` (default) uses the global generator.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> draw_seed(g) == draw_seed(torch.Generator().manual_seed(0))
        True
    """
    device = generator.device if generator is not None else "cpu"
    return int(torch.randint(0, 2**63 - 1, (), generator=generator, device=device).item())


def _seeds(seed: Any) -> tuple[list[int], bool]:
    """``(seeds, per_member)`` from an int, a 0-dim or a 1-D integer tensor."""
    if isinstance(seed, Tensor):
        if seed.dtype.is_floating_point or seed.dtype.is_complex or seed.dtype == torch.bool:
            raise ConfigError(f"seed must be an integer tensor, got dtype {seed.dtype}")
        if seed.dim() > 1:
            raise ConfigError(
                f"seed must be an int, a 0-dim or a 1-D tensor (one per member), "
                f"got shape {tuple(seed.shape)}"
            )
        values, per_member = [int(v) for v in seed.reshape(-1).tolist()], seed.dim() == 1
        if per_member and not values:
            raise ConfigError("seed must have at least one entry, got an empty tensor")
    else:
        values, per_member = [seed], False
    for v in values:
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < 2**64:
            raise ConfigError(f"seed must be an integer in [0, 2**64), got {v!r}")
    return values, per_member


def _rates(p: Any) -> tuple[list[float], bool]:
    if isinstance(p, Tensor):
        if not p.dtype.is_floating_point:
            raise ConfigError(f"p must be a floating-point tensor, got dtype {p.dtype}")
        if p.dim() > 1:
            raise ConfigError(
                f"p must be a number, a 0-dim or a 1-D tensor (one per member), "
                f"got shape {tuple(p.shape)}"
            )
        values, per_member = p.detach().reshape(-1).tolist(), p.dim() == 1
        if per_member and not values:
            raise ConfigError("p must have at least one entry, got an empty tensor")
    else:
        values, per_member = [p], False
    return [check_probability("p", v) for v in values], per_member


def _check_members(what: str, k: int, shape: Sequence[int]) -> None:
    if len(shape) == 0 or shape[0] != k:
        raise ConfigError(
            f"{what} has {k} entries (one per member), so the input needs shape (K={k}, ...), "
            f"got shape {tuple(shape)}"
        )


# --------------------------------------------------------------------------------------------
# Launch: rows of a (R, M) view, each with its own seed and counter start.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """Everything that defines a mask, one entry per row, as Python numbers (no tensors)."""

    seeds: tuple[int, ...]
    bases: tuple[int, ...]  # counter of the row's first element
    thresholds: tuple[int, ...] = ()  # drop iff the 24-bit draw < threshold
    scales: tuple[float, ...] = ()


def _segments(base: int, m: int) -> list[tuple[int, int]]:
    """Column ranges of a row whose counters share their high 32 bits and fit int32."""
    out, a = [], 0
    while a < m:
        b = min(m, a + _TWO32 - ((base + a) & _MASK32), a + _MAX_ROW)
        out.append((a, b))
        a = b
    return out


@functools.lru_cache(maxsize=64)
def _scale_column(scales: tuple[float, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
    # Rates rarely change between calls while seeds always do: cache the scales, read-only
    # (made outside inference mode so that the cached tensor is usable everywhere).
    with torch.inference_mode(False):
        return torch.tensor(scales, dtype=dtype, device=device).reshape(-1, 1)


def _launch(name: str, plan: _Plan, m: int, x: Tensor | None, device: Any) -> Tensor:
    """Run kernel ``name`` over a (rows, m) grid: one launch unless counters cross 2**32."""
    rows = len(plan.seeds)

    def call(r0: int, r1: int, a: int, b: int) -> Tensor:
        starts = [base + a for base in plan.bases[r0:r1]]
        keys = [_keys(seed, start >> 32) for seed, start in zip(plan.seeds[r0:r1], starts)]
        thresholds = plan.thresholds[r0:r1] or (0,) * (r1 - r0)
        prm = torch.tensor(
            [[_i32(st), k0, k1, t] for st, (k0, k1), t in zip(starts, keys, thresholds)],
            dtype=torch.int32,
            device=device,
        )
        if x is None:
            return _run(name, (r1 - r0) * (b - a), r1 - r0, b - a, prm)
        scale = _scale_column(plan.scales[r0:r1], x.dtype, device)
        out = _fresh_output((r1 - r0, b - a), x.dtype, x.device)
        return _run(name, (r1 - r0) * (b - a), r1 - r0, x[r0:r1, a:b], prm, scale, out)

    if m == 0:
        empty = torch.empty((rows, 0), dtype=torch.float32, device=device)
        return empty if x is None else x.clone()
    if all(_segments(base, m) == [(0, m)] for base in plan.bases):
        return call(0, rows, 0, m)
    # Rare: some row's counters cross a multiple of 2**32 (or the row is huge): piece by piece.
    out = torch.empty((rows, m), dtype=torch.float32 if x is None else x.dtype, device=device)
    for r, base in enumerate(plan.bases):
        for a, b in _segments(base, m):
            out[r : r + 1, a:b] = call(r, r + 1, a, b)
    return out


def _row_layout(
    shape: Sequence[int], seeds: list[int], per_member_seed: bool, members: int, offset: int
) -> tuple[tuple[int, ...], tuple[int, ...], int]:
    """Per-row seeds and counter starts, and the row length, of the (rows, m) view."""
    numel = math.prod(shape)
    if members == 1 and not per_member_seed:
        return (seeds[0],), (offset,), numel
    m = numel // members
    if per_member_seed:  # each member counts its own elements
        return tuple(seeds), (offset,) * members, m
    return (seeds[0],) * members, tuple(offset + r * m for r in range(members)), m


# --------------------------------------------------------------------------------------------
# Public functions.
# --------------------------------------------------------------------------------------------


def counter_uniform(
    shape_or_numel: int | Sequence[int],
    seed: int | Tensor,
    *,
    offset: int = 0,
    device: torch.device | str | None = None,
) -> Tensor:
    """Uniforms in [0, 1) that are a pure function of ``(seed, offset + element index)``.

    The draws :func:`counter_dropout` thresholds: element ``i`` of ``counter_dropout(x, p,
    seed)`` is dropped iff ``counter_uniform(x.shape, seed)[i] < p`` (compared in double).
    Values are multiples of ``2**-24``. See the module docstring for the exact definition
    (counter-based generation after Salmon et al., 2011).

    Args:
        shape_or_numel: output shape, or a number of elements for a 1-D output.
        seed: an integer in [0, 2**64) or a 0-dim integer tensor; or a 1-D integer tensor of
            length K, one seed per member: the shape must then start with K, and each member
            counts its own elements from ``offset``.
        offset: counter of the first element (default 0); ``counter_uniform(n, s, offset=a)``
            equals ``counter_uniform(a + n, s)[a:]``.
        device: device of the result (default: CPU).

    Shape:
        Output: ``shape_or_numel``, float32.

    Example:
        >>> u = counter_uniform((2, 3), seed=7)
        >>> torch.equal(u, counter_uniform(6, seed=7).reshape(2, 3))
        True
    """
    shape = (shape_or_numel,) if isinstance(shape_or_numel, int) else tuple(shape_or_numel)
    for n in shape:
        check_nonneg_int("shape_or_numel entries", n)
    check_nonneg_int("offset", offset)
    seeds, per_member = _seeds(seed)
    if per_member:
        _check_members("seed", len(seeds), shape)
    members = len(seeds) if per_member else 1
    seeds_r, bases, m = _row_layout(shape, seeds, per_member, members, offset)
    device = torch.device("cpu") if device is None else torch.device(device)
    out = _launch("uniform", _Plan(seeds_r, bases), m, None, device)
    return out.reshape(shape)


class _CounterDropout(torch.autograd.Function):
    """y = x * mask * scale with the mask regenerated, never saved, for backward."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, plan: _Plan, m: int) -> Tensor:  # type: ignore[override]
        ctx.plan, ctx.m = plan, m  # Python numbers only: nothing is saved for backward
        return _launch("dropout", plan, m, x.reshape(len(plan.seeds), m), x.device).reshape(
            x.shape
        )

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        # The map is linear and self-adjoint, so backward is the same op on the gradient
        # (and stays differentiable for double backward).
        return _CounterDropout.apply(grad.contiguous(), ctx.plan, ctx.m), None, None


def counter_dropout(
    x: Tensor, p: float | Tensor, seed: int | Tensor, *, scale: bool = True, offset: int = 0
) -> Tensor:
    """Dropout whose mask is a hash of ``(seed, element index)``: no RNG state, no stored mask.

    Element ``i`` (row-major logical index) is dropped iff ``counter_uniform(x.shape, seed)[i]
    < p``; kept elements are multiplied by ``1 / (1 - p)`` when ``scale`` (inverted dropout,
    the default) and left as they are otherwise (classic dropout scales at inference). Backward
    recomputes the mask from the integer seed, so no tensor is saved for it, and the same masks
    come out for any thread count. One seed gives nested masks across rates (a unit dropped at
    p=0.2 is dropped at p=0.3): common random numbers for sweeps. Dropout: Srivastava et al.
    (2014), JMLR 15, 1929-1958; counter-based draws: Salmon et al. (2011), SC'11.

    Args:
        x: floating-point input (any shape; read in row-major order, made contiguous).
        p: drop probability in [0, 1): a number, a 0-dim tensor, or a 1-D tensor of length K
            with one rate per member (then ``x`` has shape ``(K, ...)``).
        seed: an integer in [0, 2**64) (draw one with :func:`draw_seed`), a 0-dim integer
            tensor, or a 1-D integer tensor of length K: member ``k`` of ``x`` (shape
            ``(K, ...)``) uses ``seed[k]`` and counts its own elements, so members with equal
            seeds share their draws. With a single seed, indices run over the whole of ``x``.
        scale: multiply kept elements by ``1 / (1 - p)`` (default True).
        offset: counter of the first element (default 0).

    Inside a user's ``torch.compile`` the seed is a constant of the graph: a seed that changes
    per call recompiles per call (:func:`droplab.functional.dropout` therefore draws with
    torch's random ops there). Under ``torch.jit.trace`` the eager kernels are recorded.

    Shape:
        Input: ``(*)``, or ``(K, *)`` with a per-member ``p`` or ``seed``. Output: same as
        input (contiguous). Returns ``x`` itself when every rate is 0.

    Example:
        >>> x = torch.ones(4, 1000, requires_grad=True)
        >>> y = counter_dropout(x, 0.25, seed=123)
        >>> bool(((y == 0) | (y == 4 / 3)).all())
        True
        >>> y.sum().backward()  # the mask is regenerated here, not loaded
    """
    if not isinstance(x, Tensor) or not x.is_floating_point():
        got = f"dtype {x.dtype}" if isinstance(x, Tensor) else type(x).__name__
        raise ConfigError(f"x must be a floating-point tensor, got {got}")
    if not isinstance(scale, bool):
        raise ConfigError(f"scale must be a bool, got {scale!r}")
    check_nonneg_int("offset", offset)
    rates, per_member_p = _rates(p)
    seeds, per_member_seed = _seeds(seed)
    members = 1
    if per_member_p:
        _check_members("p", len(rates), x.shape)
        members = len(rates)
    if per_member_seed:
        _check_members("seed", len(seeds), x.shape)
        if per_member_p and len(seeds) != len(rates):
            raise ConfigError(
                f"p and seed must have the same length, got {len(rates)} and {len(seeds)}"
            )
        members = len(seeds)
    if all(r == 0.0 for r in rates):
        return x
    seeds_r, bases, m = _row_layout(x.shape, seeds, per_member_seed, members, offset)
    rows = len(seeds_r)
    rates_r = rates * rows if len(rates) == 1 else rates
    plan = _Plan(
        seeds_r,
        bases,
        tuple(int(counter_threshold(r) * 2**U_BITS) for r in rates_r),
        tuple(1.0 / (1.0 - r) if scale else 1.0 for r in rates_r),
    )
    if torch.jit.is_tracing():
        # jit.trace cannot record an autograd.Function with a non-tensor argument (the plan):
        # record the eager kernel's ops, which autograd differentiates as usual.
        return _launch("dropout", plan, m, x.reshape(rows, m), x.device).reshape(x.shape)
    return _CounterDropout.apply(x.contiguous(), plan, m)
