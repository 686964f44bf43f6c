"""R-Drop: the objective against a hand computation, two passes per step, config and fallbacks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import droplab.nn as dn
from droplab.errors import ConfigError
from droplab.train import TrainConfig, Trainer
from droplab.train.rdrop import rdrop_loss


def _net(p=0.3):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), dn.Dropout(p), nn.Linear(16, 3))


def _xy(n=40):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 6, generator=g), torch.randint(0, 3, (n,), generator=g)


def test_objective_is_half_the_papers_eq3():
    net, (x, y) = _net(), _xy()
    torch.manual_seed(7)
    task, total = rdrop_loss(net, x, y, alpha=2.0)
    torch.manual_seed(7)
    o1, o2 = net(x), net(x)
    assert not torch.equal(o1, o2)  # two masks
    p1, p2 = o1.softmax(-1), o2.softmax(-1)
    kl12 = (p1 * (p1.log() - p2.log())).sum(-1).mean()
    kl21 = (p2 * (p2.log() - p1.log())).sum(-1).mean()
    nll = F.cross_entropy(o1, y) + F.cross_entropy(o2, y)
    paper = nll + 2.0 / 2 * (kl12 + kl21)  # Liang et al. 2021, eq. (3)
    torch.testing.assert_close(total, paper / 2)
    torch.testing.assert_close(task, nll / 2)


def test_without_dropout_the_kl_term_vanishes():
    net, (x, y) = _net(0.0), _xy()
    task, total = rdrop_loss(net, x, y, alpha=5.0)
    assert torch.equal(task, total)
    torch.testing.assert_close(task, F.cross_entropy(net(x), y))


def test_regression_uses_the_squared_difference():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 16), dn.Dropout(0.5), nn.Linear(16, 2))
    x, y = torch.randn(30, 6), torch.randn(30, 2)
    torch.manual_seed(3)
    task, total = rdrop_loss(net, x, y, alpha=1.0, classification=False)
    torch.manual_seed(3)
    o1, o2 = net(x), net(x)
    torch.testing.assert_close(task, 0.5 * (F.mse_loss(o1, y) + F.mse_loss(o2, y)))
    torch.testing.assert_close(total, task + 0.5 * F.mse_loss(o1, o2))


def test_trainer_runs_two_passes_per_step_and_is_deterministic():
    x, y = _xy(64)
    calls = []
    cfg = TrainConfig(epochs=2, batch_size=16, rdrop=1.0, seed=0)
    net = _net()
    net.register_forward_pre_hook(lambda m, a: calls.append(m.training))
    a = Trainer(net, cfg).fit((x, y), val=(x, y))
    assert calls.count(True) == 2 * 2 * 4  # two passes x 4 steps x 2 epochs
    b = Trainer(_net(), cfg).fit((x, y), val=(x, y))
    c = Trainer(_net(), cfg.replace(rdrop=0.0)).fit((x, y), val=(x, y))
    strip = lambda h: [{k: v for k, v in r.items() if k not in ("seconds", "peak_mem_mb")} for r in h]  # noqa: E731
    assert strip(a.history) == strip(b.history) and strip(a.history) != strip(c.history)


def test_config_and_population_fallback():
    with pytest.raises(ConfigError, match="rdrop must be"):
        TrainConfig(rdrop=-1.0)
    from droplab.models import ModelSpec
    from droplab.sweep.population import Member, MLPNet, make_population

    x, y = _xy(64)
    spec = ModelSpec(hidden=(8,), dropout={"hidden": 0.3})
    members = [Member("a", {}, 0, TrainConfig(epochs=1, rdrop=1.0), rates=(0.3,))]
    pop, reason = make_population(lambda: MLPNet(spec, (6,), 3, members), members, (x, y, x, y), "classification")
    assert pop is None and "R-Drop" in reason
