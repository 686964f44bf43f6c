"""Toy classification data shared by the sweep tests (10 features, 3 classes)."""

from __future__ import annotations

import numpy as np
import torch


def toy_tensors(seed=0, n=200, nv=80, nt=60):
    """``(x, y, x_val, y_val, x_test, y_test)`` of a noisy linear 3-class problem."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(10, 3, generator=g)
    x = torch.randn(n + nv + nt, 10, generator=g)
    y = (x @ w + 0.7 * torch.randn(n + nv + nt, 3, generator=g)).argmax(1)
    return x[:n], y[:n], x[n : n + nv], y[n : n + nv], x[n + nv :], y[n + nv :]


def write_toy_npz(path) -> str:
    """600 examples of the same kind of problem as an ``.npz`` file (x, y); returns the path."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 10)).astype(np.float32)
    y = (x @ rng.normal(size=(10, 3)) + rng.normal(size=(600, 3))).argmax(1)
    np.savez(path, x=x, y=y)
    return str(path)
