"""Rates as data: per-member dropout rates under torch.func.vmap, and populations of models that
differ only in their rates (droplab.nn.rates_as_buffers, droplab.functional.member_rates).

Statistical checks: each member's drop fraction passes an exact binomial test at its own rate
(``_layer_stats.ALPHA``). Exact checks: a member computes the same bits as the float form with
its rate for the same uniforms; outside vmap the layer is unchanged.
"""

import pytest
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

import droplab.nn as dn
from droplab.functional.member_rates import (
    member_alpha_dropout,
    member_dropout,
    member_feature_alpha_dropout,
    member_spatial_dropout,
)
from droplab.functional import alpha_dropout, dropout, feature_alpha_dropout, spatial_dropout
from droplab.sweep.population import Member, ModuleNet, Population, make_population, module_signature
from droplab.train import TrainConfig
from tests.nn._layer_stats import _assert_binomial

RATES = torch.tensor([0.0, 0.1, 0.5, 0.8], dtype=torch.float64)
PAIRS = [
    (member_dropout, dropout, (64, 300)),
    (member_spatial_dropout, spatial_dropout, (64, 40, 3, 3)),
    (member_alpha_dropout, alpha_dropout, (64, 300)),
    (member_feature_alpha_dropout, feature_alpha_dropout, (64, 40, 3, 3)),
]


@pytest.mark.parametrize("member_fn, float_fn, shape", PAIRS)
def test_a_member_computes_the_bits_of_the_float_form(member_fn, float_fn, shape):
    x = torch.randn(shape)
    for p in RATES.tolist():
        torch.manual_seed(7)
        got = vmap(lambda r: member_fn(x, r), randomness="different")(torch.full((3,), p, dtype=torch.float64))
        torch.manual_seed(7)
        want = vmap(lambda r: float_fn(x, p), randomness="different")(torch.zeros(3))
        assert torch.equal(got, want), p


@pytest.mark.parametrize("member_fn, float_fn, shape", PAIRS)
def test_outside_vmap_the_float_form_runs(member_fn, float_fn, shape):
    x = torch.randn(shape)
    p = torch.tensor(0.3, dtype=torch.float64)
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    assert torch.equal(member_fn(x, p, generator=g1), float_fn(x, 0.3, generator=g2))
    assert member_fn(x, p, training=False) is x


@pytest.mark.parametrize("seed", [0, 1])
def test_each_member_drops_at_its_own_rate(seed):
    torch.manual_seed(seed)
    x = torch.ones(200, 250)
    out = vmap(lambda r: member_dropout(x, r), randomness="different")(RATES)
    for k, p in enumerate(RATES.tolist()):
        dropped = int((out[k] == 0).sum())
        if p == 0:
            assert dropped == 0 and torch.equal(out[k], x)
        else:
            _assert_binomial(dropped, x.numel(), p)
            assert torch.allclose(out[k][out[k] != 0], torch.tensor(1 / (1 - p)))


def test_eval_and_classic_mode_per_member():
    x = torch.ones(4, 5)
    ev = vmap(lambda r: member_dropout(x, r, mode="classic", training=False))(RATES)
    assert torch.allclose(ev, (1 - RATES).float()[:, None, None].expand(4, 4, 5))
    assert torch.equal(vmap(lambda r: member_dropout(x, r, training=False))(RATES), x.expand(4, 4, 5))


