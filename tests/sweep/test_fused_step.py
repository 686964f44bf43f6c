"""The fused C++ step of one-hidden-layer ReLU regressors against the batched-torch step."""

from __future__ import annotations

import pytest
import torch

from droplab.models import ModelSpec
from droplab.sweep import fused_step
from droplab.sweep.population import Member, MLPNet, Population
from droplab.sweep.population import mlp as mlp_module
from droplab.train import TrainConfig

pytestmark = pytest.mark.skipif(not fused_step.available(), reason=f"no fused kernel: {fused_step.backend()}")

SPEC = ModelSpec(kind="mlp", hidden=(50,), dropout={"input": 0.0, "hidden": 0.0})


def _net(k=24, d=13, spec=SPEC, rates=None):
    members = [Member(str(i), {}, seed=i // 4, train=TrainConfig(),
                      rates=rates(i) if rates else (0.005 * (i % 4), 0.05 + 0.1 * (i % 4))) for i in range(k)]
    net = MLPNet(spec, (d,), 1, members)
    params, _ = net.init_params(members)
    return net, params


def _inputs(net, k, batch=37, d=13, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(k, batch, d, generator=g)
    y = torch.randn(k, batch, 1, generator=g)
    u = torch.rand(k, batch, net.uniform_width, generator=g)
    return x, y, u


def _torch_step(net, params, x, y, u, monkeypatch):
    with monkeypatch.context() as m:
        m.setattr(mlp_module.MLPNet, "_fusable", lambda self, x, task: False)
        return net.train_step(params, {}, x, y, u.clone(), "regression")


@pytest.mark.parametrize("d", [13, 6, 1])
def test_fused_step_equals_the_torch_step_within_float_rounding(d, monkeypatch):
    net, params = _net(d=d)
    x, y, u = _inputs(net, 24, d=d)
    assert net._fusable(x, "regression")
    loss_f, grads_f = net.train_step(params, {}, x, y, u.clone(), "regression")
    loss_t, grads_t = _torch_step(net, params, x, y, u, monkeypatch)
    torch.testing.assert_close(loss_f, loss_t, rtol=1e-5, atol=1e-6)
    for name in ("W0", "b0", "W1", "b1"):
        assert grads_f[name].shape == grads_t[name].shape == params[name].shape
        torch.testing.assert_close(grads_f[name], grads_t[name], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("batch, hidden", [(1, 50), (16, 47), (130, 100)])
def test_fused_step_agrees_with_torch_for_any_batch_size_and_width(batch, hidden, monkeypatch):
    """The kernel walks the batch in blocks of 16 rows and the units in vectors of 8: one row,
    one whole block, a last partial block; widths off the vector size."""
    spec = ModelSpec(kind="mlp", hidden=(hidden,), dropout={"input": 0.0, "hidden": 0.0})
    net, params = _net(k=8, spec=spec)
    x, y, u = _inputs(net, 8, batch=batch)
    assert net._fusable(x, "regression")
    loss_f, grads_f = net.train_step(params, {}, x, y, u.clone(), "regression")
    loss_t, grads_t = _torch_step(net, params, x, y, u, monkeypatch)
    torch.testing.assert_close(loss_f, loss_t, rtol=1e-5, atol=1e-6)
    for name in grads_t:
        torch.testing.assert_close(grads_f[name], grads_t[name], rtol=1e-4, atol=1e-6)


def test_fused_step_without_dropout_and_with_classic_masks(monkeypatch):
    plain = ModelSpec(kind="mlp", hidden=(50,))
    net, params = _net(spec=plain, rates=lambda i: ())
    x, y, _ = _inputs(net, 24)
    loss_f, grads_f = net.train_step(params, {}, x, y, None, "regression")
    with monkeypatch.context() as m:
        m.setattr(mlp_module.MLPNet, "_fusable", lambda self, x, task: False)
        loss_t, grads_t = net.train_step(params, {}, x, y, None, "regression")
    torch.testing.assert_close(loss_f, loss_t, rtol=1e-5, atol=1e-6)
    for name in grads_t:
        torch.testing.assert_close(grads_f[name], grads_t[name], rtol=1e-4, atol=1e-6)
    classic = ModelSpec(kind="mlp", hidden=(50,), dropout={"hidden": {"p": 0.0, "layer": "classic"}})
    net, params = _net(spec=classic, rates=lambda i: (0.1 * (i % 3),))
    x, y, u = _inputs(net, 24)
    loss_f, grads_f = net.train_step(params, {}, x, y, u.clone(), "regression")
    loss_t, grads_t = _torch_step(net, params, x, y, u, monkeypatch)
    torch.testing.assert_close(loss_f, loss_t, rtol=1e-5, atol=1e-6)
    for name in grads_t:
        torch.testing.assert_close(grads_f[name], grads_t[name], rtol=1e-4, atol=1e-6)


def test_a_members_numbers_do_not_depend_on_k_position_or_threads():
    """Bitwise: member 5 alone, member 5 among 24, and with 2 threads give the same bits."""
    net, params = _net()
    x, y, u = _inputs(net, 24)
    loss, grads = net.train_step(params, {}, x, y, u.clone(), "regression")
    rows = torch.tensor([5])
    sub = {n: t[rows] for n, t in params.items()}
    flipped = {n: t.flip(0) for n, t in params.items()}
    net_one, _ = _net(k=24)
    net_one.select_rows(rows)
    loss1, grads1 = net_one.train_step(sub, {}, x[rows], y[rows], u[rows].clone(), "regression")
    assert torch.equal(loss1[0], loss[5])
    for name in grads:
        assert torch.equal(grads1[name][0], grads[name][5])
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        net_f, _ = _net()
        net_f.select_rows(torch.arange(23, -1, -1))
        loss2, grads2 = net_f.train_step(flipped, {}, x.flip(0), y.flip(0), u.flip(0).clone(), "regression")
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(loss2.flip(0), loss)
    for name in grads:
        assert torch.equal(grads2[name].flip(0), grads[name])


def test_population_with_the_fused_step_is_bitwise_reproducible_and_close_to_torch(monkeypatch):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 60, 5, generator=g)
    y = x.sum(2) + 0.1 * torch.randn(2, 60, generator=g)
    base = TrainConfig(epochs=3, batch_size=16, eval_train=False, l2=1e-4)
    members = [Member(f"{grp}-{p}", {}, seed=grp, train=base, rates=(p, p)) for grp in (0, 1) for p in (0.0, 0.2)]
    spec = ModelSpec(kind="mlp", hidden=(12,), dropout={"input": 0.0, "hidden": 0.0})

    def train():
        pop = Population(MLPNet(spec, (5,), 1, members), members, (x, y, x[:, :0], y[:, :0]), "regression",
                         groups=[0, 0, 1, 1], history=False)
        while not pop.done:
            pop.run_epoch()
        return pop.params

    a, b = train(), train()
    with monkeypatch.context() as m:
        m.setattr(mlp_module.MLPNet, "_fusable", lambda self, x, task: False)
        ref = train()
    for name in a:
        assert torch.equal(a[name], b[name])
        torch.testing.assert_close(a[name], ref[name], rtol=1e-4, atol=1e-5)


def test_backend_names_the_path():
    assert fused_step.backend() == "cpp"
    with pytest.raises(RuntimeError, match="not available"):
        saved = dict(fused_step._state)
        try:
            fused_step._state.update(module=None, reason="off for the test")
            fused_step.mlp1_step(*[torch.zeros(1, 1, 1)] * 4, (None, None), *[torch.zeros(1, 1, 1)] * 5)
        finally:
            fused_step._state.clear()
            fused_step._state.update(saved)


def test_uniforms_by_seed_row_equal_the_expanded_uniforms_bitwise(monkeypatch):
    net, params = _net()
    x, y, _ = _inputs(net, 24)
    g = torch.Generator().manual_seed(9)
    u_seed = torch.rand(6, 37, net.uniform_width, generator=g)
    rows = torch.arange(24) // 4
    net.uniform_rows = rows
    loss_a, grads_a = net.train_step(params, {}, x, y, u_seed, "regression")
    with monkeypatch.context() as m:  # the torch path expands the rows itself
        m.setattr(mlp_module.MLPNet, "_fusable", lambda self, x, task: False)
        loss_t, grads_t = net.train_step(params, {}, x, y, u_seed, "regression")
    net.uniform_rows = None
    loss_b, grads_b = net.train_step(params, {}, x, y, u_seed.index_select(0, rows), "regression")
    assert torch.equal(loss_a, loss_b)
    for name in grads_a:
        assert torch.equal(grads_a[name], grads_b[name])
        torch.testing.assert_close(grads_t[name], grads_b[name], rtol=1e-4, atol=1e-6)
    net.uniform_rows = rows + 1
    with pytest.raises(ValueError, match="seed_index must hold 24 rows"):
        net.train_step(params, {}, x, y, u_seed, "regression")


def test_batches_by_data_row_equal_the_expanded_batches_bitwise(monkeypatch):
    net, params = _net()
    g = torch.Generator().manual_seed(4)
    x = torch.randn(6, 37, 13, generator=g)  # one batch per (split, seed) stream
    y = torch.randn(6, 37, 1, generator=g)
    u = torch.rand(24, 37, net.uniform_width, generator=g)
    rows = torch.arange(24) // 4
    net.data_rows = rows
    loss_a, grads_a = net.train_step(params, {}, x, y, u.clone(), "regression")
    with monkeypatch.context() as m:  # the torch path expands the rows itself
        m.setattr(mlp_module.MLPNet, "_fusable", lambda self, x, task: False)
        loss_t, grads_t = net.train_step(params, {}, x, y, u.clone(), "regression")
    net.data_rows = None
    loss_b, grads_b = net.train_step(params, {}, x[rows], y[rows], u.clone(), "regression")
    assert torch.equal(loss_a, loss_b)
    for name in grads_a:
        assert torch.equal(grads_a[name], grads_b[name])
        torch.testing.assert_close(grads_t[name], grads_b[name], rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="x holds 6 batches for 24 members"):
        net.train_step(params, {}, x, y, u.clone(), "regression")
    net.data_rows = rows + 1
    try:
        with pytest.raises(ValueError, match="data_index must hold 24 rows in"):
            net.train_step(params, {}, x, y, u.clone(), "regression")
    finally:
        net.data_rows = None
