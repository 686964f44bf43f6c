"""A placement sweep over a user's own models: sites x rates through run_sweep, with the models
of tests/nn/test_sites.py (a torchvision-style ResNet and a small transformer)."""

import pytest
import torch

import droplab.nn as dn
from droplab.sweep import run_sweep
from droplab.train import TrainConfig
from tests.nn.test_sites import TinyResNet, TinyTransformer


def _sweep(model_cls, x, y, sites):
    def build(cfg):
        return dn.insert_dropout(model_cls(), {cfg["site"]: cfg["dropout"]})

    n = len(x) * 3 // 4
    return run_sweep(build, data=(x[:n], y[:n], x[n:], y[n:]),
                     space={"site": sites, "dropout": [0.0, 0.3]}, seeds=2,
                     train=TrainConfig(epochs=1, batch_size=16), progress=False)


@pytest.mark.slow
def test_placement_sweep_over_a_resnet():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 1, 8, 8, generator=g), torch.randint(0, 3, (64,), generator=g)
    res = _sweep(TinyResNet, x, y, ["after:layer1.0", "before:fc"])
    assert len(res.rows) == 4 and all(r["n"] == 2 for r in res.rows)
    assert res.best in {r["key"] for r in res.rows}
    # the rate axis is named "dropout": each site's rate-0 run is its paired baseline
    assert any(r["diff"] is not None for r in res.rows)


@pytest.mark.slow
def test_placement_sweep_over_a_transformer():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randint(0, 20, (64, 6), generator=g), torch.randint(0, 2, (64,), generator=g)
    res = _sweep(TinyTransformer, x, y, ["after:layers.0", "after:layers.1.ff.1", "before:head"])
    assert len(res.rows) == 6 and all(r["n"] == 2 for r in res.rows)
