"""Rates of droplab's own CNN/RNN/transformer specs as per-member data (issue 21): a sweep over
their dropout rates (and schedules) is one ModuleNet population."""

from __future__ import annotations

import pytest
import torch

from droplab.models import ModelSpec, build_model, parse_dropout
from droplab.nn.member_rates import RATE_LAYERS
from droplab.sweep import run_sweep
from droplab.sweep.plan import SpecPlan, _RATE_BUFFER_LAYERS
from droplab.train import TrainConfig

TRAIN = TrainConfig(epochs=2, batch_size=32, lr=3e-3)
CNN = ModelSpec(kind="cnn2d", hidden=(4,), kernel_size=3, dropout={"hidden": 0.0})


def _images(seed=0, n=96, nv=48):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n + nv, 1, 6, 6, generator=g)
    y = (x.flatten(1) @ torch.randn(36, 3, generator=g)).argmax(1)
    return x[:n], y[:n], x[n:], y[n:]


def _sweep(space, spec=CNN, data=None, train=TRAIN):
    pops = []
    res = run_sweep(spec, data=_images() if data is None else data, space=space, seeds=2, train=train,
                    progress=False, on_epoch=pops.append)
    return res, pops


def test_a_rate_sweep_of_a_cnn_spec_is_one_population_equal_to_the_runs_alone_at_rate_0():
    spec = ModelSpec(kind="cnn2d", hidden=(8,), kernel_size=3, dropout={"hidden": 0.0})
    train = TrainConfig(epochs=3, batch_size=32, lr=1e-2)
    rates = (0.0, 0.4, 0.8)
    res, pops = _sweep({"dropout.hidden": list(rates)}, spec=spec, train=train)
    assert {e["population"] for e in pops} == {pops[0]["population"]}  # one population ...
    assert all(e["members"] == 6 for e in pops)  # ... of 3 rates x 2 seeds
    last = pops[-1]["rows"]  # members in configuration order: p=0 s0, s1, p=0.4 s0, ...
    alone = {}
    for p in rates:
        r1, pops1 = _sweep({"dropout.hidden": [p]}, spec=spec, train=train)
        assert len({e["population"] for e in pops1}) == 1
        alone[p] = (r1.rows[0]["values"], pops1[-1]["rows"], pops1)
    # Rate 0 draws no dropout: the configuration's results are the bits of it trained on its
    # own, and so are its training losses of the first epoch. Later ones differ in the last
    # bits: vmap's grouped convolution sums the bias gradient of 6 members in another order
    # than that of 2 (5e-9 on the first step).
    assert res.row("dropout.hidden=0.0")["values"] == alone[0.0][0]
    assert [pops[0]["rows"][i]["train_loss"] for i in (0, 1)] == [
        alone[0.0][2][0]["rows"][i]["train_loss"] for i in (0, 1)]
    for i in (0, 1):
        assert last[i]["train_loss"] == pytest.approx(alone[0.0][1][i]["train_loss"], rel=1e-6)
    # Other rates: other draws of the same distribution. Each member drops at its own rate, so
    # the training loss rises with the rate, in the population as alone; the two differ by
    # less than 15% (two seeds at one rate differ by 14% on this small problem).
    for s in (0, 1):
        together = [last[2 * k + s]["train_loss"] for k in range(3)]
        apart = [alone[p][1][s]["train_loss"] for p in rates]
        assert together[0] < together[1] < together[2] and apart[0] < apart[1] < apart[2]
        for a, b in zip(together, apart):
            assert abs(a - b) < 0.15 * b


def test_rates_and_schedules_of_a_cnn_spec_share_one_deterministic_population():
    space = {"dropout.hidden": [0.0, 0.4], "dropout.hidden.schedule": ["early@1", "constant"]}
    res, pops = _sweep(space)
    assert {e["population"] for e in pops} == {pops[0]["population"]}
    assert all(e["members"] == 8 for e in pops)
    again, _ = _sweep(space)
    assert [r["values"] for r in again.rows] == [r["values"] for r in res.rows]


def test_a_rate_sweep_of_a_transformer_spec_is_one_population():
    spec = ModelSpec(kind="transformer", hidden=(8,), layers=1, dropout={"hidden": 0.0, "attention": 0.0})
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 5, 8, generator=g)
    y = (x.flatten(1).sum(1) > 0).long()
    space = {"dropout.hidden": [0.0, 0.2], "dropout.attention": [0.0, 0.1]}
    _, pops = _sweep(space, spec=spec, data=(x[:48], y[:48], x[48:], y[48:]))
    assert {e["population"] for e in pops} == {pops[0]["population"]}
    assert all(e["members"] == 8 for e in pops)


def test_rates_of_an_rnn_spec_make_one_group():
    # One group; torch.func has no batching rule for aten::gru, so its runs then train one by one.
    spec = ModelSpec(kind="gru", hidden=(6,), dropout={"input": 0.0, "hidden": 0.0, "recurrent": 0.1})
    plan = SpecPlan(spec, {}, TRAIN, {"name": "x"}, True, None)
    groups = {str(plan.resolve({"dropout.input": a, "dropout.hidden": b}).group)
              for a in (0.0, 0.2) for b in (0.1, 0.3)}
    assert len(groups) == 1
    # LockedDropout's rate (recurrent) is module configuration: it keeps its own group.
    assert str(plan.resolve({"dropout.recurrent": 0.3}).group) not in groups


def test_layers_without_a_rate_buffer_keep_one_population_per_rate():
    spec = ModelSpec(kind="cnn2d", hidden=(4,), kernel_size=3, dropout=parse_dropout("hidden=0.1:gaussian"))
    _, pops = _sweep({"dropout.hidden": [0.1, 0.3]}, spec=spec)
    assert len({e["population"] for e in pops}) == 2


@pytest.mark.parametrize("layer", ["dropout", "classic", "alpha", "spatial", "gaussian", "dropblock"])
def test_the_group_rule_names_exactly_the_layers_built_with_a_rate_buffer(layer):
    spec = ModelSpec(kind="cnn2d", hidden=(4,), kernel_size=3, dropout=parse_dropout(f"hidden=0.2:{layer}"))
    built = build_model(spec, (1, 8, 8), 3)
    placed = [m for _, m in built._placements]
    assert (layer in _RATE_BUFFER_LAYERS) == all(isinstance(m, RATE_LAYERS) for m in placed)
    plan = SpecPlan(spec, {}, TRAIN, {"name": "x"}, True, None)
    keys = {str(plan.resolve({"dropout.hidden": p}).group) for p in (0.2, 0.4)}
    assert len(keys) == (1 if layer in _RATE_BUFFER_LAYERS else 2)