def test_rates_as_buffers_and_structure_repr():
    net = dn.convert(nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.3), nn.Dropout2d(0.2),
                                   nn.AlphaDropout(0.1), nn.FeatureAlphaDropout(0.05)))
    keys = list(net.state_dict())
    assert dn.rates_as_buffers(net) == ["1", "2", "3", "4"]
    assert net[1].rate.dtype == torch.float64 and net[1].rate.item() == 0.3
    assert list(net.state_dict()) == keys  # not persistent
    assert dn.structure_repr(net[1]) == "p=<member>, mode='inverted', shared_axes=()"
    assert "p=0.3" in repr(net)  # the layer still shows its rate
    other = dn.convert(nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.6), nn.Dropout2d(0.0),
                                     nn.AlphaDropout(0.2), nn.FeatureAlphaDropout(0.1)))
    assert module_signature(net) != module_signature(other)
    dn.rates_as_buffers(other)
    assert module_signature(net) == module_signature(other)
    # layers without a per-member form keep their rate in the structure
    gd = dn.GaussianDropout(0.2)
    dn.rates_as_buffers(gd)
    assert "rate" not in gd._buffers and dn.structure_repr(gd) == "p=0.2"


def test_stacked_models_use_each_members_rate():
    models = [dn.convert(nn.Sequential(nn.Dropout(p))) for p in RATES.tolist()]
    for m in models:
        dn.rates_as_buffers(m)
    params, buffers = stack_module_state(models)
    assert torch.equal(buffers["0.rate"], RATES)
    torch.manual_seed(0)
    x = torch.ones(100, 100)
    out = vmap(lambda p, b: functional_call(models[0], (p, b), (x,)), in_dims=(0, 0), randomness="different")(params, buffers)
    for k, p in enumerate(RATES.tolist()):
        if p:
            _assert_binomial(int((out[k] == 0).sum()), x.numel(), p)
        else:
            assert torch.equal(out[k], x)


def _toy():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(192, 6, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    return x[:128], y[:128], x[128:], y[128:]


def _build(m):
    return dn.convert(nn.Sequential(nn.Linear(6, 24), nn.ReLU(), nn.Dropout(m.params["p"]), nn.Linear(24, 3)))


def test_a_population_over_rates_and_seeds_is_one_population():
    cfg = TrainConfig(epochs=2, batch_size=32, lr=1e-2)
    members = [Member(key=f"p={p}", params={"p": p}, seed=s, train=cfg) for p in (0.0, 0.3, 0.6) for s in (0, 1)]
    data = _toy()
    pop, why = make_population(lambda: ModuleNet(_build, members), members, data, "classification")
    assert pop is not None, why
    assert torch.equal(pop.buffers["2.rate"], torch.tensor([0.0, 0.0, 0.3, 0.3, 0.6, 0.6], dtype=torch.float64))
    while not pop.done:
        rows = pop.run_epoch()
    assert len(rows) == 6 and all(0 <= r["val_acc"] <= 1 for r in rows.values())
    # rate 0 draws nothing random: its members equal a population of rate-0 members alone
    alone_members = [m for m in members if m.params["p"] == 0.0]
    alone = Population(ModuleNet(_build, alone_members), alone_members, data, "classification")
    while not alone.done:
        alone_rows = alone.run_epoch()
    for i in (0, 1):
        assert rows[i]["val_acc"] == alone_rows[i]["val_acc"]
        assert rows[i]["train_loss"] == pytest.approx(alone_rows[i]["train_loss"], rel=1e-5)


def test_population_over_rates_is_deterministic():
    cfg = TrainConfig(epochs=1, batch_size=32)
    members = [Member(key=f"p={p}", params={"p": p}, seed=0, train=cfg) for p in (0.2, 0.5)]

    def run():
        pop = Population(ModuleNet(_build, members), members, _toy(), "classification")
        rows = pop.run_epoch()
        return [rows[i]["train_loss"] for i in range(2)]

    assert run() == run()


def test_shared_axes_per_member_and_their_range_check():
    from droplab.errors import ConfigError

    x = torch.ones(8, 6, 5)
    out = vmap(lambda r: member_dropout(x, r, shared_axes=(1,)), randomness="different")(RATES)
    assert torch.equal(out, out[:, :, :1, :].expand_as(out))  # one mask value along axis 1
    with pytest.raises(ConfigError, match="shared_axes entry 3 is out of range for a 3D input"):
        vmap(lambda r: member_dropout(x, r, shared_axes=(3,)), randomness="different")(RATES)
