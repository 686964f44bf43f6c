"""The study store: schema, idempotence, locking, crash safety, non-finite floats, `droplab runs`."""

import csv
import io
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from droplab.cli import main
from droplab.errors import ConfigError, StoreError
from droplab.sweep.store import FINAL_STATUSES, SCHEMA_VERSION, Store

SPEC = {"rates": [0.1, 0.5], "seeds": 2, "model": {"kind": "mlp", "width": 64}}


@pytest.fixture
def db(tmp_path):
    return tmp_path / "sub" / "study.db"  # parent folder missing on purpose: open() creates it


def _filled(path):
    """A small study: 2 configurations x 2 seeds, 3 epochs each, 3 runs finished."""
    with Store.open(path) as s:
        s.init_study("rates", SPEC)
        ids = {}
        for p in (0.1, 0.5):
            cfg = s.add_configuration(f"p={p}", {"p": p, "placement": ["h1"]}, group="mlp")
            for seed in (0, 1):
                run = s.start_run(cfg, seed)
                ids[(p, seed)] = run
                for epoch in range(3):
                    s.commit_epoch([(run, epoch, {"val_loss": p + seed + epoch, "val_acc": None})])
        s.finish_runs(
            [
                (ids[0.1, 0], "completed", {"val_loss": 0.1, "val_acc": 0.9, "test_acc": 0.88}, {"seconds": 1.5, "peak_mem_mb": 10.0}),
                (ids[0.1, 1], "early_stopped", {"val_loss": 1.1, "val_acc": 0.8}, {"seconds": 2.5}),
                (ids[0.5, 0], "diverged", {"val_loss": math.nan, "val_acc": 0.1}, {"seconds": 0.5}),
            ]
        )
    return ids


def _raw(path, sql, args=()):
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def _strict_json(text):
    def refuse(name):
        raise AssertionError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


# --- schema, reopen --------------------------------------------------------------------------------
def test_create_then_reopen_keeps_everything(db):
    ids = _filled(db)
    assert _raw(db, "PRAGMA journal_mode")[0][0] == "wal"
    meta = dict(_raw(db, "SELECT key, value FROM meta"))
    assert meta["schema_version"] == str(SCHEMA_VERSION)
    with Store.open(db) as s:
        s.init_study("rates", SPEC)  # a resume with the same spec is accepted
        study = s.study()
        assert study["name"] == "rates" and study["spec"] == SPEC
        assert {"python", "torch", "numpy", "droplab", "platform"} <= study["versions"].keys()
        assert [c["key"] for c in s.configurations()] == ["p=0.1", "p=0.5"]
        assert s.configurations()[0] == {"id": 1, "key": "p=0.1", "params": {"p": 0.1, "placement": ["h1"]}, "group": "mlp"}
        assert len(s.runs()) == 4 and len(s.epochs()) == 12
        assert s.run_state(2, 1) == {"id": ids[0.5, 1], "status": "running", "attempts": 1, "last_epoch": 2}
        assert s.run_state(2, 7) is None
        assert s.summary() is None
        s.set_summary({"selected": "p=0.1", "test_acc": 0.88})
        s.set_summary({"selected": "p=0.5"})  # replaces
    with Store.open(db, mode="r") as s:
        assert s.summary() == {"selected": "p=0.5"}


def test_spec_mismatch_names_differing_keys(db):
    with Store.open(db) as s:
        s.init_study("rates", SPEC)
    other = {"rates": [0.1, 0.5], "seeds": 3, "model": {"kind": "mlp", "width": 32}, "extra": 1}
    with Store.open(db) as s:
        with pytest.raises(StoreError, match=r"different spec \(differing keys: extra, model\.width, seeds\)"):
            s.init_study("rates", other)
        assert s.study()["spec"] == SPEC
        with pytest.raises(StoreError, match=r"differing keys: seeds\)"):
            s.init_study("rates", {**SPEC, "seeds": 2.0})  # 2 == 2.0 in Python, not in the file


