"""`droplab train/sweep --dataset csv|npz` say which task they inferred for the target, and why
(one line on stderr; none under --quiet or with --task)."""

from __future__ import annotations

import numpy as np
import pytest

from droplab.cli import main


def _csv(tmp_path, first_label):
    rows = ["a,b,y"] + [f"{i % 5},{(i * 7) % 3},{i % 3 + first_label}" for i in range(60)]
    path = tmp_path / f"labels{first_label}.csv"
    path.write_text("\n".join(rows) + "\n")
    return str(path)


def _notes(capsys, argv):
    assert main(argv) == 0
    return [line for line in capsys.readouterr().err.splitlines() if "target:" in line]


def test_train_says_the_inferred_task_and_how_to_override_it(tmp_path, capsys):
    base = ["train", "--dataset", "csv", "--target", "y", "--epochs", "1", "--json"]
    notes = _notes(capsys, base + ["--data", _csv(tmp_path, 0)])
    assert notes == ["droplab: csv target: integer labels 0..2: 3-class classification "
                     "(--task classification, binary or regression overrides it)"]
    notes = _notes(capsys, base + ["--data", _csv(tmp_path, 1)])
    assert len(notes) == 1 and "integers 1..3, not class labels 0..K-1" in notes[0]
    assert "regression (--task classification" in notes[0]
    assert _notes(capsys, base + ["--data", _csv(tmp_path, 1), "--task", "classification"]) == []
    assert main(base + ["--data", _csv(tmp_path, 1), "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_sweep_says_the_inferred_task_of_an_npz_target(tmp_path, capsys):
    rng = np.random.default_rng(0)
    path = tmp_path / "counts.npz"
    np.savez(path, x=rng.normal(size=(60, 3)).astype(np.float32), y=rng.poisson(30, size=60))
    base = ["sweep", "--dataset", "npz", "--data", str(path), "--dropout", "hidden=0,0.2", "--seeds", "1",
            "--epochs", "1", "--hidden", "8", "--json"]
    notes = _notes(capsys, base)
    assert len(notes) == 1 and notes[0].startswith("droplab: npz target: integers with ")
    assert "counts, not classes" in notes[0] or "gaps" in notes[0]
    assert main(base + ["--quiet"]) == 0
    assert capsys.readouterr().err == ""
