"""dropout() takes the counter-hash path for large inverted inputs, and only there."""

import pytest
import torch

from droplab.functional import dropout
from droplab.functional import unit as _mod
from droplab.functional.counter import counter_dropout, draw_seed

N = _mod.COUNTER_MIN_NUMEL


@pytest.fixture
def counter_on(monkeypatch):
    # Kernels stay eager (conftest); pretend compilation is available so the path is chosen.
    monkeypatch.setattr(_mod, "counter_backend", lambda: "compiled")


def _saved_bytes(fn):
    saved = []

    def pack(t):
        saved.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, sum(saved)


def test_large_inverted_input_uses_counter_masks(counter_on):
    x = torch.randn(N, requires_grad=True)
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    y, saved = _saved_bytes(lambda: dropout(x, 0.3, generator=g1))
    ref = counter_dropout(x.detach(), 0.3, draw_seed(g2))
    assert torch.equal(y.detach(), ref)
    assert saved == 0  # no mask stored for backward
    y.sum().backward()
    assert torch.equal(x.grad, (ref != 0).float() / 0.7)
    # The generator advanced exactly as a seed draw does, so later draws stay reproducible.
    assert torch.equal(torch.rand(3, generator=g1), torch.rand(3, generator=g2))


@pytest.mark.parametrize(
    "kwargs, numel",
    [({}, N - 1), ({"mode": "classic"}, N), ({"shared_axes": 0}, N)],
)
def test_other_inputs_keep_torch_masks(counter_on, kwargs, numel):
    x = torch.ones(numel, 1)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    y = dropout(x, 0.5, generator=g1, **kwargs)
    keep = torch.rand((1 if kwargs.get("shared_axes") == 0 else numel, 1), generator=g2) >= 0.5
    assert torch.equal(y != 0, keep.expand_as(y))


def test_no_counter_path_under_vmap(counter_on):
    x = torch.ones(2, N)
    out = torch.func.vmap(lambda r: dropout(r, 0.5), randomness="different")(x)
    assert out.shape == x.shape and set(out.unique().tolist()) <= {0.0, 2.0}
