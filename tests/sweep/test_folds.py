"""k-fold cross-validation as more members of one population (``run_sweep(..., folds=k)``)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from droplab.cli import main
from droplab.errors import ConfigError
from droplab.sweep import Store, SweepConfig, run_sweep
from droplab.sweep.folds import check_folds, fold_data, fold_indices
from droplab.sweep.result import small_validation
from droplab.train import TrainConfig


def _data(n=60, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=g)
    y = (x[:, 0] - x[:, 1] + 0.5 * torch.randn(n, generator=g) > 0).long()
    return x, y


def _build(cfg):
    return nn.Sequential(nn.Linear(5, 12), nn.ReLU(), nn.Dropout(cfg["p"]), nn.Linear(12, 2))


@pytest.mark.parametrize("n, k", [(20, 4), (23, 5), (7, 7), (9, 2)])
def test_folds_partition_the_training_data(n, k):
    y = torch.arange(n) % 3
    folds, rest = fold_indices(y, k, stratify=True, seed=1)
    assert len(folds) == k and all(len(f) == n // k for f in folds)
    assert len(rest) == n % k  # fewer than k left over, in every training set
    every = torch.cat([*folds, rest]).sort().values
    assert torch.equal(every, torch.arange(n))  # disjoint, and together the whole pool
    # stratified: within each class the folds' counts differ by at most one
    counts = torch.stack([torch.bincount(y[f], minlength=3) for f in folds])
    assert (counts.max(0).values - counts.min(0).values).max() <= 1
    again, _ = fold_indices(y, k, stratify=True, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(folds, again))  # seeded
    other, _ = fold_indices(y, k, stratify=True, seed=2)
    assert any(not torch.equal(a, b) for a, b in zip(folds, other))


def test_each_fold_trains_on_the_rest():
    from droplab.data import as_splits

    x, y = _data(31)
    x[:, 4] = torch.arange(31, dtype=torch.float32)  # a row id, to follow the rows
    splits = as_splits(x, y, task="classification", val_fraction=0.2, seed=0, quiet=True)
    (xt, yt, xv, yv), folds = fold_data(splits, 4, seed=3)
    pool = torch.cat([splits.x_train, splits.x_val])
    assert xt.shape == (4, 31 - 7, 5) and xv.shape == (4, 7, 5)
    for f, rows in enumerate(folds):
        assert torch.equal(xv[f], pool[rows]) and torch.equal(yv[f], torch.cat([splits.y_train, splits.y_val])[rows])
        held = set(xv[f][:, 4].tolist())
        trained = set(xt[f][:, 4].tolist())
        assert not held & trained and held | trained == set(range(31))


def test_a_fold_sweep_equals_a_manual_loop_over_the_folds(tmp_path):
    x, y = _data(45)
    data = (x[:36], y[:36], x[36:], y[36:])
    train = TrainConfig(epochs=3, batch_size=8, lr=0.01)
    res = run_sweep(_build, data, {"p": [0.0]}, seeds=2, folds=3, train=train, progress=False,
                    task="classification", metric="val_loss", store=tmp_path / "folds.db")

    class _Pool:  # the data as fold_data reads it
        x_train, y_train, x_val, y_val, task = data[0], data[1], data[2], data[3], "classification"

    (xt, yt, xv, yv), _ = fold_data(_Pool, 3, seed=0)
    manual: dict[int, list[float]] = {0: [], 1: []}
    for f in range(3):  # each fold as its own sweep: train on the rest, validate on the fold
        r = run_sweep(_build, (xt[f], yt[f], xv[f], yv[f]), {"p": [0.0]}, seeds=2, train=train, progress=False,
                      task="classification", metric="val_loss", store=tmp_path / f"fold{f}.db")
        for (_, s), v in _values(r).items():
            manual[s].append(v)
    folded = {s: v for (_, s), v in _values(res).items()}
    assert set(folded) == {0, 1}
    for s in (0, 1):
        assert folded[s] == pytest.approx(sum(manual[s]) / 3, rel=1e-5, abs=1e-6)
    assert res.row("p=0.0")["mean"] == pytest.approx(sum(folded.values()) / 2, rel=1e-9)


def _values(result) -> dict[int, float]:
    with Store.open(result.store, mode="r") as st:
        return {(run["config_id"], run["seed"]): run["result"]["val_loss"] for run in st.runs()}


def test_a_fold_sweep_is_one_population_of_every_configuration_seed_and_fold(tmp_path):
    x, y = _data(40)
    seen = []
    res = run_sweep(_build, (x[:32], y[:32], x[32:], y[32:]), {"p": [0.0, 0.3]}, seeds=2, folds=4,
                    train=TrainConfig(epochs=2, batch_size=8), progress=False, task="classification",
                    store=tmp_path / "a.db",
                    on_epoch=seen.append)
    assert {e["population"] for e in seen} and len({e["population"] for e in seen}) == 1
    assert all(e["members"] == 4 for e in seen)  # 2 rates x 2 seeds recorded, 16 members trained
    with Store.open(res.store, mode="r") as st:
        runs = st.runs()
        assert st.study()["spec"]["folds"] == 4
    assert len(runs) == 4 and all(run["result"]["folds"] == 4 for run in runs)
    again = run_sweep(_build, (x[:32], y[:32], x[32:], y[32:]), {"p": [0.0, 0.3]}, seeds=2, folds=4,
                      train=TrainConfig(epochs=2, batch_size=8), progress=False, task="classification",
                      store=tmp_path / "b.db")
    assert _values(again) == _values(res)  # bitwise deterministic


def test_fold_errors():
    x, y = _data(10)
    data = (x[:8], y[:8], x[8:], y[8:])
    for bad in (1, 0, -2, True, 2.5, "3"):
        with pytest.raises(ConfigError, match=r"folds must be an integer >= 2 \(k-fold cross-validation\), got"):
            run_sweep(_build, data, {"p": [0.0]}, seeds=1, folds=bad, progress=False)
    with pytest.raises(ConfigError, match=r"folds must be at most the 10 examples of the training and validation splits, got 11"):
        run_sweep(_build, data, {"p": [0.0]}, seeds=1, folds=11, progress=False,
                  train=TrainConfig(epochs=1))
    with pytest.raises(ConfigError, match=r"folds trains the folds as members of one population; it needs population=True"):
        run_sweep(_build, data, {"p": [0.0]}, seeds=1, folds=2, population=False, progress=False)
    with pytest.raises(ConfigError, match=r"folds must be an integer >= 2"):
        SweepConfig.from_dict({"folds": 1})
    assert check_folds(10, 10) == 10


def test_folds_in_toml_and_the_cli(tmp_path, capsys):
    cfg = SweepConfig.from_dict({"folds": 3, "train": {"epochs": 1}})
    assert cfg.to_dict()["folds"] == 3 and SweepConfig.from_dict(cfg.to_dict()) == cfg
    db = str(tmp_path / "iris.db")
    rc = main(["sweep", "--dataset", "iris", "--hidden", "8", "--dropout", "hidden=0,0.2", "--folds", "3",
               "--seeds", "2", "--epochs", "2", "--store", db, "--json", "--quiet"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and [r["key"] for r in out["rows"]] == ["dropout.hidden=0.0", "dropout.hidden=0.2"]
    # the selected configuration's test metric: every fold's model on the test split, averaged
    test = next(iter(out["test"].values()))
    assert test["n"] == 2 and 0.0 < test["mean"] <= 1.0
    with Store.open(db, mode="r") as st:
        assert st.study()["spec"]["folds"] == 3
        assert all(run["result"]["folds"] == 3 for run in st.runs())
    rc = main(["sweep", "--dataset", "iris", "--hidden", "8", "--folds", "1", "--epochs", "1", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and "folds must be an integer >= 2" in err


def test_the_small_validation_guard_suggests_folds():
    rows = [{"key": "a", "mean": 0.97, "lo": 0.9, "hi": 1.0}, {"key": "b", "mean": 0.97, "lo": 0.9, "hi": 1.0}]
    msg = small_validation(rows, "a", "val_acc")
    assert "cross-validation" in msg and "folds=5" in msg and "--folds 5" in msg


def test_folds_with_a_one_logit_binary_model(tmp_path):
    x, y = _data(48)
    res = run_sweep(lambda cfg: nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Dropout(cfg["p"]), nn.Linear(8, 1)),
                    (x, y.float()), {"p": [0.0, 0.2]}, seeds=2, folds=4, task="binary",
                    train=TrainConfig(epochs=6, batch_size=8, lr=0.02), progress=False, metric="val_auroc",
                    store=tmp_path / "binary.db")
    with Store.open(res.store, mode="r") as st:
        runs = st.runs()
    assert len(runs) == 4 and all(r["result"]["folds"] == 4 for r in runs)
    assert all(0.5 < r["result"]["val_auroc"] <= 1.0 and 0.5 < r["result"]["val_acc"] for r in runs)


class _Stop(Exception):
    pass


def _results(path):
    with Store.open(path, mode="r") as st:
        return sorted((run["config_id"], run["seed"], run["status"], sorted(run["result"].items())) for run in st.runs())


def test_an_interrupted_fold_sweep_resumes_to_the_same_results(tmp_path):
    x, y = _data(36)
    kw = dict(space={"p": [0.0, 0.4]}, seeds=2, folds=3, task="classification", progress=False, checkpoint_seconds=0,
              train=TrainConfig(epochs=4, batch_size=8, lr=0.02, early_stopping="patience", patience=2))
    ref = run_sweep(_build, (x, y), store=tmp_path / "ref.db", **kw)
    calls = []

    def crash(info):
        calls.append(info["epoch"])
        if len(calls) == 2:
            raise _Stop

    with pytest.raises(_Stop):
        run_sweep(_build, (x, y), store=tmp_path / "cut.db", on_epoch=crash, **kw)
    again = run_sweep(_build, (x, y), store=tmp_path / "cut.db", **kw)
    assert _results(tmp_path / "cut.db") == _results(tmp_path / "ref.db")
    assert [r["values"] for r in again.rows] == [r["values"] for r in ref.rows]
