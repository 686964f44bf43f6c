"""``task="binary"`` for csv files: ``load_dataset`` and ``droplab sweep --task binary`` (issue 21).

A two-valued target becomes float32 0/1 (the second sorted label is 1) for a one-logit model
trained with BCE on its logit; the splits are the classification splits, row for row.
"""

from __future__ import annotations

import csv
import json

import pytest
import torch

from droplab.cli import main
from droplab.data import load_dataset
from droplab.errors import DataError
from droplab.sweep import Store


def _write_csv(path, labels):
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([f"f{i}" for i in range(data.data.shape[1])] + ["diagnosis"])
        for x, y in zip(data.data, data.target):
            w.writerow([repr(float(v)) for v in x] + [labels[int(y)]])
    return str(path), data.target


@pytest.fixture
def cancer_csv(tmp_path):
    return _write_csv(tmp_path / "cancer.csv", {0: "malignant", 1: "benign"})


def test_binary_csv_gives_the_classification_splits_as_float_0_1(cancer_csv):
    path, _ = cancer_csv
    b = load_dataset("csv", path=path, target="diagnosis", task="binary", seed=3, val_fraction=0.2)
    c = load_dataset("csv", path=path, target="diagnosis", task="classification", seed=3, val_fraction=0.2)
    assert b.task == "binary" and b.n_classes is None and b.n_outputs == 1
    assert b.info["task"] == "binary" and b.info["classes"] == c.info["classes"] == ["benign", "malignant"]
    for split in ("train", "val", "test"):
        yb, yc = getattr(b, f"y_{split}"), getattr(c, f"y_{split}")
        assert yb.dtype == torch.float32 and yb.dim() == 1
        assert torch.equal(yb, yc.float())  # "malignant" (second sorted label) is 1
        assert torch.equal(getattr(b, f"x_{split}"), getattr(c, f"x_{split}"))
    assert set(b.y_train.unique().tolist()) == {0.0, 1.0}


def test_binary_needs_a_two_valued_target(tmp_path):
    path, _ = _write_csv(tmp_path / "three.csv", {0: "a", 1: "b"})
    rows = open(path).read().splitlines()
    rows[1] = rows[1].rsplit(",", 1)[0] + ",c"  # a third label
    (tmp_path / "three.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(DataError, match=r"task 'binary' needs a target with exactly two values, found 3 \(a, b, c\)"):
        load_dataset("csv", path=path, target="diagnosis", task="binary")


def test_droplab_sweep_task_binary_from_flags(cancer_csv, tmp_path, capsys):
    path, _ = cancer_csv
    db = str(tmp_path / "binary.db")
    rc = main(["sweep", "--dataset", "csv", "--data", path, "--target", "diagnosis", "--task", "binary",
               "--val-fraction", "0.3", "--data-seed", "1", "--hidden", "16", "--dropout", "hidden=0,0.3",
               "--lr", "0.01", "--seeds", "2", "--epochs", "3", "--store", db, "--json", "--quiet"])
    summary = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert [r["key"] for r in summary["rows"]] == ["dropout.hidden=0.0", "dropout.hidden=0.3"]
    assert summary["metric"] == "val_acc"
    assert all(r["mean"] > 0.85 for r in summary["rows"])  # a one-logit model that learned
    with Store.open(db, mode="r") as st:
        assert st.study()["spec"]["data"]["task"] == "binary"
        runs = st.runs()
    assert len(runs) == 4 and all(0 < r["result"]["val_loss"] < 1 for r in runs)


def test_droplab_sweep_task_binary_refuses_three_classes(tmp_path, capsys):
    path, _ = _write_csv(tmp_path / "three.csv", {0: "a", 1: "b"})
    rows = open(path).read().splitlines()
    rows[1] = rows[1].rsplit(",", 1)[0] + ",c"
    (tmp_path / "three.csv").write_text("\n".join(rows) + "\n")
    rc = main(["sweep", "--dataset", "csv", "--data", path, "--target", "diagnosis", "--task", "binary",
               "--hidden", "4", "--epochs", "1", "--seeds", "1", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert "exactly two values" in err