def test_study_before_init_and_bad_arguments(db):
    with Store.open(db) as s:
        with pytest.raises(StoreError, match="init_study never ran"):
            s.study()
        with pytest.raises(StoreError, match="spec must be a dict, got list"):
            s.init_study("x", [1])
        with pytest.raises(StoreError, match="name must be a non-empty string"):
            s.init_study("", {})
        with pytest.raises(StoreError, match="key 1 is not a string"):
            s.init_study("x", {1: 2})
        with pytest.raises(StoreError, match=r"spec\.f: object is not a number"):
            s.init_study("x", {"f": object()})


# --- idempotence -----------------------------------------------------------------------------------
def test_start_run_twice_is_one_run_with_two_attempts(db):
    with Store.open(db) as s:
        cfg = s.add_configuration("a", {"p": 0.2}, "g")
        assert s.add_configuration("a", {"p": 0.2}, "g") == cfg
        first, second = s.start_run(cfg, 3), s.start_run(cfg, 3)
        assert first == second
        (run,) = s.runs()
        assert (run["id"], run["seed"], run["attempts"], run["status"]) == (first, 3, 2, "running")
        assert run["result"] is None and run["cost"] is None and run["epochs_run"] == 0
        with pytest.raises(StoreError, match="no configuration with id 99"):
            s.start_run(99, 0)
        with pytest.raises(ConfigError, match="seed must be a non-negative integer, got -1"):
            s.start_run(cfg, -1)
        with pytest.raises(StoreError, match="'a' is already recorded with other params or group"):
            s.add_configuration("a", {"p": 0.3}, "g")


def test_commit_epoch_retry_replaces_and_never_duplicates(db):
    with Store.open(db) as s:
        run = s.start_run(s.add_configuration("a", {}, "g"), 0)
        for _ in range(3):  # the same epoch retried (a resume recomputes it)
            s.commit_epoch([(run, 0, {"loss": 2.0})])
        s.commit_epoch([(run, 1, {"loss": 1.0})])
        s.commit_epoch([(run, 1, {"loss": 0.5, "acc": 0.7})])
        assert s.epochs(run) == [
            {"run_id": run, "epoch": 0, "loss": 2.0},
            {"run_id": run, "epoch": 1, "loss": 0.5, "acc": 0.7},
        ]
        assert s.run_state(1, 0)["last_epoch"] == 1 and s.runs()[0]["epochs_run"] == 2


def test_commit_epoch_is_one_transaction(db):
    with Store.open(db) as s:
        run = s.start_run(s.add_configuration("a", {}, "g"), 0)
        s.commit_epoch([(run, 0, {"loss": 1.0})], checkpoint=("g", 0, b"zero"))
        # the second row names an unknown run: nothing of this commit may land
        with pytest.raises(StoreError, match="no run with id 42"):
            s.commit_epoch([(run, 1, {"loss": 0.5}), (42, 1, {"loss": 0.5})], checkpoint=("g", 1, b"one"))
        assert [e["epoch"] for e in s.epochs()] == [0]
        assert s.load_checkpoint("g") == (0, b"zero")
        with pytest.raises(StoreError, match="reserved"):
            s.commit_epoch([(run, 1, {"epoch": 1.0})])
        with pytest.raises(ConfigError, match="epoch must be a non-negative integer"):
            s.commit_epoch([(run, 1.5, {})])
        with pytest.raises(StoreError, match="checkpoint blob must be bytes, got str"):
            s.commit_epoch([], checkpoint=("g", 1, "text"))


def test_checkpoint_one_row_per_key(db):
    big = os.urandom(3 * 2**20)
    with Store.open(db) as s:
        assert s.load_checkpoint("g") is None
        run = s.start_run(s.add_configuration("a", {}, "g"), 0)
        for epoch in range(4):
            s.commit_epoch([(run, epoch, {})], checkpoint=("g", epoch, big[epoch:]))
        s.commit_epoch([], checkpoint=("h", 9, bytearray(b"h")))
        assert s.load_checkpoint("g") == (3, big[3:])
        assert _raw(db, "SELECT key, epoch FROM checkpoints ORDER BY key") == [("g", 3), ("h", 9)]
        s.delete_checkpoint("g")
        s.delete_checkpoint("g")  # no-op
        assert s.load_checkpoint("g") is None and s.load_checkpoint("h") == (9, b"h")


