"""A blank target cell is refused like a blank feature cell (issue 20, item 12)."""

from __future__ import annotations

import pytest

from droplab.cli import main
from droplab.data import load_dataset
from droplab.errors import DataError


def _write(tmp_path, rows, name="d.csv"):
    path = tmp_path / name
    path.write_text("\n".join(rows) + "\n")
    return path


def test_blank_class_label_is_refused_not_taken_as_a_class(tmp_path):
    rows = ["a,b,diagnosis"] + [f"{i},{i % 5},{i % 2}" for i in range(40)]
    rows[7] = "6,1,"
    path = _write(tmp_path, rows)
    with pytest.raises(DataError, match=r"target column 'diagnosis' has 1 empty cell \(first at line 8\)"):
        load_dataset("csv", path=path, target="diagnosis")


def test_blank_regression_target_is_refused_not_turned_into_classes(tmp_path):
    rows = ["x,y"] + [f"{i},{i * 0.37 + 0.1:.3f}" for i in range(300)]
    rows[11] = "10,  "
    rows[200] = "199,"
    path = _write(tmp_path, rows)
    with pytest.raises(DataError, match=r"target column 'y' has 2 empty cells \(first at line 12\)"):
        load_dataset("csv", path=path, target="y")
    with pytest.raises(DataError, match=r"target column 'y' has 2 empty cells"):
        load_dataset("csv", path=path, target="y", task="regression")


def test_cli_blank_target_is_one_line_exit_2(tmp_path, capsys):
    rows = ["x,y"] + [f"{i},{i * 0.37:.3f}" for i in range(100)]
    rows[50] = "49,"
    path = _write(tmp_path, rows)
    rc = main(["train", "--dataset", "csv", "--data", str(path), "--target", "y", "--epochs", "1", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "empty cell" in err
