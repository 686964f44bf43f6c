"""Per-member dropout schedules in module populations (issue 21): a sweep over a scheduled rate
or its schedule of a user's model is one population, and each member's rate at every step is
the rate its run alone (the Trainer's DropoutScheduler) uses."""

from __future__ import annotations

import torch
from _toy import toy_tensors

from droplab.models import ModelSpec, build_model, parse_dropout
from droplab.nn.schedule import RateSchedule
from droplab.sweep import run_sweep
from droplab.sweep.population import Member, ModuleNet, Population
from droplab.train import TrainConfig, Trainer

TRAIN = TrainConfig(epochs=3, batch_size=40, lr=1e-2)  # 3 steps per epoch on 96 examples
CONFIGS = [
    {"p": 0.2, "schedule": "early@1"},
    {"p": 0.5, "schedule": "early@2"},
    {"p": 0.5, "schedule": "cosine@5step"},
    {"p": 0.3, "schedule": "constant"},
]


def _build(cfg):
    """A user's build function returning a built model whose spec schedules its hidden rate."""
    spec = ModelSpec(hidden=(12, 12), dropout=parse_dropout(f"hidden={cfg['p']}:{cfg['schedule']}"))
    return build_model(spec, (10,), 3)


def _data():
    x, y, xv, yv, _, _ = toy_tensors(2)
    return x[:96], y[:96], xv, yv


def test_each_member_follows_its_own_schedule_exactly_as_its_run_alone():
    members = [Member(f"c{i}", cfg, i % 2, TRAIN) for i, cfg in enumerate(CONFIGS)]
    net = ModuleNet(lambda m: _build(m.params), members)
    names = sorted(net._rows_scheduled)
    assert len(names) == 2  # both hidden layers' rates, per member
    seen = []
    step = net.train_step

    def spy(P, buffers, x, y, u, task):
        out = step(P, buffers, x, y, u, task)  # train_step writes the step's rates first
        seen.append([buffers[n].tolist() for n in names])
        return out

    net.train_step = spy
    pop = Population(net, members, _data(), "classification", compact=False)
    while not pop.done:
        pop.run_epoch()
    assert len(seen) == 9

    for k, cfg in enumerate(CONFIGS):
        model = _build(cfg)
        layers = [m for m in model.modules() if type(m).__name__ == "Dropout"]
        alone = []
        layers[0].register_forward_pre_hook(lambda mod, args: alone.append([float(l.p) for l in layers])
                                            if mod.training else None)
        Trainer(model, TRAIN.replace(seed=k % 2)).fit(_data()[:2], val=_data()[2:], task="classification")
        assert len(alone) == 9
        together = [[rates[k] for rates in row] for row in seen]
        assert together == alone, cfg  # the same floats, step by step
    # The schedules made a difference: early@1 is off from the second epoch, cosine ramps up.
    assert seen[2][0][0] == 0.2 and seen[3][0][0] == 0.0
    assert seen[0][0][2] == 0.0 and 0.0 < seen[1][0][2] < seen[2][0][2]


def test_members_that_leave_the_stack_take_their_schedules_with_them():
    members = [Member(f"c{i}", cfg, 0, TRAIN) for i, cfg in enumerate(CONFIGS)]
    net = ModuleNet(lambda m: _build(m.params), members)
    net.update_schedule(1, 3)
    name = sorted(net._rows_scheduled)[0]
    assert net._scheduled_rates[name].tolist() == [0.0, 0.5, 0.5 * RateSchedule.parse("cosine@5step").factor(3), 0.3]
    net.select_rows(torch.tensor([3, 1]))
    assert net._scheduled_rates[name].tolist() == [0.3, 0.5]
    net.update_schedule(2, 6)  # early@2 ends after two epochs
    assert net._scheduled_rates[name].tolist() == [0.3, 0.0]


def _sweep():
    pops = []
    x, y, xv, yv, xt, yt = toy_tensors(2)
    res = run_sweep(_build, data=(x, y, xv, yv), seeds=2, train=TRAIN, progress=False, on_epoch=pops.append,
                    space={"p": [0.2, 0.5], "schedule": ["early@1", "cosine@5step"]})
    return res, pops


def test_a_sweep_over_a_scheduled_rate_and_its_schedule_is_one_deterministic_population():
    res, pops = _sweep()
    assert {e["population"] for e in pops} == {pops[0]["population"]}
    assert all(e["members"] == 8 for e in pops)  # 2 rates x 2 schedules x 2 seeds
    again, _ = _sweep()
    assert [r["values"] for r in again.rows] == [r["values"] for r in res.rows]
    values = {r["key"]: r["values"] for r in res.rows}
    assert values["p=0.5,schedule=early@1"] != values["p=0.5,schedule=cosine@5step"]


def test_layers_without_a_rate_buffer_keep_their_schedule_in_the_group():
    def build(cfg):  # Gaussian dropout's rate is module configuration: one population per schedule
        spec = ModelSpec(hidden=(12,), dropout=parse_dropout(f"hidden=0.3:gaussian:{cfg['schedule']}"))
        return build_model(spec, (10,), 3)

    pops = []
    x, y, xv, yv, _, _ = toy_tensors(2)
    run_sweep(build, data=(x, y, xv, yv), seeds=2, train=TRAIN.replace(epochs=1), progress=False,
              on_epoch=pops.append, space={"schedule": ["early@1", "late@1"]})
    assert len({e["population"] for e in pops}) == 2
