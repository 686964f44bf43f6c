"""``seeds="auto"``: racing rounds add seeds only where the decision is open; kill -9 and --resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from _toy import toy_tensors
from test_sweep_cli import _epochs_committed, _flags, _store_content

from droplab.cli import main
from droplab.errors import ConfigError
from droplab.models import ModelSpec
from droplab.sweep import Store, SweepConfig, run_sweep
from droplab.train import TrainConfig

SPEC = ModelSpec(hidden=(16,), dropout={"hidden": 0.0})
TRAIN = TrainConfig(epochs=3, batch_size=50)


def test_racing_stops_the_configurations_decided_worse(tmp_path):
    res = run_sweep(SPEC, data=toy_tensors(), space={"dropout.hidden": [0.0, 0.3, 0.9]}, seeds="auto",
                    max_seeds=15, train=TRAIN, store=tmp_path / "r.db", progress=False)
    seeds = {k: v["seeds"] for k, v in res.racing.items()}
    # rate 0.9 is decided worse than the best after its second round and gets no third
    assert seeds == {"dropout.hidden=0.0": 15, "dropout.hidden=0.3": 15, "dropout.hidden=0.9": 10}
    assert res.racing["dropout.hidden=0.9"]["why"].startswith("stopped at 10 seeds: decided worse than")
    assert "max_seeds (15) reached" in res.racing["dropout.hidden=0.0"]["why"]
    assert {r["key"]: r["n"] for r in res.rows} == seeds
    assert any("40 runs (fixed 15 seeds: 45)" in n for n in res.notes)
    with Store.open(tmp_path / "r.db", mode="r") as st:
        assert len(st.runs()) == 40 and st.summary()["racing"] == res.racing
        assert st.study()["spec"]["seeds"] == "auto" and st.study()["spec"]["max_seeds"] == 15
    # the runs are those of a fixed-seed sweep: same (configuration, seed), same numbers
    fixed = run_sweep(SPEC, data=toy_tensors(), space={"dropout.hidden": [0.0, 0.9]}, seeds=10, train=TRAIN,
                      progress=False)
    for row in fixed.rows:
        raced = next(r for r in res.rows if r["key"] == row["key"])
        assert {s: v for s, v in raced["values"].items() if int(s) < 10} == row["values"]


def test_auto_seeds_validation():
    with pytest.raises(ConfigError, match="max_seeds must be a positive integer"):
        SweepConfig.from_dict({"seeds": "auto", "max_seeds": 0})
    with pytest.raises(ConfigError, match="TPE already chooses"):
        SweepConfig.from_dict({"seeds": "auto", "sampler": "tpe", "trials": 4,
                               "space": {"dropout.hidden": {"uniform": [0.0, 0.5]}}})
    cfg = SweepConfig.from_dict({"seeds": "auto", "max_seeds": 7})
    assert cfg.seed_list() == list(range(7)) and cfg.to_dict()["max_seeds"] == 7


def test_racing_resumes_after_kill_9_mid_round(npz, tmp_path):
    # --stat bootstrap: at 5 seeds the exact sign-flip test cannot decide, so a second round is sure
    flags = _flags(npz, "--dropout", "hidden=0,0.9", "--seeds", "auto", "--max-seeds", "10", "--stat", "bootstrap",
                   "--epochs", "6", "--batch-size", "15", "--checkpoint-seconds", "0")
    killed = str(tmp_path / "killed.db")
    proc = subprocess.Popen([sys.executable, "-m", "droplab", *flags, "--store", killed],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    first_round = 2 * 5 * 6  # two configurations, 5 seeds, 6 epochs
    deadline = time.monotonic() + 120
    while _epochs_committed(killed) < first_round + 12 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the sweep ended before it could be killed: " + proc.stderr.read().decode()
    os.kill(proc.pid, signal.SIGKILL)  # in the second round: its populations are half trained
    proc.wait()
    with Store.open(killed, mode="r") as st:
        statuses = [r["status"] for r in st.runs()]
        assert st.summary() is None and "interrupted" in statuses and statuses.count("completed") == 10
    assert main(["sweep", "--resume", killed, "--quiet"]) == 0
    reference = str(tmp_path / "reference.db")
    assert main([*flags, "--store", reference]) == 0
    runs, epochs, summary = _store_content(killed)
    ref_runs, ref_epochs, ref_summary = _store_content(reference)
    assert runs == ref_runs and epochs == ref_epochs
    assert summary == ref_summary and summary["racing"]
    assert len(runs) == sum(v["seeds"] for v in summary["racing"].values())


def test_report_shows_seeds_per_configuration_and_why(tmp_path):
    import io

    from rich.console import Console

    from droplab.report import load_study, print_summary
    from droplab.report.html import render_html

    run_sweep(SPEC, data=toy_tensors(), space={"dropout.hidden": [0.0, 0.9]}, seeds="auto", max_seeds=10,
              train=TRAIN, store=tmp_path / "r.db", progress=False)
    study = load_study(tmp_path / "r.db")
    assert set(study.racing) == {c.key for c in study.configurations}
    page = render_html(study, figures_b64={})
    assert "--seeds auto" in page and "seeds &ndash;" in page
    buf = io.StringIO()
    print_summary(study, Console(file=buf, width=200))
    assert "seeds for no dropout: " in buf.getvalue()


def test_cli_seeds_errors_end_with_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["sweep", "--seeds", "foo"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "expected a number of seeds or 'auto', got 'foo'" in err
    assert main(["sweep", "--seeds", "auto", "--max-seeds", "0", "--quiet"]) == 2
    assert capsys.readouterr().err == "droplab: error: max_seeds must be a positive integer, got 0\n"
