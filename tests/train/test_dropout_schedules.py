"""Dropout schedules applied by the trainer: the rate of every layer at every step, and resume."""

from __future__ import annotations

import pytest
import torch

from droplab.errors import ConfigError
from droplab.models import ModelSpec, build_model, parse_dropout
from droplab.nn import Dropout
from droplab.train import Checkpoint, DropoutScheduler, TrainConfig, Trainer
from droplab.train.schedules import scheduled_layers
from droplab.train.trainer import TIMING_KEYS

N, BATCH, EPOCHS = 48, 16, 4  # 3 steps per epoch, 12 steps


def _record(model, layers):
    """Rates of ``layers`` at every training forward pass (one per optimizer step)."""
    seen = []

    def hook(module, args):
        if module.training:
            seen.append([float(l.p) for l in layers])

    model.register_forward_pre_hook(hook)
    return seen


CASES = [
    # (spec kwargs, input shape, x maker)
    (dict(kind="mlp", hidden=(8, 8), dropout="input=0.2:late@1,hidden=0.4:early@5step"), (6,), "real"),
    (dict(kind="mlp", hidden=(8, 8), dropout="hidden=0.4:classic:linear@4step"), (6,), "real"),
    (dict(kind="mlp", hidden=(8,), dropout="input=0.1:gaussian:cosine@3,hidden=0.3:alpha:curriculum@0.5step"), (6,), "real"),
    (dict(kind="mlp", hidden=(8, 8), dropout="hidden=0.3:dropconnect:depth:early@2"), (6,), "real"),
    (dict(kind="cnn1d", hidden=(4, 4), dropout="input=0.2:spatial:late@5step,hidden=0.3:dropblock:block_size=3:linear@2"), (1, 12), "real"),
    (dict(kind="gru", hidden=(8,), vocab_size=10, dropout="embedding=0.2:early@1,input=0.2:locked:cosine@6step,recurrent=0.3:weight:late@2"), (7,), "tokens"),
    (dict(kind="transformer", hidden=(8,), heads=2, layers=2, dropout="attention=0.2:early@7step,hidden=0.3:droppath:depth:linear@3,block=0.2:late@4step"), (5,), "real"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0]["dropout"] for c in CASES])
def test_every_layer_gets_its_scheduled_rate_at_every_step(case):
    kw, shape, kind = case
    kw = dict(kw, dropout=parse_dropout(kw["dropout"]))
    spec = ModelSpec(**kw)
    model = build_model(spec, shape, 3, seed=0)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 10, (N, *shape), generator=g) if kind == "tokens" else torch.randn(N, *shape, generator=g)
    y = torch.randint(0, 3, (N,), generator=g)
    targets = scheduled_layers(model)
    assert targets and len(targets) == len(model._placements)
    layers = [m for m, _, _ in targets]
    seen = _record(model, layers)
    Trainer(model, TrainConfig(epochs=EPOCHS, batch_size=BATCH, seed=0)).fit((x, y))
    steps = N // BATCH
    assert len(seen) == EPOCHS * steps
    for step, rates in enumerate(seen):
        epoch = step // steps
        expect = [s.rate(p, step if s.unit == "step" else epoch) for _, p, s in targets]
        assert rates == pytest.approx(expect, abs=1e-12), step
    # The schedule scales the rate each layer was built with (depth rule included).
    d = spec.dropout
    assert [p for _, p, _ in targets] == pytest.approx(
        [d[label.split("[")[0]].rate(int(label[-2]) if label.endswith("]") and label.startswith("hidden") else 0)
         for label, _ in model._placements]
    )


def test_a_model_without_schedules_gets_no_scheduler():
    model = build_model(ModelSpec(hidden=(8,), dropout={"hidden": 0.3}), (6,), 3, seed=0)
    assert not any(isinstance(cb, DropoutScheduler) for cb in Trainer(model).callbacks)
    model = build_model(ModelSpec(hidden=(8,), dropout=parse_dropout("hidden=0.3:late@1")), (6,), 3, seed=0)
    assert isinstance(Trainer(model).callbacks[0], DropoutScheduler)


def test_named_layers_of_any_model_follow_a_table():
    net = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), Dropout(0.3), torch.nn.Linear(8, 3))
    x, y = torch.randn(N, 6), torch.randint(0, 3, (N,))
    seen = _record(net, [net[2]])
    Trainer(net, TrainConfig(epochs=4, batch_size=BATCH), [DropoutScheduler({"2": "late@2"})]).fit((x, y))
    assert [r[0] for r in seen] == [0.0] * 6 + [0.3] * 6
    with pytest.raises(ConfigError, match="no submodule 'drop'"):
        Trainer(net, TrainConfig(epochs=1), [DropoutScheduler({"drop": "late@2"})]).fit((x, y))
    with pytest.raises(ConfigError, match="no fixed rate p"):
        Trainer(net, TrainConfig(epochs=1), [DropoutScheduler({"0": "late@2"})]).fit((x, y))
    with pytest.raises(ConfigError, match="cannot parse schedule"):
        DropoutScheduler({"2": "late@two"})
    with pytest.raises(ConfigError, match="must be a table"):
        DropoutScheduler(["late@2"])


def test_a_schedule_survives_resume_exactly(tmp_path):
    spec = ModelSpec(hidden=(16,), dropout=parse_dropout("input=0.2:cosine@7step,hidden=0.5:early@2"))
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(N, 6, generator=g), torch.randint(0, 3, (N,), generator=g)
    cfg = TrainConfig(epochs=4, batch_size=BATCH, seed=3, lr=1e-2)
    full_model = build_model(spec, (6,), 3, seed=0)
    full_seen = _record(full_model, [m for m, _, _ in scheduled_layers(full_model)])
    full = Trainer(full_model, cfg, [Checkpoint(tmp_path, filename="e{epoch}.pt")]).fit((x, y), val=(x, y))
    resumed_model = build_model(spec, (6,), 3, seed=9)
    seen = _record(resumed_model, [m for m, _, _ in scheduled_layers(resumed_model)])
    resumed = Trainer(resumed_model, cfg).fit((x, y), val=(x, y), resume=tmp_path / "e2.pt")
    assert seen == full_seen[2 * 3:]  # steps 6..11 at the same rates
    strip = lambda h: [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in h]  # noqa: E731
    assert strip(resumed.history) == strip(full.history)
    for a, b in zip(full_model.state_dict().values(), resumed_model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
