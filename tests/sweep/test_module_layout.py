"""ModuleNet's channels-last image path: faster grouped convolutions, the same numbers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import droplab.nn as dn
from droplab.sweep.population import Member, ModuleNet, Population
from droplab.train import TrainConfig


class _CNN(nn.Module):
    def __init__(self, p: float) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 3, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.drop = nn.Dropout(p)
        self.fc = nn.Linear(4 * 3 * 3, 3)

    def forward(self, x):
        x = F.relu(self.conv2(F.relu(self.conv1(x))))
        return self.fc(self.drop(x.flatten(1)))


def _train(channels_last: bool, monkeypatch, optimizer: str = "adam"):
    monkeypatch.setattr(ModuleNet, "use_channels_last", channels_last)
    g = torch.Generator().manual_seed(0)
    x, xv = torch.randn(48, 1, 10, 10, generator=g), torch.randn(20, 1, 10, 10, generator=g)
    y, yv = torch.randint(0, 3, (48,), generator=g), torch.randint(0, 3, (20,), generator=g)
    cfg = TrainConfig(epochs=3, batch_size=8, lr=0.01, optimizer=optimizer)
    members = [Member(f"p={p}", {"p": p}, s, cfg) for p in (0.0, 0.4) for s in (0, 1)]
    net = ModuleNet(lambda m: dn.convert(_CNN(m.params["p"])), members)
    assert net.channels_last == channels_last  # the first layer with parameters is a Conv2d
    pop = Population(net, members, (x, y, xv, yv), "classification")
    rows = {}
    while not pop.done:
        rows = pop.run_epoch()
    return rows


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_channels_last_trains_to_the_same_numbers(monkeypatch, optimizer):
    new, old = _train(True, monkeypatch, optimizer), _train(False, monkeypatch, optimizer)
    for i in old:  # rounding apart, the same training (the dropout masks included)
        for key in ("train_loss", "val_loss", "val_acc"):
            assert new[i][key] == pytest.approx(old[i][key], rel=1e-4, abs=1e-5), (i, key)


def test_gradients_come_in_the_parameters_layout():
    members = [Member("a", {}, s, TrainConfig()) for s in (0, 1)]
    net = ModuleNet(lambda m: _CNN(0.0), members)
    P, B = net.init_params(members)
    x, y = torch.randn(2, 4, 1, 10, 10), torch.randint(0, 3, (2, 4))
    _, grads = net.train_step(P, B, x, y, None, "classification")
    assert all(g.is_contiguous() and g.shape == P[n].shape for n, g in grads.items())


def test_models_that_do_not_start_with_a_conv2d_keep_the_default_layout():
    members = [Member("a", {}, 0, TrainConfig())]
    net = ModuleNet(lambda m: nn.Sequential(nn.Flatten(), nn.Linear(16, 2)), members)
    assert net.channels_last is False


def test_activation_width_is_the_widest_module_output_per_example():
    members = [Member("a", {}, s, TrainConfig()) for s in (0, 1)]
    net = ModuleNet(lambda m: _CNN(0.0), members)
    x = torch.randn(7, 1, 10, 10)
    assert net.activation_width(x) == 100  # the input; conv1 gives 3 x 5 x 5 = 75
    wide = ModuleNet(lambda m: nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.Flatten(), nn.Linear(800, 2)), members)
    assert wide.activation_width(x) == 800
    assert wide.template.training  # measured in eval mode, handed back in train mode


def test_chunked_module_evaluation_gives_the_unchunked_numbers(monkeypatch):
    # 8 KiB chunks: 2 members x 100 values x 4 bytes = 800 bytes a row, so 10 rows a chunk
    g = torch.Generator().manual_seed(0)
    x, xv = torch.randn(16, 1, 10, 10, generator=g), torch.randn(37, 1, 10, 10, generator=g)
    y, yv = torch.randint(0, 3, (16,), generator=g), torch.randint(0, 3, (37,), generator=g)
    members = [Member(f"p={p}", {"p": p}, 0, TrainConfig(eval_batch_size=500)) for p in (0.0, 0.4)]
    pop = Population(ModuleNet(lambda m: dn.convert(_CNN(m.params["p"])), members), members,
                     (x, y, xv, yv), "classification")
    whole = pop.evaluate(pop.xv, pop.yv)
    import droplab.sweep.population.core as core

    monkeypatch.setattr(core, "_EVAL_CHUNK_BYTES", 8 << 10)
    calls = []
    predict = pop.net.predict
    monkeypatch.setattr(pop.net, "predict", lambda P, B, xb: calls.append(len(xb)) or predict(P, B, xb))
    chunked = pop.evaluate(pop.xv, pop.yv)
    assert calls == [10, 10, 10, 7]
    assert chunked["acc"] == whole["acc"]
    assert chunked["loss"] == pytest.approx(whole["loss"], rel=1e-6)
