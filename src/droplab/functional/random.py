"""Where the dropout family draws its random numbers: one rule for every layer.

Numbers are drawn in float32 whatever the dtype of the tensor they will mask: bfloat16's 8-bit
and float16's 11-bit mantissas would quantize a rate (``u < p`` with bfloat16 ``u`` drops at a
rate rounded to a multiple of 2**-8: DropConnect at p=0.002 dropped 0.0039), and the same seed
then gives a float16, bfloat16, float32 or float64 input the same masks. Callers compare or
combine in float32 and cast the finished mask to the input's dtype.

Numbers come from the generator the caller passed, on that generator's device, and are moved to
the tensor's device when the two differ. A seeded CPU ``torch.Generator`` therefore works for a
model on any device and gives it the same masks it gives on the CPU (torch itself refuses a CPU
generator for a CUDA draw). Moving costs one host-to-device copy per mask: pass a generator on
the model's device (``torch.Generator(device="cuda")``) where that matters. Without a generator,
numbers come from torch's global generator of the tensor's device.

Public so that a layer outside :mod:`droplab.functional` (DropConnect's moment-matching
inference samples its activations) draws by the same rule. Example::

    u = rand((4, 8), torch.Generator().manual_seed(0), "cpu")  # float32 in [0, 1)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

__all__ = ["rand", "randn"]


def _draw(
    fn: Callable[..., Tensor],
    shape: Sequence[int],
    generator: torch.Generator | None,
    device: torch.device | str,
) -> Tensor:
    device = torch.device(device)
    where = device if generator is None else generator.device
    out = fn(tuple(shape), generator=generator, device=where, dtype=torch.float32)
    return out if _same(where, device) else out.to(device)


def _same(a: torch.device, b: torch.device) -> bool:
    if a.type != b.type:
        return False
    if a.type == "cpu" or a.index == b.index:
        return True
    current = torch.cuda.current_device() if a.type == "cuda" else 0
    return (a.index if a.index is not None else current) == (b.index if b.index is not None else current)


def rand(
    shape: Sequence[int], generator: torch.Generator | None, device: torch.device | str
) -> Tensor:
    """``torch.rand(shape)``, float32, on ``device``, from ``generator`` (module docstring)."""
    return _draw(torch.rand, shape, generator, device)


def randn(
    shape: Sequence[int], generator: torch.Generator | None, device: torch.device | str
) -> Tensor:
    """``torch.randn(shape)``, float32, on ``device``, from ``generator`` (module docstring)."""
    return _draw(torch.randn, shape, generator, device)
