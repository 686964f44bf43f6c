"""Dropout inside a user's torch.compile or torch.jit.trace (issue 20, items 1 and 7).

Large inputs take the counter-hash path in eager mode; traced code must not: its seed is a Python
int drawn per call, which dynamo specialises on (a recompile per step; with dynamic shapes an
OverflowError on a uint64 constant) and jit.trace freezes into a constant.
"""

import pytest
import torch
from torch import nn

import droplab.nn as dn
from droplab.functional import counter as _counter
from droplab.functional.counter import counter_dropout
from droplab.functional import unit as _unit

N = _unit.COUNTER_MIN_NUMEL  # 2**17: the smallest input the counter path takes


@pytest.fixture
def counter_compiled(monkeypatch):
    """The process state of a user's machine: compilation on, nothing has failed yet."""
    monkeypatch.setenv("DROPLAB_NO_COMPILE", "0")
    monkeypatch.setattr(_counter, "_compile_failed", False)
    assert _counter.counter_backend() == "compiled"


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")
@pytest.mark.parametrize("dynamic", [None, False], ids=["default", "static"])
def test_compiled_training_loop_runs_without_recompiling(counter_compiled, dynamic):
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    model = nn.Sequential(nn.Linear(512, 256), dn.Dropout(0.5))
    step = torch.compile(model, dynamic=dynamic)
    x = torch.randn(512, 512, generator=torch.Generator().manual_seed(0))  # 512 x 256 = 2**17
    masks = []
    with torch._dynamo.config.patch(error_on_recompile=True):
        for _ in range(3):
            y = step(x)
            y.sum().backward()
            masks.append(y == 0)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1
    assert not torch.equal(masks[0], masks[1])  # a fresh mask every step, not a frozen one
    for m in masks:  # 2**17 Bernoulli(0.5) draws: sd 0.0014, 0.01 is 7 sd
        assert abs(m.float().mean().item() - 0.5) < 0.01
    # the compiled masks come from torch's global generator: the same seed, the same masks
    outs = []
    for _ in range(2):
        torch.manual_seed(123)
        outs.append(step(x))
    assert torch.equal(outs[0], outs[1])
    torch._dynamo.reset()


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_jit_trace_in_training_mode_keeps_the_process_backend(counter_compiled):
    layer = dn.Dropout(0.5).train()
    x = torch.ones(N)
    traced = torch.jit.trace(layer, x, check_trace=False)
    a, b = traced(x), traced(x)
    assert set(a.unique().tolist()) <= {0.0, 2.0}
    assert not torch.equal(a, b)  # the mask is an op of the trace, not a frozen constant
    # counter_dropout traced directly (a fixed seed): its eager kernels, same result as eager
    traced_fn = torch.jit.trace(lambda t: counter_dropout(t, 0.5, 3), x, check_trace=False)
    assert _counter.counter_backend() == "compiled"  # tracing did not switch the process off
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DROPLAB_NO_COMPILE", "1")
        assert torch.equal(traced_fn(x), counter_dropout(x, 0.5, 3))