# --- values ----------------------------------------------------------------------------------------
def test_non_finite_floats_round_trip_as_strict_json(db):
    weird = {"nan": math.nan, "inf": math.inf, "ninf": -math.inf, "none": None, "np": np.float32(0.5)}
    with Store.open(db) as s:
        s.init_study("w", {"max_norm": math.inf, "nested": [math.nan, 1]})
        cfg = s.add_configuration("c", {"clip": -math.inf}, "g")
        run = s.start_run(cfg, 0)
        s.commit_epoch([(run, 0, weird)])
        s.finish_runs([(run, "diverged", weird, {"seconds": math.inf})])
        s.set_summary({"best": math.nan})
        s.init_study("w", {"max_norm": math.inf, "nested": [math.nan, 1]})  # NaN spec still "equal"
    for (text,) in _raw(db, "SELECT metrics FROM epochs UNION ALL SELECT result FROM runs UNION ALL SELECT spec FROM study"):
        _strict_json(text)
    with Store.open(db, mode="r") as s:
        (ep,) = s.epochs()
        assert math.isnan(ep["nan"]) and ep["inf"] == math.inf and ep["ninf"] == -math.inf
        assert ep["none"] is None and ep["np"] == 0.5 and type(ep["np"]) is float
        (run,) = s.runs()
        assert math.isnan(run["result"]["nan"]) and run["cost"] == {"seconds": math.inf}
        assert run["params"] == {"clip": -math.inf}
        assert s.study()["spec"]["max_norm"] == math.inf and math.isnan(s.study()["spec"]["nested"][0])
        assert math.isnan(s.summary()["best"])


def test_finish_runs_validates(db):
    with Store.open(db) as s:
        run = s.start_run(s.add_configuration("a", {}, "g"), 0)
        with pytest.raises(ConfigError, match=r"status must be one of .*'completed'.*got 'complete' \(did you mean"):
            s.finish_runs([(run, "complete", {}, {})])
        with pytest.raises(StoreError, match="no run with id 7"):
            s.finish_runs([(run, "completed", {}, {}), (7, "failed", {}, {})])
        assert s.runs()[0]["status"] == "running"  # the whole batch was rolled back
        with pytest.raises(StoreError, match="cost of run 1 must be a dict, got NoneType"):
            s.finish_runs([(run, "failed", {}, None)])
        for status in FINAL_STATUSES:
            s.finish_runs([(run, status, {"s": status}, {})])
            assert s.runs(status=status)[0]["result"] == {"s": status}
        with pytest.raises(ConfigError, match="status must be one of"):
            s.runs(status="done")


def test_runs_and_epochs_content(db):
    ids = _filled(db)
    with Store.open(db, mode="r") as s:
        runs = s.runs()
        assert [(r["key"], r["seed"]) for r in runs] == [("p=0.1", 0), ("p=0.1", 1), ("p=0.5", 0), ("p=0.5", 1)]
        assert set(runs[0]) == {"id", "config_id", "key", "params", "group", "seed", "status",
                                "attempts", "result", "cost", "epochs_run"}
        # no process writes the study any more: its unfinished run reads as interrupted
        assert [r["status"] for r in runs] == ["completed", "early_stopped", "diverged", "interrupted"]
        assert all(r["epochs_run"] == 3 and r["group"] == "mlp" for r in runs)
        assert [r["id"] for r in s.runs(status="interrupted")] == [ids[0.5, 1]]
        assert s.runs(status="running") == []
        ep = s.epochs(ids[0.5, 1])
        assert [(e["epoch"], e["val_loss"], e["val_acc"]) for e in ep] == [(0, 1.5, None), (1, 2.5, None), (2, 3.5, None)]
        assert [(e["run_id"], e["epoch"]) for e in s.epochs()] == [(i, k) for i in sorted(ids.values()) for k in range(3)]


