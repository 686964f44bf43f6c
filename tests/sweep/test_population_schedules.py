"""Dropout schedules in populations and sweeps: per-member rates at every step, and resume."""

from __future__ import annotations

import pytest
import torch
from _toy import toy_tensors

from droplab.errors import ConfigError
from droplab.models import ModelSpec, parse_dropout
from droplab.nn.schedule import RateSchedule
from droplab.sweep import Store, run_sweep
from droplab.sweep.population import Member, MLPNet, ModuleNet, Population
from droplab.train import TrainConfig

TIMING = ("seconds", "peak_mem_mb", "population_seconds")
SPEC = ModelSpec(hidden=(12, 12), dropout={"input": 0.0, "hidden": 0.0})


def _data():
    x, y, xv, yv, _, _ = toy_tensors(2)
    return x[:96], y[:96], xv, yv


def _spy(net):
    """Record the per-member rates each training step uses: ``[(K, positions) list per step]``."""
    seen = []
    step = net.train_step

    def wrapped(P, buffers, x, y, u, task):
        seen.append([[float(net.p_cols[k, 0, a]) for a, _ in net.columns.values()] for k in range(len(net.p_cols))])
        return step(P, buffers, x, y, u, task)

    net.train_step = wrapped
    return seen


def test_members_of_one_population_follow_their_own_schedules_at_every_step():
    train = TrainConfig(epochs=4, batch_size=32, lr=1e-2)  # 3 steps per epoch
    plan = [
        ((0.2, 0.5, 0.5), ("late@1", "early@2", "early@2")),
        ((0.0, 0.3, 0.6), (None, "linear@5step", "cosine@4step")),
        ((0.1, 0.4, 0.4), ("curriculum@0.3step", None, "constant")),
        ((0.1, 0.4, 0.4), None),  # takes the spec's (none: constant)
    ]
    members = [Member(f"m{i}", {}, i % 2, train, rates=r, schedules=s) for i, (r, s) in enumerate(plan)]
    net = MLPNet(SPEC, (10,), 3, members)
    seen = _spy(net)
    pop = Population(net, members, _data(), "classification", compact=False)
    while not pop.done:
        pop.run_epoch()
    assert len(seen) == 12
    for step, rows in enumerate(seen):
        epoch = step // 3
        for k, (rates, scheds) in enumerate(plan):
            expect = [
                p if s is None else RateSchedule.parse(s).rate(p, step if "step" in s else epoch)
                for p, s in zip(rates, scheds or (None,) * 3)
            ]
            assert rows[k] == pytest.approx(expect, abs=1e-6), (step, k)


def test_a_population_member_equals_itself_trained_alone_with_its_schedule():
    train = TrainConfig(epochs=3, batch_size=32, lr=1e-2)
    members = [
        Member("a", {}, 0, train, rates=(0.0, 0.5, 0.5), schedules=(None, "early@1", "early@1")),
        Member("b", {}, 0, train, rates=(0.0, 0.5, 0.5), schedules=(None, "late@1", "late@1")),
    ]
    big = Population(MLPNet(SPEC, (10,), 3, members), members, _data(), "classification")
    alone = Population(MLPNet(SPEC, (10,), 3, members[1:]), members[1:], _data(), "classification")
    for pop in (big, alone):
        while not pop.done:
            pop.run_epoch()
    for name in big.params:
        torch.testing.assert_close(big.params[name][1], alone.params[name][0], rtol=1e-5, atol=1e-6)
    assert big.history[0] != big.history[1]  # the schedules made a difference


def test_member_schedules_must_match_the_positions():
    train = TrainConfig(epochs=1)
    with pytest.raises(ConfigError, match="gives 1 dropout schedules for 3"):
        MLPNet(SPEC, (10,), 3, [Member("a", {}, 0, train, rates=(0.0, 0.1, 0.1), schedules=("early@1",))])


def test_a_module_population_applies_the_spec_schedule_to_its_layers():
    spec = ModelSpec(hidden=(12,), dropout=parse_dropout("hidden=0.4:gaussian:late@3step"))
    from droplab.models import build_model

    train = TrainConfig(epochs=2, batch_size=32)
    members = [Member("a", {}, s, train) for s in (0, 1)]
    net = ModuleNet(lambda m: build_model(spec, (10,), 3), members)
    layer = net._scheduled[0][0]
    seen = []
    step = net.train_step

    def wrapped(*a):
        seen.append(layer.p)
        return step(*a)

    net.train_step = wrapped
    pop = Population(net, members, _data(), "classification")
    while not pop.done:
        pop.run_epoch()
    assert seen == pytest.approx([0.0, 0.0, 0.0, 0.4, 0.4, 0.4])


def _store_rows(path):
    with Store.open(path, mode="r") as st:
        runs = [(r["key"], r["seed"], r["status"], r["result"], r["epochs_run"]) for r in st.runs()]
        epochs = [{k: v for k, v in e.items() if k not in TIMING} for e in st.epochs()]
    return runs, epochs


class _Stop(Exception):
    pass


def test_a_scheduled_sweep_cut_and_resumed_equals_the_uninterrupted_one(tmp_path):
    x, y, xv, yv, xt, yt = toy_tensors(1)
    data = (x, y, xv, yv, xt, yt)
    kw = dict(
        space={"dropout.hidden": [0.0, 0.4], "dropout.hidden.schedule": ["early@2", "cosine@5step"]},
        seeds=2, train=TrainConfig(epochs=4, batch_size=40, lr=1e-2), progress=False,
        checkpoint_seconds=0,
    )
    spec = ModelSpec(hidden=(16,), dropout={"hidden": 0.0})
    ref = run_sweep(spec, data=data, store=tmp_path / "ref.db", **kw)
    calls = []

    def crash(info):
        calls.append(info["epoch"])
        if len(calls) == 2:
            raise _Stop

    with pytest.raises(_Stop):
        run_sweep(spec, data=data, store=tmp_path / "cut.db", on_epoch=crash, **kw)
    again = run_sweep(spec, data=data, store=tmp_path / "cut.db", **kw)
    assert _store_rows(tmp_path / "ref.db") == _store_rows(tmp_path / "cut.db")
    assert [r["values"] for r in again.rows] == [r["values"] for r in ref.rows]
    runs, _ = _store_rows(tmp_path / "ref.db")
    assert len(runs) == 8
    # The two schedules at p=0.4 give different results: the schedule took effect.
    by_key = {r["key"]: r["values"] for r in ref.rows}
    assert by_key["dropout.hidden=0.4,dropout.hidden.schedule=early@2"] != by_key[
        "dropout.hidden=0.4,dropout.hidden.schedule=cosine@5step"
    ]
