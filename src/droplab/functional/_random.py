"""Where the dropout family draws its random numbers: one rule for every layer.

Numbers come from the generator the caller passed, on that generator's device, and are moved to
the tensor's device when the two differ. A seeded CPU ``torch.Generator`` therefore works for a
model on any device and gives it the same masks it gives on the CPU (torch itself refuses a CPU
generator for a CUDA draw). Moving costs one host-to-device copy per mask: pass a generator on
the model's device (``torch.Generator(device="cuda")``) where that matters. Without a generator,
numbers come from torch's global generator of the tensor's device.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

__all__: list[str] = []


def _draw(
    fn: Callable[..., Tensor],
    shape: Sequence[int],
    generator: torch.Generator | None,
    device: torch.device | str,
    dtype: torch.dtype,
) -> Tensor:
    device = torch.device(device)
    where = device if generator is None else generator.device
    out = fn(tuple(shape), generator=generator, device=where, dtype=dtype)
    return out if _same(where, device) else out.to(device)


def _same(a: torch.device, b: torch.device) -> bool:
    if a.type != b.type:
        return False
    if a.type == "cpu" or a.index == b.index:
        return True
    current = torch.cuda.current_device() if a.type == "cuda" else 0
    return (a.index if a.index is not None else current) == (b.index if b.index is not None else current)


def rand(
    shape: Sequence[int],
    generator: torch.Generator | None,
    device: torch.device | str,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """``torch.rand(shape)`` on ``device``, drawn from ``generator`` (see the module docstring)."""
    return _draw(torch.rand, shape, generator, device, dtype)


def randn(
    shape: Sequence[int],
    generator: torch.Generator | None,
    device: torch.device | str,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """``torch.randn(shape)`` on ``device``, drawn from ``generator`` (see the module docstring)."""
    return _draw(torch.randn, shape, generator, device, dtype)
