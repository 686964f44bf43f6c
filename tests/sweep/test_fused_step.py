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


@pytest.mark.parametrize("start", [0, 8192 * 5, 2**32 - 8192, 2**32, 2**40 + 16384 * 7, 123])
@pytest.mark.parametrize("shape", [(128, 58), (37, 13), (1, 1)])
def test_counter_uniforms_equal_the_counter_module_bitwise(start, shape):
    from droplab.functional.counter import counter_uniform

    seeds = torch.tensor([3, 2**62 + 12345, 0, 987654321987654321], dtype=torch.int64)
    u = fused_step.counter_uniforms(seeds, start, *shape)
    assert u.shape == (4, *shape) and u.dtype == torch.float32
    assert torch.equal(u, counter_uniform((4, *shape), seeds, offset=start))


def test_counter_uniforms_refuse_counters_crossing_a_multiple_of_2_to_the_32():
    with pytest.raises(ValueError, match="cross a multiple"):
        fused_step.counter_uniforms(torch.tensor([1]), 2**32 - 10, 4, 4)


def _regression_population(members, x, y, groups):
    spec = ModelSpec(kind="mlp", hidden=(12,), dropout={"input": 0.0, "hidden": 0.0})
    return Population(MLPNet(spec, (x.shape[2],), 1, members), members, (x, y, x[:, :0], y[:, :0]),
                      "regression", groups=groups, history=False)


def test_fused_populations_draw_the_counter_stream_whether_or_not_the_kernel_built():
    from droplab.functional.counter import counter_uniform
    from droplab.sweep.population.base import _derive_seed
    from droplab.sweep.population.core import _MASK_STREAM

    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 60, 5, generator=g)
    y = x.sum(2) + 0.1 * torch.randn(2, 60, generator=g)
    base = TrainConfig(epochs=3, batch_size=16, eval_train=False, l2=1e-4)
    members = [Member(f"{grp}-{p}", {}, seed=grp + 4, train=base, rates=(p, p)) for grp in (0, 1) for p in (0.0, 0.2)]

    def train():
        pop = _regression_population(members, x, y, [0, 0, 1, 1])
        u = pop._uniforms(16, 7, expand=False)
        while not pop.done:
            pop.run_epoch()
        return pop, u

    pop, u = train()
    # seed s's uniforms at step t: counter_uniform((B, width), mask seed of s, offset=t * stride),
    # stride the power of two >= 16 x 17 (width 5 + 12)
    seeds = torch.tensor([_derive_seed(s, _MASK_STREAM) for s in (4, 5)])
    assert pop._counter_stride == 512
    assert torch.equal(u, counter_uniform((2, 16, 17), seeds, offset=7 * 512))
    saved = dict(fused_step._state)
    try:  # no C++ kernel: the torch step on the same draws, equal up to the products' rounding
        fused_step._state.update(module=None, reason="off for the test")
        ref, u_ref = train()
    finally:
        fused_step._state.clear()
        fused_step._state.update(saved)
    assert torch.equal(u, u_ref)
    for name in pop.params:
        torch.testing.assert_close(pop.params[name], ref.params[name], rtol=1e-4, atol=1e-5)


def test_classification_populations_keep_one_generator_per_seed():
    members = [Member("a", {}, seed=0, train=TrainConfig(), rates=(0.2, 0.2))]
    spec = ModelSpec(kind="mlp", hidden=(12,), dropout={"input": 0.0, "hidden": 0.0})
    x, y = torch.randn(20, 5), torch.randint(0, 3, (20,))
    pop = Population(MLPNet(spec, (5,), 3, members), members, (x, y, x[:0], y[:0]), "classification")
    assert pop._counter_seeds is None


def test_counter_stream_population_resumes_bitwise():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(1, 50, 5, generator=g)
    y = x.sum(2)
    base = TrainConfig(epochs=3, batch_size=16, eval_train=False)
    members = [Member(f"{p}", {}, seed=1, train=base, rates=(p, p)) for p in (0.1, 0.3)]
    full = _regression_population(members, x, y, [0, 0])
    while not full.done:
        full.run_epoch()
    part = _regression_population(members, x, y, [0, 0])
    part.run_epoch()
    resumed = _regression_population(members, x, y, [0, 0])
    resumed.load_bytes(part.to_bytes())
    while not resumed.done:
        resumed.run_epoch()
    for name in full.params:
        assert torch.equal(full.params[name], resumed.params[name])


