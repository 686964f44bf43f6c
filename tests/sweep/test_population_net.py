"""population_net / mlp_rates: the one place that picks the batched MLP or the torch.func engine."""

from __future__ import annotations

import pytest
import torch

from droplab.errors import ConfigError
from droplab.models import DropoutSpec, ModelSpec
from droplab.sweep.population import (
    Member,
    MLPNet,
    ModuleNet,
    Unstackable,
    make_population,
    mlp_fast_path,
    mlp_rates,
    population_net,
)
from droplab.train import TrainConfig


def _members(rates, n=2):
    return [Member(f"m{s}", {}, s, TrainConfig(epochs=1, batch_size=20), rates) for s in range(n)]


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(60, 6, generator=g)
    return x[:40], (x[:40, 0] > 0).long(), x[40:], (x[40:, 0] > 0).long()


def test_mlp_rates_follow_mlp_positions():
    spec = ModelSpec(kind="mlp", hidden=(8, 8), dropout={"input": 0.1, "hidden": DropoutSpec((0.3, 0.2))})
    assert mlp_rates(spec) == (0.1, 0.3, 0.2)
    spec = ModelSpec.from_dict({"kind": "mlp", "hidden": [8], "dropout": {"hidden": {"p": 0.2, "layer": "classic"}}})
    assert mlp_rates(spec) == (0.2,)
    gauss = ModelSpec.from_dict({"kind": "mlp", "hidden": [8], "dropout": {"hidden": {"p": 0.2, "layer": "gaussian"}}})
    assert mlp_fast_path(gauss) == "dropout layer 'gaussian' at 'hidden' is trained through vmap"
    assert mlp_rates(gauss) is None


def test_batched_mlp_where_it_can():
    spec = ModelSpec(kind="mlp", hidden=(8,), dropout={"hidden": 0.2})
    members = _members(mlp_rates(spec))
    pop, why = make_population(population_net(spec, (6,), 2, members), members, _data(), "classification")
    assert why == "" and isinstance(pop.net, MLPNet)


@pytest.mark.parametrize(
    "spec, rates",
    [
        (ModelSpec(kind="mlp", hidden=(8,), batch_norm=True, dropout={"hidden": 0.2}), (0.2,)),  # MLPNet refuses
        (ModelSpec(kind="mlp", hidden=(8,), dropout={"hidden": 0.2}), None),  # members bring no rates
    ],
)
def test_torch_func_otherwise(spec, rates):
    members = _members(rates)
    pop, why = make_population(population_net(spec, (6,), 2, members), members, _data(), "classification")
    assert why == "" and isinstance(pop.net, ModuleNet)


def test_own_build_function_and_errors_are_not_swallowed():
    spec = ModelSpec(kind="mlp", hidden=(8,), batch_norm=True)
    built = []

    def build(m):
        built.append(m.seed)
        return torch.nn.Sequential(torch.nn.Linear(6, 2))

    members = _members(None)
    net = population_net(spec, (6,), 2, members, build)()
    assert isinstance(net, ModuleNet) and built == [0, 1]
    spec = ModelSpec(kind="mlp", hidden=(8,), dropout={"hidden": 0.2})
    with pytest.raises(ConfigError, match="gives 2 dropout rates for 1 dropout positions"):
        population_net(spec, (6,), 2, _members((0.1, 0.2)))()
    with pytest.raises(Unstackable, match="batch norm"):
        MLPNet(ModelSpec(kind="mlp", hidden=(8,), batch_norm=True), (6,), 2, _members(()))
