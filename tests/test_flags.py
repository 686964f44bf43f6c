"""One flag table for ``droplab train`` and ``droplab sweep`` (droplab.flags): the same flags,
one rule for lists (one value: the base; several: an axis), conflicts as ConfigError, and a
breast-cancer CSV sweep from flags alone."""

from __future__ import annotations

import csv
import json

import pytest

from droplab.cli import build_parser, main
from droplab.errors import ConfigError
from droplab.flags import FLAGS, run_overrides, sweep_overrides
from droplab.sweep.config import apply_overrides
from droplab.sweep import Store, SweepConfig


def _options(command):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    return {s for a in sub._actions for s in a.option_strings}


def test_train_and_sweep_take_every_flag_of_the_table():
    train, sweep = _options("train"), _options("sweep")
    for flag in FLAGS:
        assert (flag.name in train) == ("train" in flag.commands), flag.name
        assert (flag.name in sweep) == ("sweep" in flag.commands), flag.name
    # issue 21's data flags, and --device, reach the sweep
    assert {"--target", "--task", "--val-fraction", "--data-seed", "--device", "--data-dir"} <= sweep
    assert [f.name for f in FLAGS if "sweep" not in f.commands] == ["--seed"]  # a sweep has --seeds


def test_train_flags_map_to_sections():
    values = {"target": "y", "task": "regression", "val_fraction": 0.2, "data_seed": 3, "device": "cpu",
              "hidden": [8, 8], "kernel_size": [5], "lr": 0.1, "dropout": "hidden=0.3"}
    assert run_overrides(values) == {
        "data": {"target": "y", "task": "regression", "val_fraction": 0.2, "seed": 3},
        "model": {"hidden": [8, 8], "dropout": "hidden=0.3", "kernel_size": 5},
        "train": {"lr": 0.1, "device": "cpu"},
    }


@pytest.mark.parametrize("dest, key", [("lr", "train.lr"), ("weight_decay", "train.weight_decay"),
                                       ("l1", "train.l1"), ("l2", "train.l2"), ("max_norm", "train.max_norm")])
def test_one_value_sets_the_base_several_make_an_axis(dest, key):
    section, name = key.split(".")
    assert sweep_overrides({dest: "0.5"}) == {section: {name: 0.5}}
    assert sweep_overrides({dest: "0,0.5"}) == {"space": {key: [0, 0.5]}}


def test_the_dropout_flag_follows_the_same_rule():
    one = sweep_overrides({"dropout": ["hidden=0.3:gaussian"]})
    assert one == {"model": {"dropout": {"hidden": {"p": 0.3, "layer": "gaussian"}}}}
    assert "space" not in one
    several = sweep_overrides({"dropout": ["hidden=0,0.3:gaussian", "input=0.1:early@2,late@2"]})
    assert several["space"] == {"dropout.hidden": [0.0, 0.3], "dropout.input.schedule": ["early@2", "late@2"]}
    assert several["model"]["dropout"] == {"hidden": {"p": 0.0, "layer": "gaussian"}, "input": {"p": 0.1}}
    # two places in one flag, as in droplab train
    assert sweep_overrides({"dropout": ["input=0,0.1,hidden=0,0.5"]})["space"] == {
        "dropout.input": [0.0, 0.1], "dropout.hidden": [0.0, 0.5]}
    # a single rate makes the base, which builds: one configuration, no axis
    config = SweepConfig.from_dict(apply_overrides({}, sweep_overrides({"dropout": ["hidden=0.3"], "lr": "0.01,0.02"})))
    assert config.space == {"train.lr": [0.01, 0.02]} and config.model.dropout["hidden"].p == 0.3


