"""Population training: independence of members, manual backward, masks, early stopping, checkpoints."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import binomtest
from torch import nn

from droplab.errors import ConfigError
from droplab.models import ModelSpec
from droplab.sweep.population import (
    Member,
    MLPNet,
    ModuleNet,
    Population,
    Unstackable,
    make_population,
    module_signature,
)
from droplab.train import Trainer, TrainConfig


def _data(n=240, nv=80, d=12, c=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(d, c, generator=g)
    x = torch.randn(n + nv, d, generator=g)
    y = (x @ w + 0.5 * torch.randn(n + nv, c, generator=g)).argmax(1)
    return x[:n], y[:n], x[n:], y[n:]


SPEC = ModelSpec(hidden=(16, 16), dropout={"input": 0.0, "hidden": 0.0})


def _members(rates, seeds, train):
    return [
        Member(f"p={p}", {"p": p}, s, train, rates=(0.0, p, p))
        for p in rates
        for s in seeds
    ]


def _pop(members, data=None, spec=SPEC, **kw):
    data = data or _data()
    net = MLPNet(spec, (data[0].shape[1],), 3, members, **kw)
    return Population(net, members, data, "classification")


def _train(pop):
    while not pop.done:
        pop.run_epoch()
    return pop


def test_member_matches_itself_trained_alone():
    train = TrainConfig(epochs=3, batch_size=32, lr=1e-2)
    members = _members([0.0, 0.3, 0.6], [0, 1], train)
    big = _train(_pop(members))
    for i in (1, 4):  # (p=0, seed 1) and (p=0.6, seed 0)
        alone = _train(_pop([members[i]]))
        for name in big.params:
            torch.testing.assert_close(big.params[name][i], alone.params[name][0], rtol=1e-5, atol=1e-6)
        assert big.history[i][-1]["val_loss"] == pytest.approx(alone.history[0][-1]["val_loss"], rel=1e-5)


def test_without_dropout_a_member_matches_the_trainer():
    # Same initialization (build_model seed), same data order (the trainer's generator), no
    # masks: only float rounding (fused vs. single-tensor Adam) may differ.
    x, y, xv, yv = _data()
    train = TrainConfig(epochs=3, batch_size=32, lr=1e-2, seed=0)
    spec = ModelSpec(hidden=(16, 16))
    members = [Member("a", {}, 3, train, rates=())]
    pop = _train(_pop(members, (x, y, xv, yv), spec=spec))
    from droplab.models import build_model

    model = build_model(spec, (12,), 3, seed=3)
    fit = Trainer(model, train.replace(seed=3, device="cpu")).fit((x, y), val=(xv, yv))
    for ours, ref in zip(pop.history[0], fit.history):
        for key in ("train_loss", "train_eval_loss", "val_loss", "val_acc"):
            assert ours[key] == pytest.approx(ref[key], rel=2e-3, abs=1e-4), key


def test_with_dropout_members_match_the_trainer_within_seed_noise():
    x, y, xv, yv = _data(n=300, nv=200, seed=1)
    train = TrainConfig(epochs=4, batch_size=30, lr=1e-2)
    spec = ModelSpec(hidden=(32,), dropout={"hidden": 0.5})
    seeds = list(range(6))
    members = [Member("p", {}, s, train, rates=(0.5,)) for s in seeds]
    pop = _train(_pop(members, (x, y, xv, yv), spec=spec))
    ours = torch.tensor([h[-1]["val_loss"] for h in pop.history])
    from droplab.models import build_model

    ref = []
    for s in seeds:
        model = build_model(spec, (12,), 3, seed=s)
        ref.append(Trainer(model, train.replace(seed=s, device="cpu")).fit((x, y), val=(xv, yv)).history[-1]["val_loss"])
    ref = torch.tensor(ref)
    # Same init and data order per seed; only the masks differ. Paired differences over 6 seeds
    # must be consistent with zero: |mean diff| < 4 standard errors (plus a small floor).
    diff = ours - ref
    se = diff.std() / math.sqrt(len(seeds))
    assert abs(diff.mean()) < 4 * se + 0.02


def test_manual_backward_equals_autograd():
    train = TrainConfig(epochs=1, batch_size=16)
    members = _members([0.0, 0.25, 0.5], [0, 1], train)
    manual = MLPNet(SPEC, (12,), 3, members)
    auto = MLPNet(SPEC, (12,), 3, members, manual_backward=False)
    assert manual.manual and not auto.manual
    P, _ = manual.init_params(members)
    x, y, _, _ = _data()
    idx = torch.arange(16).expand(len(members), -1)
    u = torch.rand(len(members), 16, manual.uniform_width, generator=torch.Generator().manual_seed(0))
    l1, g1 = manual.train_step(P, {}, x[idx], y[idx], u.clone(), "classification")  # u is consumed
    l2, g2 = auto.train_step(P, {}, x[idx], y[idx], u, "classification")
    torch.testing.assert_close(l1, l2)
    for name in g1:
        torch.testing.assert_close(g1[name], g2[name], rtol=1e-5, atol=1e-6)


def test_masks_are_nested_across_rates_and_drop_at_the_rate():
    train = TrainConfig(epochs=1)
    rates = [0.1, 0.3, 0.5]
    members = [Member(f"p={p}", {}, 0, train, rates=(0.0, p, p)) for p in rates]
    net = MLPNet(SPEC, (12,), 3, members)
    u = torch.rand(1, 2000, net.uniform_width, generator=torch.Generator().manual_seed(3)).repeat(3, 1, 1)
    masks = net.masks(u)
    keep = [(masks[1][k] > 0) for k in range(3)]
    for lo, hi in zip(keep, keep[1:]):  # kept at the higher rate => kept at the lower rate
        assert bool((hi <= lo).all())
    for k, p in enumerate(rates):
        dropped = int((~keep[k]).sum())
        n = keep[k].numel()
        assert binomtest(dropped, n, p).pvalue > 1e-3
        kept_values = masks[1][k][keep[k]]
        torch.testing.assert_close(kept_values, torch.full_like(kept_values, 1 / (1 - p)))


def test_members_sharing_a_seed_share_init_order_and_draws():
    train = TrainConfig(epochs=1, batch_size=16)
    members = _members([0.0, 0.4], [7], train)
    pop = _pop(members)
    for name in pop.params:
        assert torch.equal(pop.params[name][0], pop.params[name][1])
    assert len(pop.seeds) == 1 and len(pop.mask_gens) == 1  # one stream for the seed
    u = pop._uniforms(5, 0)
    assert u.shape[0] == 2
    assert torch.equal(u[0], u[1])


def test_per_member_learning_rates_and_regularizers():
    train = TrainConfig(epochs=2, batch_size=32, lr=1e-2)
    a = Member("a", {}, 0, train, rates=(0.0, 0.0, 0.0))
    b = Member("b", {}, 0, train.replace(lr=3e-2, l2=1e-3), rates=(0.0, 0.0, 0.0))
    c = Member("c", {}, 0, train.replace(max_norm=0.5), rates=(0.0, 0.0, 0.0))
    pop = _train(_pop([a, b, c]))
    assert len(pop.runs) == 3
    for m, i in ((a, 0), (b, 1), (c, 2)):
        alone = _train(_pop([m]))
        for name in pop.params:
            torch.testing.assert_close(pop.params[name][i], alone.params[name][0], rtol=1e-5, atol=1e-6)
    # max-norm: every unit's incoming weights of member c have norm <= 0.5, not so for a.
    norms = pop.params["W1"].norm(dim=1)
    assert bool((norms[2] <= 0.5 + 1e-5).all())
    assert bool((norms[0] > 0.5).any())


def test_early_stopping_freezes_each_member_with_its_best_weights():
    train = TrainConfig(epochs=8, batch_size=16, lr=0.2, optimizer="sgd", early_stopping="patience", patience=1)
    members = _members([0.0, 0.5], [0, 1], train)
    pop = _train(_pop(members))
    stopped = [i for i, s in enumerate(pop.status) if s == "early_stopped"]
    assert any(pop.stoppers[i].stopped_epoch_ < 8 for i in stopped), "lr 0.2 SGD, patience 1: someone stops early"
    for i in stopped:
        es = pop.stoppers[i]
        res = pop.result(i)
        assert res["restored"] and res["weights_epoch"] == es.best_epoch_
        assert len(pop.history[i]) == es.stopped_epoch_
        best_row = pop.history[i][es.best_epoch_ - 1]
        assert res["val_loss"] == best_row["val_loss"]
        # The frozen weights are the best epoch's: evaluating them reproduces its val loss.
        ev = pop.evaluate_members([i], pop.xv, pop.yv)
        assert ev["loss"][0] == pytest.approx(best_row["val_loss"], rel=1e-6)


def test_checkpoint_resume_is_bitwise_identical():
    train = TrainConfig(epochs=4, batch_size=32, lr=1e-2, early_stopping="patience", patience=2)
    members = _members([0.0, 0.5], [0, 1], train)
    full = _train(_pop(members))
    part = _pop(members)
    part.run_epoch()
    part.run_epoch()
    blob = part.to_bytes()
    resumed = _pop(members)
    resumed.load_bytes(blob)
    _train(resumed)
    for name in full.params:
        assert torch.equal(full.params[name], resumed.params[name])
    drop = ("seconds", "peak_mem_mb")
    for h1, h2 in zip(full.history, resumed.history):
        assert [{k: v for k, v in r.items() if k not in drop} for r in h1] == [
            {k: v for k, v in r.items() if k not in drop} for r in h2
        ]


def _rows_without_cost(pop):
    drop = ("seconds", "peak_mem_mb")
    return [[{k: v for k, v in r.items() if k not in drop} for r in h] for h in pop.history]


def _stopping_members(optimizer, schedule):
    """Members of two learning rates (two runs) of which some stop early and some do not."""
    base = TrainConfig(
        epochs=8, batch_size=16, lr=0.2 if optimizer == "sgd" else 0.05, optimizer=optimizer,
        momentum=0.9 if optimizer == "sgd" else 0.0, lr_schedule=schedule,
        early_stopping="patience", patience=1,
    )
    slow = base.replace(lr=base.lr / 10)
    return _members([0.0, 0.5], [0, 1], base) + _members([0.3], [0, 1, 2], slow)


@pytest.mark.parametrize("optimizer,schedule", [("adam", "cosine"), ("sgd", "step")])
def test_stopped_members_leave_the_stack_without_changing_anyone(optimizer, schedule):
    members = _stopping_members(optimizer, schedule)
    data = _data()
    kept = _train(Population(MLPNet(SPEC, (12,), 3, members), members, data, "classification", compact=False))
    compact = _train(Population(MLPNet(SPEC, (12,), 3, members), members, data, "classification"))
    stopped_early = [i for i, h in enumerate(kept.history) if len(h) < 8]
    assert stopped_early and len(compact.rows) < len(members) == len(kept.rows)
    assert compact.status == kept.status
    # The same training, up to float rounding: kernels block a smaller stack differently.
    for h1, h2 in zip(_rows_without_cost(compact), _rows_without_cost(kept)):
        assert [r["epoch"] for r in h1] == [r["epoch"] for r in h2]
        for r1, r2 in zip(h1, h2):
            assert r1 == pytest.approx(r2, rel=1e-5)
    for i in range(len(members)):
        for k, v in kept.final_weights(i).items():
            torch.testing.assert_close(compact.final_weights(i)[k], v, rtol=1e-4, atol=1e-6)
    # Members that stopped before any compaction are bitwise unchanged.
    for i in stopped_early[:1]:
        assert _rows_without_cost(compact)[i] == _rows_without_cost(kept)[i]


def test_resume_after_a_compaction_is_bitwise_identical():
    members = _stopping_members("adam", "cosine")
    data = _data()
    full = _train(Population(MLPNet(SPEC, (12,), 3, members), members, data, "classification"))
    part = Population(MLPNet(SPEC, (12,), 3, members), members, data, "classification")
    while len(part.rows) == len(members):
        part.run_epoch()
    blob = part.to_bytes()
    resumed = Population(MLPNet(SPEC, (12,), 3, members), members, data, "classification")
    resumed.load_bytes(blob)
    assert resumed.rows == part.rows
    _train(resumed)
    assert _rows_without_cost(resumed) == _rows_without_cost(full)
    for name in full.params:
        assert torch.equal(full.params[name], resumed.params[name])


def test_module_population_compacts_reproducibly():
    train = TrainConfig(epochs=8, batch_size=16, lr=0.05, optimizer="adam", early_stopping="patience", patience=1)
    members = [Member("m", {}, s, train) for s in (0, 1, 2, 3)]
    data = _data()

    def run():
        return _train(Population(ModuleNet(lambda m: _Net(p=0.3, bn=False), members), members, data, "classification"))

    a, b = run(), run()
    assert _rows_without_cost(a) == _rows_without_cost(b)
    assert len(a.rows) < len(members) and any(len(h) < 8 for h in a.history)  # it compacted
    for i in range(len(members)):
        for k, v in a.final_weights(i).items():
            assert torch.equal(b.final_weights(i)[k], v)


class _Net(nn.Module):
    def __init__(self, p=0.2, bn=True):
        super().__init__()
        layers = [nn.Linear(12, 16)] + ([nn.BatchNorm1d(16)] if bn else []) + [nn.ReLU(), nn.Dropout(p), nn.Linear(16, 3)]
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        return self.body(x)


def test_module_population_with_batch_norm_trains_each_member():
    train = TrainConfig(epochs=2, batch_size=32, lr=1e-2)
    members = [Member("m", {}, s, train) for s in (0, 1, 2)]
    net = ModuleNet(lambda m: _Net(), members)
    pop = _train(Population(net, members, _data(), "classification"))
    rm = pop.buffers["body.1.running_mean"]
    assert rm.shape == (3, 16) and not torch.allclose(rm[0], rm[1])
    losses = [h[-1]["train_loss"] for h in pop.history]
    assert all(math.isfinite(v) for v in losses) and losses[0] != losses[1]


def test_module_population_member_matches_single_without_dropout():
    train = TrainConfig(epochs=2, batch_size=32, lr=1e-2)
    x, y, xv, yv = _data()
    members = [Member("m", {}, s, train) for s in (0, 1)]
    net = ModuleNet(lambda m: _Net(p=0.0, bn=False), members)
    pop = _train(Population(net, members, (x, y, xv, yv), "classification"))
    with torch.random.fork_rng():
        torch.manual_seed(1)
        model = _Net(p=0.0, bn=False)
    fit = Trainer(model, train.replace(seed=1, device="cpu")).fit((x, y), val=(xv, yv))
    assert pop.history[1][-1]["val_loss"] == pytest.approx(fit.history[-1]["val_loss"], rel=2e-3)


def test_modules_of_different_structure_are_unstackable():
    train = TrainConfig(epochs=1)
    members = [Member("a", {}, 0, train), Member("b", {}, 1, train)]
    with pytest.raises(Unstackable, match="different structure"):
        ModuleNet(lambda m: _Net(bn=m.key == "a"), members)
    assert module_signature(_Net()) == module_signature(_Net())


class _ItemBranch(nn.Module):
    """torch.func cannot vectorize a Python branch on a tensor's value."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(12, 3)

    def forward(self, x):
        return self.lin(x) * 2 if x.sum().item() > 1e9 else self.lin(x)


