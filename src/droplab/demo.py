"""The README's main job. Until sweeps and reports exist: a small training demo."""

from __future__ import annotations

__all__ = ["run_demo"]


def run_demo(out: str = "out") -> int:
    import torch

    from droplab import nn as dn  # noqa: F401  (imported to prove the package is installed)

    torch.manual_seed(0)
    print(f"droplab demo: placeholder; output folder {out}")
    return 0
