"""A finished study keeps its results, not its checkpoints (issue 20, item 16)."""

from __future__ import annotations

import json
import sqlite3

import pytest

from droplab.cli import main
from droplab.report import load_study
from droplab.sweep import Store


def _flags(npz, *extra):
    return ["sweep", "--dataset", "npz", "--data", npz, "--hidden", "256,256", "--quiet", *extra]


def _checkpoint_keys(db) -> list[str]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return [k for (k,) in con.execute("SELECT key FROM checkpoints ORDER BY key")]
    finally:
        con.close()


def test_a_finished_study_drops_its_checkpoints_and_the_file_shrinks(npz, tmp_path, capsys):
    db = tmp_path / "s.db"
    assert main(_flags(npz, "--dropout", "hidden=0,0.3", "--seeds", "3", "--epochs", "3",
                       "--store", str(db), "--json")) == 0
    summary = json.loads(capsys.readouterr().out)
    assert _checkpoint_keys(db) == []
    # 6 members of a 10-256-256-3 MLP: 1.7 MB of weights alone, ~5 MB with Adam's state
    assert db.stat().st_size < 300_000, db.stat().st_size
    assert not (tmp_path / "s.db-wal").exists() or (tmp_path / "s.db-wal").stat().st_size == 0
    # what `runs`, `report` and a resume read is all there
    with Store.open(db, mode="r") as st:
        assert len(st.runs()) == 6 and len(st.epochs()) == 18 and st.is_complete()
        assert st.summary()["test"] == summary["test"] and summary["test"]
    assert load_study(db).selected.key == summary["best"]
    assert main(["sweep", "--resume", str(db), "--quiet"]) == 0
    assert "is complete" in capsys.readouterr().out


def test_rerunning_a_complete_study_reads_its_test_metrics_back(npz, tmp_path, capsys):
    from droplab.sweep import SweepConfig, run_sweep

    db = tmp_path / "s.db"
    flags = _flags(npz, "--dropout", "hidden=0,0.3", "--seeds", "2", "--epochs", "2", "--store", str(db), "--json")
    assert main(flags) == 0
    first = json.loads(capsys.readouterr().out)
    with Store.open(db, mode="r") as st:
        spec = st.study()["spec"]
    again = run_sweep(SweepConfig.from_dict(spec).replace(store=str(db)), progress=False)
    assert again.best == first["best"] and again.test == first["test"]


def test_an_interrupted_study_keeps_what_a_resume_needs(npz, tmp_path, capsys):
    from droplab.sweep import SweepConfig, run_sweep

    cfg = SweepConfig.from_dict({
        "seeds": 3, "memory_mb": 8, "checkpoint_seconds": 0,
        "data": {"name": "npz", "path": npz}, "model": {"hidden": [256, 256]},
        "train": {"epochs": 3}, "space": {"dropout.hidden": [0.0, 0.3]},
    })
    populations: list[str] = []

    class _Stop(Exception):
        pass

    def stop_in_the_second_population(info):
        if info["population"] not in populations:
            populations.append(info["population"])
        if len(populations) == 2 and info["epoch"] == 2:
            raise _Stop

    cut = tmp_path / "cut.db"
    with pytest.raises(_Stop):
        run_sweep(cfg.replace(store=str(cut)), progress=False, on_epoch=stop_in_the_second_population)
    first, second = populations
    keys = _checkpoint_keys(cut)
    assert f"weights/{first}" in keys and first not in keys  # finished: its final weights only
    assert second in keys  # unfinished: its checkpoint, for the resume
    resumed = run_sweep(cfg.replace(store=str(cut)), progress=False)
    reference = run_sweep(cfg.replace(store=str(tmp_path / "ref.db")), progress=False)
    assert _checkpoint_keys(cut) == []
    assert resumed.test == reference.test and resumed.best == reference.best
    assert [r["values"] for r in resumed.rows] == [r["values"] for r in reference.rows]
