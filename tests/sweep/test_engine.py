"""The sweep engine: statistics, selection, test isolation, resume, fallback, validation."""

from __future__ import annotations

import math

import pytest
import torch
from _toy import toy_tensors
from scipy import stats as sps
from torch import nn

from droplab.errors import ConfigError, StoreError
from droplab.models import ModelSpec
from droplab.sweep import Store, SweepConfig, mean_ci, one_standard_error, paired_difference, run_sweep
from droplab.sweep.population import Population
from droplab.stats import select_best
from droplab.train import TrainConfig

TIMING = ("seconds", "peak_mem_mb", "population_seconds")


# --- statistics ---------------------------------------------------------------------------------
def test_mean_ci_matches_scipy_t_interval():
    values = [0.71, 0.69, 0.74, 0.70, 0.66]
    est = mean_ci(values, 0.95)
    lo, hi = sps.t.interval(0.95, len(values) - 1, loc=sum(values) / 5, scale=sps.sem(values))
    assert est.lo == pytest.approx(lo) and est.hi == pytest.approx(hi)
    assert est.n == 5 and est.se == pytest.approx(sps.sem(values))


def test_mean_ci_edge_cases():
    one = mean_ci([0.5])
    assert one.mean == 0.5 and math.isnan(one.lo) and math.isnan(one.se)
    some = mean_ci([1.0, float("nan"), 3.0, None])
    assert some.n == 2 and some.n_missing == 2 and some.mean == 2.0
    assert math.isnan(mean_ci([]).mean)
    with pytest.raises(ConfigError, match=r"confidence must be in \(0, 1\), got 1.5"):
        mean_ci([1.0, 2.0], 1.5)


def test_one_standard_error_picks_the_most_regularized_within_one_se():
    est = {
        0.0: mean_ci([0.80, 0.84, 0.82]),  # best mean 0.82, se ~0.0115
        0.2: mean_ci([0.81, 0.81, 0.815]),  # within one se
        0.5: mean_ci([0.78, 0.79, 0.80]),  # outside
    }
    assert select_best(est, maximize=True) == 0.0
    assert one_standard_error(est, maximize=True, strength=lambda p: p) == 0.2
    # Minimizing: lower is better, the threshold is best + se.
    loss = {k: mean_ci([1 - v for v in (0.80, 0.84, 0.82)]) if k == 0.0 else e for k, e in est.items()}
    assert select_best(loss, maximize=False) == 0.0 or select_best(loss, maximize=False) is not None
    assert one_standard_error({0.0: mean_ci([0.5])}, maximize=True, strength=lambda p: p) == 0.0


def test_paired_difference_uses_shared_seeds_only():
    d = paired_difference({0: 0.8, 1: 0.7, 2: 0.9}, {0: 0.75, 1: 0.66, 5: 0.1})
    assert d.n == 2 and d.mean == pytest.approx((0.05 + 0.04) / 2)


# --- sweeps --------------------------------------------------------------------------------------
def _build(cfg):
    return nn.Sequential(nn.Linear(10, 24), nn.ReLU(), nn.Dropout(cfg["dropout"]), nn.Linear(24, 3))


TRAIN = TrainConfig(epochs=3, batch_size=40, lr=1e-2)
SPEC = ModelSpec(hidden=(24,), dropout={"hidden": 0.0})


def _runs(path):
    with Store.open(path, mode="r") as st:
        runs = st.runs()
        epochs = st.epochs()
    clean = [
        (r["key"], r["seed"], r["status"], {k: v for k, v in (r["result"] or {}).items()}, r["epochs_run"])
        for r in runs
    ]
    rows = [{k: v for k, v in e.items() if k not in TIMING} for e in epochs]
    return clean, rows


def test_user_model_sweep_selects_and_tests_only_selected(tmp_path, monkeypatch):
    data = toy_tensors()
    touched = []
    original = Population.evaluate_members

    def spy(self, indices, x, y):
        if x is data[4]:
            touched.extend((self.members[i].key, self.members[i].seed) for i in indices)
        return original(self, indices, x, y)

    monkeypatch.setattr(Population, "evaluate_members", spy)
    res = run_sweep(
        _build, data=data, space={"dropout": [0.0, 0.3], "train.lr": [1e-2, 3e-2]}, seeds=2,
        train=TRAIN, store=tmp_path / "s.db", progress=False,
    )
    assert len(res.rows) == 4 and all(r["n"] == 2 for r in res.rows)
    selected = {res.best, res.one_se}
    assert set(res.test) == selected
    assert {k for k, _ in touched} == selected  # the test split was touched for these only
    for row in res.rows:
        if row["params"]["dropout"] == 0.3:
            assert row["diff"]["baseline"].startswith("dropout=0.0")
    with Store.open(tmp_path / "s.db", mode="r") as st:
        assert st.summary()["best"] == res.best
        assert len(st.runs()) == 8
        assert all(r["cost"]["seconds"] > 0 for r in st.runs())