def test_export_csv(db, tmp_path):
    _filled(db)
    out = tmp_path / "runs.csv"
    with Store.open(db, mode="r") as s:
        s.export_csv(out)
        buf = io.StringIO()
        s.export_csv(buf, status="completed")
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 4
    assert list(rows[0])[:7] == ["run_id", "key", "group", "seed", "status", "attempts", "epochs_run"]
    assert {"param.p", "param.placement", "result.val_loss", "result.test_acc", "cost.seconds", "cost.peak_mem_mb"} <= set(rows[0])
    assert rows[0]["param.placement"] == '["h1"]' and float(rows[0]["result.test_acc"]) == 0.88
    assert rows[2]["result.val_loss"] == "nan" and rows[1]["result.test_acc"] == "" and rows[3]["result.val_loss"] == ""
    assert [r["key"] for r in csv.DictReader(io.StringIO(buf.getvalue()))] == ["p=0.1"]


# --- locking, readers, crashes ---------------------------------------------------------------------
def test_second_writer_in_same_process_is_refused(db):
    with Store.open(db) as s:
        with pytest.raises(StoreError, match=rf"study .*study\.db is in use by another process \(pid {os.getpid()}\)"):
            Store.open(db)
        s.add_configuration("still", {}, "writable")
    with Store.open(db) as s:  # the lock went with close()
        assert [c["key"] for c in s.configurations()] == ["still"]


def _python(code, *args, **kw):
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *map(str, args)], text=True, **kw)


def test_second_writer_in_another_process_is_refused(db):
    code = """
        import sys
        from droplab.errors import StoreError
        from droplab.sweep.store import Store
        try:
            Store.open(sys.argv[1])
        except StoreError as exc:
            print(exc); sys.exit(3)
    """
    with Store.open(db) as s:
        s.init_study("x", {})
        child = _python(code, db, stdout=subprocess.PIPE)
        out, _ = child.communicate(timeout=60)
        assert child.returncode == 3
        assert f"is in use by another process (pid {os.getpid()})" in out
        assert s.study()["name"] == "x"


def test_reader_works_while_writer_holds_the_lock(db):
    with Store.open(db) as w:
        w.init_study("x", {})
        run = w.start_run(w.add_configuration("a", {}, "g"), 0)
        w.commit_epoch([(run, 0, {"loss": 1.0})])
        with Store.open(db, mode="r") as r:
            assert r.epochs() == [{"run_id": run, "epoch": 0, "loss": 1.0}]
            w.commit_epoch([(run, 1, {"loss": 0.5})])
            assert len(r.epochs()) == 2  # each read sees the latest committed epoch
            with pytest.raises(StoreError, match="is open read-only"):
                r.commit_epoch([(run, 2, {})])


def test_open_errors(tmp_path, db):
    with pytest.raises(StoreError, match=r"no study at .*missing\.db"):
        Store.open(tmp_path / "missing.db", mode="r")
    assert not (tmp_path / "missing.db").exists()
    junk = tmp_path / "junk.db"
    junk.write_text("not a database at all, just some text " * 20)
    for mode in ("r", "w", "w"):  # the failed "w" open released its lock: same error again
        with pytest.raises(StoreError, match=r"junk\.db is not a droplab study \(not an SQLite file\)"):
            Store.open(junk, mode=mode)
    foreign = tmp_path / "foreign.db"
    sqlite3.connect(foreign).execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(StoreError, match="is not a droplab study"):
        Store.open(foreign)
    with Store.open(db):
        pass
    conn = sqlite3.connect(db)
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match=f"schema version 99; this droplab reads version {SCHEMA_VERSION}"):
        Store.open(db, mode="r")
    with Store.open(db.parent / "fresh.db"):
        pass  # a failed open above released its lock: nothing lingers
    with pytest.raises(ConfigError, match="mode must be one of 'w', 'r'; got 'a'"):
        Store.open(db, mode="a")
    with pytest.raises(StoreError, match="is a directory"):
        Store.open(tmp_path)
    s = Store.open(db.parent / "fresh.db")
    s.close()
    s.close()
    with pytest.raises(StoreError, match="is closed"):
        s.runs()