def test_make_population_says_why_members_train_one_by_one():
    train = TrainConfig(epochs=1)
    members = [Member("a", {}, 0, train), Member("b", {}, 1, train)]
    data = _data()
    pop, why = make_population(lambda: ModuleNet(lambda m: _Net(), members), members, data, "classification")
    assert isinstance(pop, Population) and why == ""
    pop, why = make_population(lambda: ModuleNet(lambda m: _ItemBranch(), members), members, data, "classification")
    assert pop is None and "cannot vectorize" in why
    pop, why = make_population(
        lambda: ModuleNet(lambda m: _Net(bn=m.key == "a"), members), members, data, "classification"
    )
    assert pop is None and "different structure" in why
    mlp = [Member("a", {}, 0, train, rates=(0.0,) * 3), Member("b", {}, 0, train.replace(epochs=2), rates=(0.0,) * 3)]
    with pytest.raises(ConfigError, match="differs from the population"):  # the user's to fix
        make_population(lambda: MLPNet(SPEC, (12,), 3, mlp), mlp, data, "classification")


def test_mlp_net_refuses_specs_it_cannot_run():
    members = [Member("a", {}, 0, TrainConfig(), rates=())]
    with pytest.raises(Unstackable, match="batch norm"):
        MLPNet(ModelSpec(hidden=(8,), batch_norm=True), (12,), 3, members)
    with pytest.raises(Unstackable, match="gaussian"):
        MLPNet(ModelSpec(hidden=(8,), dropout={"hidden": {"p": 0.1, "layer": "gaussian"}}), (12,), 3, members)


def test_population_rejects_members_with_other_group_options():
    a = Member("a", {}, 0, TrainConfig(epochs=2), rates=())
    b = Member("b", {}, 1, TrainConfig(epochs=3), rates=())
    with pytest.raises(Exception, match="differs from the population"):
        _pop([a, b], spec=ModelSpec(hidden=(8,)))


@pytest.mark.parametrize("schedule", ["constant", "onecycle"])
def test_the_direct_adam_step_trains_bitwise_as_optimizer_step(schedule, monkeypatch):
    from droplab.sweep.population import core

    train = TrainConfig(epochs=3, batch_size=32, optimizer="adam", lr=1e-2, l2=1e-4, lr_schedule=schedule)
    members = _members([0.0, 0.5], [0, 1], train)
    fast = _train(_pop(members))
    assert all(run.direct for run in fast.runs)
    with monkeypatch.context() as m:
        m.setattr(core, "direct_step", lambda opt: None)
        slow = _train(_pop(members))
    assert not any(run.direct for run in slow.runs)
    for name in fast.params:
        assert torch.equal(fast.params[name], slow.params[name])