def _mc_net(k, d, hidden, rates, seeds, place="both"):
    dropout = {"input": 0.0, "hidden": 0.0} if place == "both" else {place: 0.0}
    spec = ModelSpec(kind="mlp", hidden=(hidden,), dropout=dropout)
    width = 2 if place == "both" else 1
    members = [Member(str(i), {}, seed=seeds[i], train=TrainConfig(), rates=(rates[i],) * width) for i in range(k)]
    net = MLPNet(spec, (d,), 1, members)
    params, _ = net.init_params(members)
    return net, params


@pytest.mark.parametrize("place", ["both", "input", "hidden"])
@pytest.mark.parametrize("shared_seeds", [True, False])
@pytest.mark.parametrize("per_member_x", [True, False])
def test_fused_mc_passes_equal_the_torch_passes_within_float_rounding(place, shared_seeds, per_member_x, monkeypatch):
    k, d, n = 8, 5, 45  # 45 examples: a block of 32 and a remainder
    seeds = [i // 4 for i in range(k)] if shared_seeds else list(range(k))
    rates = [0.0, 0.1, 0.3, 0.5] * 2
    net, params = _mc_net(k, d, 20, rates, seeds, place)
    g = torch.Generator().manual_seed(1)
    x = torch.randn((k, n, d) if per_member_x else (n, d), generator=g)
    fused = list(net.mc_passes(params, x, 7, seeds, budget_bytes=4 * k * n * 3))  # chunks of 3 passes
    assert [t0 for t0, _ in fused] == [0, 3, 6]
    with monkeypatch.context() as m:
        m.setattr(mlp_module.MLPNet, "_mc_fusable", lambda self, x, P: False)
        ref = torch.cat([out for _, out in net.mc_passes(params, x, 7, seeds)], 1)
    out = torch.cat([o for _, o in fused], 1)
    assert out.shape == ref.shape == (k, 7, n, 1)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    # the same masks: zero rate members do not vary across passes, positive rates do
    assert torch.equal(out[0, 0], out[0, 1]) and not torch.equal(out[3, 0], out[3, 1])


def test_fused_mc_passes_take_the_keys_of_each_counter_high_word():
    from droplab.functional.counter import counter_threshold, counter_uniform

    k, n, d, h = 2, 3, 2, 4
    g = torch.Generator().manual_seed(2)
    P = {"W0": torch.randn(k, d, h, generator=g), "b0": torch.randn(k, 1, h, generator=g),
         "W1": torch.randn(k, h, 1, generator=g), "b1": torch.randn(k, 1, 1, generator=g)}
    x = torch.randn(k, n, d, generator=g)
    first = 2**32 // (n * h) - 1  # the hidden counters of these passes cross 2**32
    seeds = (torch.tensor([11, 12]), torch.tensor([21, 22]))
    thr = torch.tensor([[counter_threshold(0.2), counter_threshold(0.4)]] * k, dtype=torch.float32)
    scale = torch.tensor([[1 / 0.8, 1 / 0.6]] * k, dtype=torch.float32)
    out = fused_step.mc_passes(x, P, torch.arange(k), seeds, thr, scale, first, 3)
    for j in range(k):
        for t in range(3):
            u0 = counter_uniform((n, d), seeds[0][j], offset=(first + t) * n * d)
            u1 = counter_uniform((n, h), seeds[1][j], offset=(first + t) * n * h)
            h0 = x[j] * torch.where(u0 >= thr[j, 0], scale[j, 0], 0.0)
            h1 = (h0 @ P["W0"][j] + P["b0"][j]).relu() * torch.where(u1 >= thr[j, 1], scale[j, 1], 0.0)
            torch.testing.assert_close(out[j, t], (h1 @ P["W1"][j] + P["b1"][j])[:, 0], rtol=1e-5, atol=1e-5)