_WRITER = """
    import sys
    from droplab.sweep.store import Store
    s = Store.open(sys.argv[1])
    s.init_study("crash", {"n": 3})
    runs = [s.start_run(s.add_configuration(f"c{i}", {"i": i}, "g"), 0) for i in range(3)]
    pad = bytes(100_000)
    for epoch in range(10**6):
        s.commit_epoch(
            [(r, epoch, {"loss": 1.0 / (epoch + 1), "copy": float(epoch)}) for r in runs],
            checkpoint=("g", epoch, epoch.to_bytes(8, "little") + pad),
        )
        if epoch == 5:
            print("ready", flush=True)
"""


def test_kill_minus_9_mid_write_leaves_a_consistent_resumable_study(db):
    child = _python(_WRITER, db, stdout=subprocess.PIPE)
    try:
        assert child.stdout.readline().strip() == "ready"
        time.sleep(0.3)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    with Store.open(db, mode="r") as r:  # a reader recovers the WAL the dead writer left
        states = [r.run_state(cfg, 0) for cfg in (1, 2, 3)]
        last = states[0]["last_epoch"]
        assert last >= 5 and all(st["last_epoch"] == last for st in states)
        for st in states:  # every epoch 0..last exactly once, each row complete
            ep = r.epochs(st["id"])
            assert [e["epoch"] for e in ep] == list(range(last + 1))
            assert all(e["copy"] == e["epoch"] and e["loss"] == 1.0 / (e["epoch"] + 1) for e in ep)
        epoch, blob = r.load_checkpoint("g")
        assert epoch == last and int.from_bytes(blob[:8], "little") == last and len(blob) == 100_008
    with Store.open(db) as w:  # the OS released the dead writer's lock
        w.init_study("crash", {"n": 3})
        assert w.start_run(1, 0) == states[0]["id"] and w.run_state(1, 0)["attempts"] == 2
        w.commit_epoch([(states[0]["id"], last + 1, {"loss": 0.0, "copy": last + 1.0})])
    assert _raw(db, "PRAGMA integrity_check") == [("ok",)]
    assert _raw(db, "PRAGMA foreign_key_check") == []


# --- `droplab runs` --------------------------------------------------------------------------------
def test_cli_runs_json_lines(db, capsys):
    _filled(db)
    assert main(["runs", str(db), "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    records = [_strict_json(line) for line in lines]
    assert len(records) == 4
    assert list(records[0]) == sorted(records[0]) == sorted(["config", "cost", "epochs_run", "group", "key", "result", "seed", "status"])
    assert records[0]["config"] == {"p": 0.1, "placement": ["h1"]} and records[0]["result"]["test_acc"] == 0.88
    assert records[2]["result"]["val_loss"] == "NaN" and records[3]["result"] is None
    assert main(["runs", str(db), "--json", "--status", "diverged"]) == 0
    assert [json.loads(x)["key"] for x in capsys.readouterr().out.splitlines()] == ["p=0.5"]


def test_cli_runs_csv_and_table(db, tmp_path, capsys):
    _filled(db)
    out = tmp_path / "r.csv"
    assert main(["runs", str(db), "--csv", str(out)]) == 0
    assert [r["status"] for r in csv.DictReader(out.open())] == ["completed", "early_stopped", "diverged", "interrupted"]
    assert main(["runs", str(db)]) == 0
    table = capsys.readouterr().out
    for text in ("p=0.1", "p=0.5", "early_stopped", "val_loss", "val_acc", "test_acc", "seconds", "0.88", "4 runs"):
        assert text in table
    assert table.index("val_acc") < table.index("test_acc")


def test_cli_runs_bad_status_is_one_line_exit_2(db, capsys):
    _filled(db)
    assert main(["runs", str(db), "--status", "complete"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "status must be one of" in err and "did you mean 'completed'" in err


@pytest.mark.parametrize("make", ["missing", "junk"])
def test_cli_runs_errors_are_one_line_exit_2(tmp_path, capsys, make):
    path = tmp_path / "study.db"
    if make == "junk":
        path.write_bytes(b"\x00garbage" * 100)
    assert main(["runs", str(path), "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith("droplab: error: ")
    assert ("no study at" if make == "missing" else "not a droplab study") in captured.err
