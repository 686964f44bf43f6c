"""Deep ensembles as populations: members, averaging, bootstrap, the Gaussian NLL head."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import droplab
from droplab.errors import ConfigError, DataError
from droplab.inference import mc_predict
from droplab.models import ModelSpec
from droplab.sweep.ensemble import Ensemble
from droplab.sweep.population import _loss_and_grad_out, gaussian_nll
from droplab.train import TrainConfig

CFG = TrainConfig(epochs=2, batch_size=50, eval_train=False, device="cpu")


def _toy(n=200, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    y = (x[:, :classes] * 2).argmax(1)
    return x, y


def test_population_ensemble_averages_distinct_members_and_feeds_mc_predict():
    x, y = _toy()
    spec = ModelSpec(kind="mlp", hidden=(16,), dropout={"hidden": 0.1})
    deep = droplab.ensemble(spec, (x[:150], y[:150], x[150:], y[150:]), members=3, train=CFG)
    assert isinstance(deep, Ensemble) and deep.members == 3 and not deep.training
    assert len(deep.history) == 3 and all(len(h) == 2 for h in deep.history)
    with torch.no_grad():
        outs = torch.stack([net(x) for net in deep.nets])
        probs = deep(x)
    assert not torch.equal(outs[0], outs[1])  # different seeds, different members
    torch.testing.assert_close(probs, outs.softmax(-1).mean(0))
    res = mc_predict(deep, x, draws=True)
    assert res.mode == "members" and res.samples == 3
    torch.testing.assert_close(res.mean, probs)
    torch.testing.assert_close(res.draws, outs.softmax(-1))
    # member 0 equals the population's own record of its final validation accuracy
    acc0 = float((outs[0, 150:].argmax(1) == y[150:]).double().mean())
    assert acc0 == pytest.approx(deep.history[0][-1]["val_acc"], abs=1e-6)


def test_bootstrap_resamples_are_seeded_and_change_the_members():
    x, y = _toy()
    spec = ModelSpec(kind="mlp", hidden=(8,))
    plain = droplab.ensemble(spec, (x, y), members=2, train=CFG)
    boot = droplab.ensemble(spec, (x, y), members=2, train=CFG, bootstrap=True)
    again = droplab.ensemble(spec, (x, y), members=2, train=CFG, bootstrap=True)
    with torch.no_grad():
        a, b, c = plain.member_forward(x), boot.member_forward(x), again.member_forward(x)
    assert not torch.equal(a, b) and torch.equal(b, c)


def test_a_module_builder_trains_through_vmap():
    x, y = _toy()

    def build():
        return nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Dropout(0.2), nn.Linear(12, 3))

    deep = droplab.ensemble(build, (x, y), members=2, train=CFG)
    with torch.no_grad():
        out = deep.member_forward(x)
    assert out.shape == (2, 200, 3) and not torch.equal(out[0], out[1])


def test_gaussian_nll_and_its_hand_written_gradient():
    g = torch.Generator().manual_seed(0)
    out = torch.randn(3, 7, 4, generator=g, dtype=torch.float64)
    y = torch.randn(3, 7, 2, generator=g, dtype=torch.float64)
    var = F.softplus(out[..., 2:]) + 1e-6
    want = 0.5 * torch.log(2 * math.pi * var) + (y - out[..., :2]) ** 2 / (2 * var)
    torch.testing.assert_close(gaussian_nll(out, y), want)
    torch.testing.assert_close(gaussian_nll(out, y), -torch.distributions.Normal(out[..., :2], var.sqrt()).log_prob(y))
    req = out.clone().requires_grad_()
    gaussian_nll(req, y).mean((1, 2)).sum().backward()
    losses, grad = _loss_and_grad_out(out, y, "gaussian")
    torch.testing.assert_close(losses, gaussian_nll(out, y).mean((1, 2)))
    torch.testing.assert_close(grad, req.grad)
    with pytest.raises(DataError, match="a Gaussian head needs 2 x 2 outputs"):
        gaussian_nll(out[..., :3], y)


def test_gaussian_ensemble_learns_heteroscedastic_noise_and_mixes():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(600, 1, generator=g) * 4 - 2
    y = (x.sin() + torch.randn(600, 1, generator=g) * (0.05 + 0.3 * (x > 0))).squeeze(1)
    spec = ModelSpec(kind="mlp", hidden=(32, 32))
    cfg = TrainConfig(epochs=60, lr=1e-2, batch_size=100, eval_train=False, device="cpu")
    deep = droplab.ensemble(spec, (x, y), members=3, train=cfg, task="gaussian")
    with torch.no_grad():
        out = deep.member_forward(x)
        mix = deep(x)
    assert out.shape == (3, 600, 2) and mix.shape == (600, 2)
    mu, var = out[..., :1], F.softplus(out[..., 1:]) + 1e-6
    torch.testing.assert_close(mix[:, :1], mu.mean(0))
    torch.testing.assert_close(mix[:, 1:], (var + mu**2).mean(0) - mu.mean(0) ** 2)
    first, last = deep.history[0][0]["train_loss"], deep.history[0][-1]["train_loss"]
    assert last < first
    # noise sd 0.35 where x > 0 and 0.05 elsewhere: the learned variance follows it
    assert mix[x[:, 0] > 0.5, 1].mean() > 4 * mix[x[:, 0] < -0.5, 1].mean()


def test_errors():
    x, y = _toy()
    spec = ModelSpec(kind="mlp", hidden=(8,))
    with pytest.raises(ConfigError, match="members must be a positive integer"):
        droplab.ensemble(spec, (x, y), members=0)
    with pytest.raises(ConfigError, match="task must be one of"):
        droplab.ensemble(spec, (x, y), task="poisson")
    with pytest.raises(DataError, match="data must be a droplab Splits"):
        droplab.ensemble(spec, [1, 2])
    with pytest.raises(DataError, match="classification needs integer class labels"):
        droplab.ensemble(spec, (x, y.float()), task="classification")
    with pytest.raises(ConfigError, match="build must be a ModelSpec"):
        droplab.ensemble(3, (x, y))
    with pytest.raises(ConfigError, match="an ensemble needs at least one member"):
        Ensemble([])
