"""One uncertainty API: mc_predict over MC dropout, deep ensembles, Masksembles, BatchEnsemble."""

import pytest
import torch
from torch import nn

import droplab.nn as dn
from droplab.errors import ConfigError
from droplab.inference import MCResult, mc_predict
from droplab.inference.members import member_count, member_outputs
from droplab.sweep.ensemble import Ensemble


def _models():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        g = torch.Generator().manual_seed(0)
        return {
            "mc_dropout": nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 3)),
            "ensemble": Ensemble([nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3)) for _ in range(5)]),
            "masksembles": nn.Sequential(nn.Linear(6, 16), nn.ReLU(), dn.Masksembles(16, 4, 2.0, generator=g), nn.Linear(16, 3)),
            "batchensemble": nn.Sequential(dn.BatchEnsembleLinear(6, 16, 4, generator=g), nn.ReLU(), dn.BatchEnsembleLinear(16, 3, 4, generator=g)),
        }


@pytest.mark.parametrize("name", ["mc_dropout", "ensemble", "masksembles", "batchensemble"])
def test_every_kind_returns_the_same_result(name):
    model = _models()[name]
    x = torch.randn(9, 6)
    res = mc_predict(model, x, samples=10, seed=0, draws=True, batch_size=4)
    assert isinstance(res, MCResult)
    k = {"mc_dropout": 10, "ensemble": 5, "masksembles": 4, "batchensemble": 4}[name]
    assert res.samples == k and res.draws.shape == (k, 9, 3)
    torch.testing.assert_close(res.mean, res.draws.double().mean(0).float())
    torch.testing.assert_close(res.probs.sum(1), torch.ones(9))
    # predictive entropy = expected entropy + mutual information (member disagreement), all >= 0
    torch.testing.assert_close(res.predictive_entropy, res.expected_entropy + res.mutual_information, atol=1e-5, rtol=0)
    assert (res.mutual_information > 0).all()
    assert res.predictions().shape == (9,)
    assert (res.mode == "members") == (name != "mc_dropout")


def test_member_helpers():
    models = _models()
    assert member_count(models["mc_dropout"]) is None
    assert member_count(models["ensemble"]) == 5 and member_count(models["masksembles"]) == 4
    out = member_outputs(models["batchensemble"], torch.randn(3, 6))
    assert out.shape == (4, 3, 3)
    with pytest.raises(ConfigError, match="is no ensemble"):
        member_outputs(models["mc_dropout"], torch.randn(3, 6))