def test_builtin_mlp_sweep_is_one_population_and_matches_a_split_one(tmp_path):
    data = toy_tensors()
    kw = dict(space={"dropout.hidden": [0.0, 0.2, 0.4]}, seeds=2, train=TRAIN, progress=False)
    one = run_sweep(SPEC, data=data, store=tmp_path / "a.db", **kw)
    split = run_sweep(SPEC, data=data, store=tmp_path / "b.db", memory_mb=0.05, **kw)
    with Store.open(tmp_path / "a.db", mode="r") as st:
        assert {r["cost"]["population_size"] for r in st.runs()} == {6}
    with Store.open(tmp_path / "b.db", mode="r") as st:
        assert max(r["cost"]["population_size"] for r in st.runs()) < 6
    # Per-seed streams: how members are packed does not change any member's numbers.
    for r1, r2 in zip(one.rows, split.rows):
        assert r1["values"] == pytest.approx(r2["values"], rel=1e-5)


class _Stop(Exception):
    pass


def _resume_kw(device):
    return dict(
        space={"dropout.hidden": [0.0, 0.3], "train.lr": [1e-2, 2e-2]}, seeds=2,
        train=TrainConfig(epochs=4, batch_size=40, lr=1e-2, early_stopping="patience", patience=2, device=device),
        progress=False, checkpoint_seconds=0,
    )


def _crash_and_resume(data, tmp_path, kw):
    """An uninterrupted sweep, and one cut after its second epoch event then resumed."""
    ref = run_sweep(SPEC, data=data, store=tmp_path / "ref.db", **kw)
    calls = []

    def crash(info):
        calls.append(info["epoch"])
        if len(calls) == 2:
            raise _Stop

    with pytest.raises(_Stop):
        run_sweep(SPEC, data=data, store=tmp_path / "cut.db", on_epoch=crash, **kw)
    with Store.open(tmp_path / "cut.db", mode="r") as st:
        assert st.summary() is None and {r["status"] for r in st.runs()} == {"interrupted"}
    again = run_sweep(SPEC, data=data, store=tmp_path / "cut.db", **kw)
    assert _runs(tmp_path / "ref.db") == _runs(tmp_path / "cut.db")
    assert [r["values"] for r in again.rows] == [r["values"] for r in ref.rows]
    return ref, again


def test_interrupted_sweep_resumes_to_the_same_results(tmp_path):
    data, kw = toy_tensors(1), _resume_kw("cpu")
    ref, again = _crash_and_resume(data, tmp_path, kw)
    with Store.open(tmp_path / "cut.db", mode="r") as st:
        assert len(st.runs()) == 8 and {r["attempts"] for r in st.runs()} == {2}
    assert (again.best, again.one_se) == (ref.best, ref.one_se)
    # A finished study is read back, not retrained.
    third = run_sweep(SPEC, data=data, store=tmp_path / "cut.db", **kw)
    with Store.open(tmp_path / "cut.db", mode="r") as st:
        assert {r["attempts"] for r in st.runs()} == {2}
    assert third.test == again.test


def test_resume_with_another_configuration_is_refused(tmp_path):
    data = toy_tensors()
    kw = dict(seeds=1, train=TRAIN, progress=False, store=tmp_path / "s.db")
    run_sweep(SPEC, data=data, space={"dropout.hidden": [0.0]}, **kw)
    with pytest.raises(StoreError, match="different spec"):
        run_sweep(SPEC, data=data, space={"dropout.hidden": [0.5]}, **kw)