@pytest.mark.parametrize(
    "values, axes, message",
    [
        ({"lr": "0.1"}, ["train.lr=0.1,0.2"], r"^train.lr is set twice: by --lr and by --axis train.lr=0.1,0.2; give it once$"),
        ({"dropout": ["hidden=0.1", "hidden=0,0.2"]}, [], r"^dropout.hidden is set twice: by --dropout hidden=0.1 and by --dropout hidden=0,0.2"),
        ({"dropout": ["hidden=0,0.1"]}, ["dropout.hidden=0.2,0.3"], r"^dropout.hidden is set twice"),
        ({"dropout": ["hidden=0.1:early@2,late@2"]}, ["dropout.hidden.schedule=early@3,late@3"], r"^dropout.hidden.schedule is set twice"),
        ({"dropout": ["hidden=0.1"]}, ["dropout=hidden=0.1;hidden=0.2"], r"^--axis dropout=\.\.\. sweeps whole dropout strings"),
        ({"hidden": [8]}, ["model.hidden=[8];[16]"], r"^model.hidden is set twice"),
        ({"dropout": ["hidden"]}, [], r"^cannot parse --dropout 'hidden'"),
    ],
)
def test_conflicting_or_malformed_flags_raise(values, axes, message):
    with pytest.raises(ConfigError, match=message):
        sweep_overrides(values, axes)


def test_conflicts_end_the_cli_with_one_line_and_exit_2(capsys):
    rc = main(["sweep", "--lr", "0.1", "--axis", "train.lr=0.1,0.2", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and err == "droplab: error: train.lr is set twice: by --lr and by --axis train.lr=0.1,0.2; give it once\n"
    rc = main(["sweep", "--resume", "a.db", "--store", "b.db"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "give the study once" in err


def test_a_flag_replaces_the_files_axis_of_its_key():
    file = {"model": {"dropout": "input=0.1,hidden=0.5"},
            "space": {"dropout": ["hidden=0.5"], "dropout.hidden": [0.5, 0.2], "train.lr": [0.1, 0.2],
                      "train.l2": [0, 1e-4], "dropout.hidden.layer": ["gaussian"]}}
    merged = apply_overrides(file, sweep_overrides({"dropout": ["hidden=0.3"], "lr": "0.01"}))
    assert merged["space"] == {"train.l2": [0, 1e-4], "dropout.hidden.layer": ["gaussian"]}
    assert merged["train"] == {"lr": 0.01}
    assert merged["model"]["dropout"] == {"input": {"p": 0.1, "options": {}}, "hidden": {"p": 0.3, "options": {}}}
    assert file["space"]["train.lr"] == [0.1, 0.2]  # the file's values are not changed in place
    # --axis dropout=... replaces every per-place dropout axis of the file but layers
    merged = apply_overrides(file, sweep_overrides({}, ["dropout=hidden=0.1;hidden=0.2"]))
    assert set(merged["space"]) == {"dropout", "train.lr", "train.l2", "dropout.hidden.layer"}


@pytest.fixture
def cancer_csv(tmp_path):
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    path = tmp_path / "cancer.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([f"f{i}" for i in range(data.data.shape[1])] + ["target"])
        for x, y in zip(data.data, data.target):
            w.writerow([repr(float(v)) for v in x] + [int(y)])
    return str(path)


def test_a_breast_cancer_csv_sweep_from_flags_alone(cancer_csv, tmp_path, capsys):
    db = str(tmp_path / "cancer.db")
    rc = main(["sweep", "--dataset", "csv", "--data", cancer_csv, "--target", "target", "--task", "classification",
               "--val-fraction", "0.3", "--data-seed", "1", "--device", "cpu", "--hidden", "16",
               "--dropout", "hidden=0,0.3", "--lr", "0.01", "--seeds", "2", "--epochs", "2",
               "--store", db, "--json", "--quiet"])
    summary = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert [r["key"] for r in summary["rows"]] == ["dropout.hidden=0.0", "dropout.hidden=0.3"]
    with Store.open(db, mode="r") as st:
        spec = st.study()["spec"]
        assert len(st.runs()) == 4
    assert spec["data"] == {"name": "csv", "path": cancer_csv, "target": "target", "task": "classification",
                            "val_fraction": 0.3, "seed": 1, "x_key": "x", "y_key": "y", "label_noise": 0.0,
                            "input_noise": 0.0, "standardize": True}
    assert spec["train"]["device"] == "cpu" and spec["train"]["lr"] == 0.01
    assert spec["space"] == {"dropout.hidden": [0.0, 0.3]}
    # the same flags train one model
    rc = main(["train", "--dataset", "csv", "--data", cancer_csv, "--target", "target", "--val-fraction", "0.3",
               "--data-seed", "1", "--hidden", "16", "--dropout", "hidden=0.3", "--epochs", "1", "--json", "--quiet"])
    assert rc == 0 and json.loads(capsys.readouterr().out)["dataset"] == "csv"
