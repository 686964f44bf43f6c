"""`droplab sweep` end to end: table, validation errors, TOML files, kill -9 and --resume."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from droplab.cli import main
from droplab.sweep import Store

TIMING = ("seconds", "peak_mem_mb", "population_seconds")




def _flags(npz, *extra):
    return ["sweep", "--dataset", "npz", "--data", npz, "--hidden", "16", "--quiet", *extra]


def test_sweep_prints_the_table_and_the_selected_test_metric(npz, tmp_path, capsys):
    db = str(tmp_path / "s.db")
    rc = main(_flags(npz, "--dropout", "hidden=0,0.3", "--seeds", "2", "--epochs", "2", "--store", db))
    out = capsys.readouterr().out
    assert rc == 0
    assert "dropout.hidden=0.3" in out and "95% CI" in out and "test_acc" in out
    assert "one-standard-error choice" in out
    with Store.open(db, mode="r") as st:
        assert len(st.runs()) == 4 and st.summary()["best"] in out


def test_bad_configuration_ends_with_one_line_before_training(npz, tmp_path, capsys):
    db = tmp_path / "s.db"
    rc = main(_flags(npz, "--dropout", "hidden=0,1.2", "--store", str(db)))
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert "p must be in [0, 1), got 1.2" in err
    assert not db.exists()
    rc = main(_flags(npz, "--axis", "train.momentun=0.9", "--store", str(db)))
    assert rc == 2 and "did you mean 'momentum'" in capsys.readouterr().err


def test_toml_file_with_flags_on_top_and_json_output(npz, tmp_path, capsys):
    cfg = tmp_path / "sweep.toml"
    cfg.write_text(
        f'name = "toml"\nseeds = 2\n[data]\nname = "npz"\npath = "{npz}"\n'
        '[model]\nhidden = [8]\n[train]\nepochs = 2\n[space]\n"dropout.hidden" = [0.0, 0.2]\n'
    )
    rc = main(["sweep", str(cfg), "--lr", "0.01,0.02", "--quiet", "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert rc == 0 and len(summary["rows"]) == 4
    assert {r["params"]["train.lr"] for r in summary["rows"]} == {0.01, 0.02}


def _epochs_committed(db: str) -> int:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.2)
        try:
            return con.execute("SELECT COUNT(*) FROM epochs").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def _store_content(db):
    with Store.open(db, mode="r") as st:
        runs = [
            (r["key"], r["seed"], r["status"], r["result"], r["epochs_run"]) for r in st.runs()
        ]
        epochs = [{k: v for k, v in e.items() if k not in TIMING} for e in st.epochs()]
        summary = st.summary()
    for key in ("store", "step_cost"):  # step_cost: measured wall times, like "seconds"
        summary.pop(key)
    for row in summary["rows"]:
        for key in ("seconds", "peak_mem_mb"):
            row.pop(key)
    return runs, epochs, summary


def test_kill_9_then_resume_gives_exactly_the_uninterrupted_results(npz, tmp_path):
    flags = _flags(
        npz, "--dropout", "hidden=0,0.3", "--seeds", "2", "--epochs", "20", "--batch-size", "15",
        "--checkpoint-seconds", "0",
    )
    killed = str(tmp_path / "killed.db")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "droplab", *flags, "--store", killed],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
    )
    deadline = time.monotonic() + 60
    while _epochs_committed(killed) < 8 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the sweep ended before it could be killed: " + proc.stderr.read().decode()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    with Store.open(killed, mode="r") as st:
        assert {r["status"] for r in st.runs()} == {"interrupted"}
        assert st.summary() is None
        done_before = len(st.epochs())
    assert 0 < done_before < 4 * 20

    assert main(["sweep", "--resume", killed, "--quiet"]) == 0
    reference = str(tmp_path / "reference.db")
    assert main([*flags, "--store", reference]) == 0

    runs, epochs, summary = _store_content(killed)
    ref_runs, ref_epochs, ref_summary = _store_content(reference)
    assert len(runs) == 4 and len({(k, s) for k, s, *_ in runs}) == 4  # one result per (config, seed)
    assert [r[2] for r in runs] == ["completed"] * 4
    assert len(epochs) == 4 * 20  # every epoch once, none lost, none duplicated
    assert runs == ref_runs
    assert epochs == ref_epochs
    assert summary == ref_summary
    with Store.open(killed, mode="r") as st:
        assert {r["attempts"] for r in st.runs()} == {2}


def test_resume_after_stopped_members_left_the_population(npz, tmp_path, monkeypatch):
    """A crash after early stopping has shrunk the population resumes to the same results."""
    from droplab.sweep import Population

    flags = _flags(
        npz, "--dropout", "hidden=0,0.3", "--seeds", "2", "--epochs", "40", "--batch-size", "15",
        "--checkpoint-seconds", "0", "--early-stopping", "patience", "--patience", "3", "--lr", "0.002",
    )
    reference = str(tmp_path / "reference.db")
    assert main([*flags, "--store", reference]) == 0
    run_epoch, shrunk_epochs = Population.run_epoch, []

    def crash_two_epochs_after_a_compaction(self):
        rows = run_epoch(self)
        if len(self.rows) < self.k and not self.done:
            shrunk_epochs.append(self.epoch)
            if len(shrunk_epochs) == 2:  # this epoch's rows are lost with the process
                raise KeyboardInterrupt
        return rows

    monkeypatch.setattr(Population, "run_epoch", crash_two_epochs_after_a_compaction)
    crashed = str(tmp_path / "crashed.db")
    assert main([*flags, "--store", crashed]) != 0
    assert len(shrunk_epochs) == 2, "no member stopped early: the test no longer shrinks the population"
    monkeypatch.setattr(Population, "run_epoch", run_epoch)
    assert main(["sweep", "--resume", crashed, "--quiet"]) == 0
    runs, epochs, summary = _store_content(crashed)
    ref_runs, ref_epochs, ref_summary = _store_content(reference)
    assert "early_stopped" in {r[2] for r in runs}
    assert runs == ref_runs and epochs == ref_epochs and summary == ref_summary


def test_resume_refuses_other_settings(npz, tmp_path, capsys):
    db = str(tmp_path / "s.db")
    assert main(_flags(npz, "--dropout", "hidden=0,0.3", "--seeds", "1", "--epochs", "1", "--store", db)) == 0
    capsys.readouterr()
    rc = main(_flags(npz, "--dropout", "hidden=0,0.5", "--seeds", "1", "--epochs", "1", "--resume", db))
    assert rc == 2 and "differing keys: space" in capsys.readouterr().err


def test_a_scheduled_sweep_interrupted_then_resumed_from_the_cli_equals_the_uninterrupted_one(npz, tmp_path, monkeypatch):
    """``--dropout hidden=0.3:early@2,cosine@20step`` (a schedule axis) survives ``--resume`` exactly."""
    from droplab.sweep import Population

    flags = _flags(
        npz, "--dropout", "hidden=0,0.3:early@2,cosine@20step", "--seeds", "2", "--epochs", "5",
        "--batch-size", "30", "--checkpoint-seconds", "0", "--lr", "0.01",
    )
    reference = str(tmp_path / "reference.db")
    assert main([*flags, "--store", reference]) == 0
    run_epoch = Population.run_epoch

    def crash_in_epoch_three(self):
        if self.epoch == 2:
            raise KeyboardInterrupt
        return run_epoch(self)

    monkeypatch.setattr(Population, "run_epoch", crash_in_epoch_three)
    crashed = str(tmp_path / "crashed.db")
    assert main([*flags, "--store", crashed]) != 0
    assert _epochs_committed(crashed) == 8 * 2  # two epochs of every run were kept
    monkeypatch.setattr(Population, "run_epoch", run_epoch)
    assert main(["sweep", "--resume", crashed, "--quiet"]) == 0
    runs, epochs, summary = _store_content(crashed)
    ref_runs, ref_epochs, ref_summary = _store_content(reference)
    assert len(runs) == 8 and {r[2] for r in runs} == {"completed"}
    assert runs == ref_runs and epochs == ref_epochs and summary == ref_summary
