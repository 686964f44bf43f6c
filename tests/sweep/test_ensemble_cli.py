"""`droplab train --ensemble M`: end to end, its errors, and equality with droplab.ensemble."""

from __future__ import annotations

import json

import pytest
import torch

import droplab
from droplab.cli import main
from droplab.errors import ConfigError
from droplab.inference.calibration import nll
from droplab.sweep.ensemble import ensemble_run
from droplab.train import RunConfig

TINY = ["train", "--dataset", "iris", "--hidden", "8", "--dropout", "hidden=0.2", "--epochs", "2",
        "--seed", "3", "--quiet"]
CONFIG = {"data": {"name": "iris"}, "model": {"hidden": [8], "dropout": "hidden=0.2"},
          "train": {"epochs": 2, "seed": 3}}


def run_json(capsys, argv):
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1  # one JSON object
    return json.loads(out)


@pytest.mark.parametrize("bootstrap", [False, True])
def test_cli_equals_droplab_ensemble_called_directly(capsys, bootstrap):
    summary = run_json(capsys, TINY + ["--ensemble", "3", "--json"] + ["--bootstrap"] * bootstrap)
    cfg = RunConfig.from_dict(CONFIG)
    splits = cfg.data.load(default_seed=3)
    deep = droplab.ensemble(cfg.model, splits, members=3, seed=3, bootstrap=bootstrap, train=cfg.train)
    with torch.no_grad():
        probs = deep(splits.x_test)
    assert summary["members"] == 3 and summary["seeds"] == [3, 4, 5]
    assert summary["bootstrap"] is bootstrap
    # floats survive JSON exactly (repr round-trips), so this is bitwise equality of the metrics
    assert summary["test_loss"] == nll(probs, splits.y_test)
    assert summary["test_acc"] == float((probs.argmax(1) == splits.y_test).double().mean())


def test_ensemble_run_weights_equal_direct_call_bitwise():
    cfg = RunConfig.from_dict(CONFIG)
    deep, _ = ensemble_run(cfg, 3, bootstrap=True)
    direct = droplab.ensemble(cfg.model, cfg.data.load(default_seed=3), 3, seed=3, bootstrap=True, train=cfg.train)
    mine, theirs = deep.state_dict(), direct.state_dict()
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)
    w0, w1 = (next(net.parameters()) for net in deep.nets[:2])
    assert not torch.equal(w0, w1)  # the members differ


def test_cli_text_output_and_regression(capsys):
    assert main(TINY + ["--ensemble", "2"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("ensemble of 2 mlp on iris: test loss ") and "test acc " in line
    summary = run_json(capsys, ["train", "--dataset", "diabetes", "--hidden", "8", "--epochs", "1",
                                "--quiet", "--ensemble", "2", "--json"])
    assert summary["test_rmse"] == pytest.approx(summary["test_loss"] ** 0.5, rel=1e-12)
    assert "test_acc" not in summary


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--ensemble", "1"], "--ensemble: an ensemble needs at least 2 members, got 1"),
        (["--ensemble", "2.5"], "--ensemble: expected an integer number of members >= 2, got '2.5'"),
        (["--ensemble", "x"], "--ensemble: expected an integer number of members >= 2, got 'x'"),
        (["--bootstrap"], "--bootstrap needs --ensemble M"),
        (["--ensemble", "2", "--save", "m.pt"], "--save cannot hold an ensemble"),
        (["--ensemble", "2", "--rdrop", "0.1"], "cannot train as one population: R-Drop"),
    ],
)
def test_cli_errors_are_one_line_exit_2(capsys, tmp_path, monkeypatch, extra, message):
    monkeypatch.chdir(tmp_path)
    try:
        code = main(TINY + extra)
    except SystemExit as exc:  # argparse rejects the value before main's try
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("droplab: error: ") and message in err
    assert not (tmp_path / "m.pt").exists()


def test_cli_model_vmap_cannot_stack_is_one_line_exit_2(capsys):
    argv = ["train", "--dataset", "mnist1d", "--subsample", "100", "--model", "gru", "--epochs", "1",
            "--quiet", "--ensemble", "2"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("droplab: error: the members cannot train as one population: torch.func cannot vectorize")


def test_ensemble_run_rejects_fewer_than_two_members():
    with pytest.raises(ConfigError, match=r"members >= 2, got 1"):
        ensemble_run(RunConfig.from_dict(CONFIG), 1)