class _NoVmap(nn.Module):
    """A model torch.func cannot vectorize (a Python branch on a tensor value)."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(10, 3)

    def forward(self, x):
        if x.sum().item() > 1e9:
            return self.lin(x) * 2
        return self.lin(x)


def test_unstackable_model_falls_back_to_one_by_one_with_a_note(tmp_path):
    data = toy_tensors()
    res = run_sweep(
        lambda cfg: _NoVmap(), data=data, space={"width": [1]}, seeds=2, train=TRAIN,
        store=tmp_path / "s.db", progress=False,
    )
    assert len(res.notes) == 1 and "one by one" in res.notes[0] and "vectorize" in res.notes[0]
    assert res.rows[0]["n"] == 2 and res.best == res.rows[0]["key"]
    assert res.test[res.best]["n"] == 2


def test_architecture_axis_reports_each_architecture_at_its_best(tmp_path):
    data = toy_tensors()
    models = {"small": ModelSpec(hidden=(8,), dropout={"hidden": 0.0}), "wide": ModelSpec(hidden=(32,), dropout={"hidden": 0.0})}
    res = run_sweep(
        SPEC, data=data, models=models, space={"model": ["small", "wide"], "dropout.hidden": [0.0, 0.3]},
        seeds=2, train=TRAIN, store=tmp_path / "s.db", progress=False,
    )
    assert set(res.per_arch) == {"model=small", "model=wide"}
    for arch, key in res.per_arch.items():
        assert key.startswith(arch)
        assert key in res.test
    with Store.open(tmp_path / "s.db", mode="r") as st:
        assert len({c["group"] for c in st.configurations()}) == 2


def test_bad_configurations_are_rejected_before_any_training(tmp_path):
    data = toy_tensors()
    path = tmp_path / "s.db"
    with pytest.raises(ConfigError, match=r"p must be in \[0, 1\), got 1.2"):
        run_sweep(SPEC, data=data, space={"dropout.hidden": [0.0, 1.2]}, train=TRAIN, store=path, progress=False)
    with pytest.raises(ConfigError, match="unknown axis 'train.epoch'.*did you mean 'epochs'"):
        run_sweep(SPEC, data=data, space={"train.epoch": [2]}, train=TRAIN, store=path, progress=False)
    with pytest.raises(ConfigError, match="unknown axis 'hidden'"):
        run_sweep(SPEC, data=data, space={"hidden": [8]}, train=TRAIN, store=path, progress=False)
    with pytest.raises(ConfigError, match="weight_decay is decoupled"):
        run_sweep(SPEC, data=data, space={"train.weight_decay": [0.0, 0.1]}, train=TRAIN, store=path, progress=False)
    with pytest.raises(ConfigError, match=r"must return \(N, 3\) outputs"):
        run_sweep(lambda c: nn.Linear(10, 2), data=data, space={"p": [1]}, train=TRAIN, store=path, progress=False)
    assert not path.exists()


def test_sweep_config_round_trips_and_validates():
    cfg = SweepConfig.from_dict(
        {
            "name": "t", "seeds": [0, 4], "data": {"name": "iris"},
            "model": {"hidden": [8], "dropout": "hidden=0.1"},
            "train": {"epochs": 2}, "space": {"dropout.hidden": [0.0, 0.5], "train.lr": {"loguniform": [1e-3, 1e-2]}},
            "sampler": "random", "trials": 3,
        }
    )
    assert SweepConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.seed_list() == [0, 4] and cfg.data.seed == 0
    assert len(cfg.make_space().configurations()) == 3
    with pytest.raises(ConfigError, match="unknown key 'seed'.*did you mean 'seeds'"):
        SweepConfig.from_dict({"seed": 3})
    with pytest.raises(ConfigError, match="needs trials"):
        SweepConfig.from_dict({"sampler": "random"})
    with pytest.raises(ConfigError, match="define them as \\[models.<name>\\] tables"):
        SweepConfig.from_dict({"space": {"model": ["a"]}})


def test_tpe_sweep_runs_in_rounds_and_replays_on_resume(tmp_path):
    pytest.importorskip("optuna")
    from droplab.sweep import OptunaSpace, Uniform

    data = toy_tensors()

    def space():
        return OptunaSpace({"dropout": Uniform(0.0, 0.6)}, n=4, seed=0, batch=2)

    kw = dict(data=data, seeds=2, train=TRAIN, store=tmp_path / "t.db", progress=False)
    first = run_sweep(_build, space=space(), **kw)
    assert 2 < len(first.rows) <= 4
    with Store.open(tmp_path / "t.db", mode="r") as st:
        assert {r["attempts"] for r in st.runs()} == {1}
    again = run_sweep(_build, space=space(), **kw)  # the rounds are replayed, nothing retrained
    with Store.open(tmp_path / "t.db", mode="r") as st:
        assert {r["attempts"] for r in st.runs()} == {1}
    assert [r["key"] for r in again.rows] == [r["key"] for r in first.rows]
    assert again.best == first.best


# --- CUDA (skipped without a GPU) ----------------------------------------------------------------
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_sweep_population_resumes_to_the_same_results(tmp_path):
    # Population on the GPU: CUDA mask generators, fused Adam, compaction, checkpoints mapped
    # back onto the device, and CPU generator states restored from them.
    data, kw = toy_tensors(1), _resume_kw("cuda")
    ref, _ = _crash_and_resume(data, tmp_path, kw)
    with Store.open(tmp_path / "ref.db", mode="r") as st:
        runs = st.runs()
    assert {r["cost"]["population_size"] for r in runs} == {8}
    assert all(r["cost"]["peak_mem_mb"] > 0 for r in runs)
    cpu = run_sweep(SPEC, data=data, store=tmp_path / "cpu.db", **{**kw, "train": kw["train"].replace(device="cpu")})
    for g, c in zip(ref.rows, cpu.rows):  # other mask streams, the same model: close, not equal
        assert abs(g["mean"] - c["mean"]) < 0.15
