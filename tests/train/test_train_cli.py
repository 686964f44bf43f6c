"""`droplab train` end to end, and the RunConfig it is built on (TOML + flags)."""

from __future__ import annotations

import json
import re

import pytest
import torch

from droplab.cli import main
from droplab.errors import ConfigError
from droplab.train import RunConfig, TrainConfig, load_model

MLP_ARGS = [
    "train",
    "--dataset",
    "mnist1d",
    "--model",
    "mlp",
    "--hidden",
    "256,256",
    "--dropout",
    "hidden=0.3",
    "--seed",
    "0",
]


def run_json(capsys, argv):
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1  # exactly one JSON object on stdout
    return json.loads(out)


def test_train_json_is_reproducible(capsys):
    first = run_json(capsys, MLP_ARGS + ["--epochs", "3", "--json"])
    second = run_json(capsys, MLP_ARGS + ["--epochs", "3", "--json"])
    for key in (
        "best_epoch",
        "val_loss",
        "val_acc",
        "test_loss",
        "test_acc",
        "epochs_run",
        "stop_reason",
        "seconds",
    ):
        assert key in first
    assert first["epochs_run"] == 3 and first["stop_reason"] == "completed"
    assert 0.1 < first["test_acc"] <= 1.0  # above chance (10 classes) after 3 epochs
    first.pop("seconds"), second.pop("seconds")
    assert first == second


def test_toml_config_with_flag_overrides_and_save(tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text(
        '[data]\nname = "digits"\n\n'
        '[model]\nkind = "mlp"\nhidden = [32]\ndropout = "hidden=0.2"\n\n'
        '[train]\nepochs = 1\nlr = 0.01\nearly_stopping = "patience"\npatience = 5\n'
    )
    saved = tmp_path / "model.pt"
    summary = run_json(
        capsys, ["train", "--config", str(config), "--epochs", "2", "--save", str(saved), "--json"]
    )
    assert (
        summary["epochs_run"] == 2 and summary["dataset"] == "digits"
    )  # the flag won over the file
    model, meta = load_model(saved)
    assert meta["spec"]["hidden"] == [32] and meta["config"]["train"]["epochs"] == 2
    assert meta["summary"]["test_acc"] == summary["test_acc"]
    assert model(torch.zeros(3, *meta["input_shape"])).shape == (3, meta["n_outputs"])


def test_regression_summary_has_rmse(capsys):
    summary = run_json(
        capsys,
        [
            "train",
            "--dataset",
            "diabetes",
            "--hidden",
            "16",
            "--epochs",
            "2",
            "--lr",
            "0.01",
            "--json",
        ],
    )
    assert "val_acc" not in summary  # accuracy is for classification; regression reports RMSE
    assert summary["val_rmse"] > 0 and summary["test_rmse"] > 0


def test_table_output(capsys):
    assert main(["train", "--dataset", "iris", "--hidden", "8", "--epochs", "1", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "mlp on iris" in out and "test" in out and "stopped: completed" in out


@pytest.mark.parametrize(
    "toml, argv, message",
    [
        ("[train]\nlrr = 0.1\n", [], r"unknown key 'lrr' in \[train\] \(did you mean 'lr'\?\)"),
        (
            "[model]\nhiden = [8]\n",
            [],
            r"unknown key 'hiden' in model spec \(did you mean 'hidden'\?\)",
        ),
        ("[trian]\nlr = 0.1\n", [], r"unknown key 'trian' .*\(did you mean 'train'\?\)"),
        ("[train]\nlr = 0.1\n", ["--dropout", "hidden=1.5"], r"p must be in \[0, 1\), got 1.5"),
        ("[train]\nlr = 0.1\n", ["--lr", "-0.5"], r"lr must be a finite number > 0, got -0.5"),
        (
            '[data]\nname = "csv"\npath = "/nonexistent/file.csv"\ntarget = "y"\n',
            [],
            r"/nonexistent/file.csv",
        ),
        ("[train\n", [], r"is not valid TOML"),
    ],
)
def test_user_errors_end_with_one_line_and_exit_2(tmp_path, capsys, toml, argv, message):
    config = tmp_path / "run.toml"
    config.write_text(toml)
    assert main(["train", "--config", str(config), "--epochs", "1", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and captured.err.startswith("droplab: error: ")
    assert re.search(message, captured.err)


def test_missing_config_file_and_bad_flag(tmp_path, capsys):
    assert main(["train", "--config", str(tmp_path / "none.toml")]) == 2
    assert "config file not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["train", "--hidden", "256,abc"])
    assert exc.value.code == 2
    assert "expected integers separated by commas, got '256,abc'" in capsys.readouterr().err


def test_run_config_round_trip_and_defaults():
    cfg = RunConfig.from_dict(
        {
            "model": {
                "kind": "cnn1d",
                "hidden": [25, 25, 25],
                "kernel_size": [5, 3, 3],
                "dropout": "hidden=0.2",
            }
        }
    )
    assert cfg.train == TrainConfig() and cfg.data.name == "mnist1d" and cfg.seed == 0
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match=r"\[data\] must be a table of options"):
        RunConfig.from_dict({"data": "mnist1d"})
