"""Sweeps on a Ray cluster (`--executor ray`): the local executor's numbers, a killed worker
retried from its checkpoint, runs failed after the last retry, resume across executors, and
the one line that says how to install Ray when it is missing.

The cluster is Ray started in this process on loopback (2 CPUs), shared by this module's
tests and shut down after them.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys

import pytest
import torch
from _toy import toy_tensors

from droplab.cli import main
from droplab.errors import ConfigError
from droplab.models import ModelSpec
from droplab.sweep import Store, SweepConfig, run_sweep
from droplab.train import TrainConfig

try:
    import ray
except ImportError:
    ray = None

needs_ray = pytest.mark.skipif(ray is None, reason="Ray is not installed (pip install 'droplab[ray]')")

TIMING = ("seconds", "peak_mem_mb", "population_seconds")
SPEC = ModelSpec(hidden=(24,), dropout={"hidden": 0.0})


@pytest.fixture(scope="module")
def cluster():
    """Ray in this process, two CPUs, every node and port on 127.0.0.1."""
    with pytest.MonkeyPatch.context() as mp:
        # Ray's own switch for a loopback-only node (what it does on macOS and Windows).
        mp.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        mp.setattr("ray._private.ray_constants.ENABLE_RAY_CLUSTER", False, raising=False)
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            assert {n["NodeManagerAddress"] for n in ray.nodes()} == {"127.0.0.1"}
            yield ray
        finally:
            ray.shutdown()





def _store(path):
    """Runs and epoch rows of a study, without wall times and memory (which vary by run).

    Epoch rows are keyed by (configuration, seed): run ids follow the order in which runs
    started, which on a cluster is the order in which populations got a worker.
    """
    with Store.open(path, mode="r") as st:
        runs = [(r["key"], r["seed"], r["status"], r["result"], r["epochs_run"]) for r in st.runs()]
        names = {r["id"]: (r["key"], r["seed"]) for r in st.runs()}
        epochs = sorted(
            ((*names[e["run_id"]], e["epoch"]), {k: v for k, v in e.items() if k not in (*TIMING, "run_id")})
            for e in st.epochs()
        )
    return runs, epochs


def _runs_json(path, capsys):
    """What `droplab runs STUDY --json` prints, without the timing fields of `cost`."""
    capsys.readouterr()
    assert main(["runs", str(path), "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    for line in lines:
        for key in TIMING:
            (line["cost"] or {}).pop(key, None)
    return lines


def _attempts(path):
    with Store.open(path, mode="r") as st:
        return {(r["key"], r["seed"]): r["attempts"] for r in st.runs()}


# --- same numbers as the local executor ------------------------------------------------------------
@needs_ray
def test_cli_sweep_on_ray_records_what_the_local_executor_records(cluster, npz, tmp_path, capsys):
    flags = [
        "sweep", "--dataset", "npz", "--data", npz, "--hidden", "16", "--dropout", "hidden=0,0.3",
        "--lr", "0.01", "--seeds", "2", "--epochs", "3", "--memory-mb", "0.35", "--quiet", "--json",
    ]
    local, remote = tmp_path / "local.db", tmp_path / "ray.db"
    assert main([*flags, "--store", str(local)]) == 0
    local_summary = json.loads(capsys.readouterr().out)
    assert main([*flags, "--store", str(remote), "--executor", "ray"]) == 0
    ray_summary = json.loads(capsys.readouterr().out)
    local_runs, ray_runs = _runs_json(local, capsys), _runs_json(remote, capsys)
    assert len(local_runs) == 4 and {r["status"] for r in local_runs} == {"completed"}
    assert {r["cost"]["population_size"] for r in local_runs} == {2}  # two populations, two tasks
    assert ray_runs == local_runs  # every metric of every run, bitwise
    assert _store(remote) == _store(local)  # and every epoch row
    for s in (local_summary, ray_summary):
        s.pop("store")
        s.pop("step_cost")  # measured wall times, like "seconds"
        for row in s["rows"]:
            row.pop("seconds"), row.pop("peak_mem_mb")
    assert ray_summary == local_summary


@needs_ray
def test_runs_trained_one_by_one_on_workers_match_local_ones(cluster, tmp_path):
    data = toy_tensors()
    kw = dict(
        space={"dropout.hidden": [0.0, 0.3]}, seeds=2, train=TrainConfig(epochs=2, batch_size=40, lr=1e-2),
        population=False, progress=False,
    )
    local = run_sweep(SPEC, data=data, store=tmp_path / "local.db", **kw)
    pids = set()
    remote = run_sweep(
        SPEC, data=data, store=tmp_path / "ray.db", executor="ray",
        on_epoch=lambda info: pids.add(info["worker"]["pid"]), **kw,
    )
    assert pids and os.getpid() not in pids  # trained in Ray's worker processes
    assert _store(tmp_path / "ray.db") == _store(tmp_path / "local.db")
    assert [r["values"] for r in remote.rows] == [r["values"] for r in local.rows]
    assert remote.test == local.test and remote.best == local.best


# --- failures --------------------------------------------------------------------------------------
@needs_ray
def test_a_killed_worker_is_retried_from_its_checkpoint_and_every_run_recorded_once(cluster, tmp_path):
    data = toy_tensors(1)
    kw = dict(
        space={"dropout.hidden": [0.0, 0.3]}, seeds=2, train=TrainConfig(epochs=12, batch_size=40, lr=1e-2),
        memory_mb=0.5, checkpoint_seconds=0, progress=False,
    )
    reference = run_sweep(SPEC, data=data, store=tmp_path / "ref.db", **kw)
    seen: list[tuple[str, int, int]] = []
    killed: list[tuple[str, int, int]] = []

    def kill_once(info):
        seen.append((info["population"], info["epoch"], info["worker"]["pid"]))
        if not killed and info["epoch"] == 2:
            killed.append(seen[-1])
            os.kill(info["worker"]["pid"], signal.SIGKILL)  # the worker process dies mid-population

    result = run_sweep(SPEC, data=data, store=tmp_path / "ray.db", executor="ray", on_epoch=kill_once, **kw)
    assert killed, "no population reached epoch 2"
    victim, _, pid = killed[0]
    assert pid != os.getpid()
    assert any("WorkerCrashedError" in n and "retrying from its last checkpoint" in n for n in result.notes)
    # The retry ran in another process and went on after the last epoch the driver recorded.
    before = [e for p, e, w in seen if p == victim and w == pid]
    after = [e for p, e, w in seen if p == victim and w != pid]
    assert after and after[0] == max(before) + 1 and after[-1] == 12
    runs, epochs = _store(tmp_path / "ray.db")
    assert len(runs) == 4 and len({(k, s) for k, s, *_ in runs}) == 4  # every (config, seed) once
    assert [r[2] for r in runs] == ["completed"] * 4
    assert len(epochs) == 4 * 12 and len({key for key, _ in epochs}) == 4 * 12
    assert (runs, epochs) == _store(tmp_path / "ref.db")  # equal to the uninterrupted sweep
    assert [r["values"] for r in result.rows] == [r["values"] for r in reference.rows]
    assert sorted(_attempts(tmp_path / "ray.db").values()) == [1, 1, 2, 2]  # the victim's two runs


@needs_ray
def test_after_the_last_retry_runs_are_marked_failed_and_a_resume_trains_them(cluster, tmp_path):
    from droplab.sweep.ray_executor import RayExecutor

    data = toy_tensors(2)
    kw = dict(
        space={"dropout.hidden": [0.0, 0.3]}, seeds=1, train=TrainConfig(epochs=4, batch_size=40, lr=1e-2),
        memory_mb=0.25, checkpoint_seconds=0, progress=False,
    )
    victim: list[str] = []
    doomed: set[int] = set()

    def kill_every_attempt(info):
        victim[:] = victim or [info["population"]]
        pid = info["worker"]["pid"]
        if info["population"] == victim[0] and pid not in doomed:
            doomed.add(pid)
            os.kill(pid, signal.SIGKILL)

    db = tmp_path / "s.db"
    result = run_sweep(
        SPEC, data=data, store=db, executor=RayExecutor(max_retries=1), on_epoch=kill_every_attempt, **kw
    )
    assert len(doomed) == 2  # the first attempt and its one retry
    assert any("gave up after 2 attempts" in n and "--resume retries them" in n for n in result.notes)
    with Store.open(db, mode="r") as st:
        runs = st.runs()
    statuses = sorted(r["status"] for r in runs)
    assert statuses == ["completed", "failed"]  # the other population went on
    failed = next(r for r in runs if r["status"] == "failed")
    assert failed["result"]["error"].startswith("WorkerCrashedError")
    assert next(r for r in result.rows if r["key"] == failed["key"])["n"] == 0
    # A resume (here on the local executor) trains the failed run again, from its checkpoint.
    resumed = run_sweep(SPEC, data=data, store=db, **kw)
    reference = run_sweep(SPEC, data=data, store=tmp_path / "ref.db", **kw)
    assert _store(db) == _store(tmp_path / "ref.db")
    assert [r["values"] for r in resumed.rows] == [r["values"] for r in reference.rows]
    assert _attempts(db)[(failed["key"], failed["seed"])] == 3


@needs_ray
def test_an_error_of_the_sweep_itself_ends_it_without_retries(cluster, tmp_path, monkeypatch):
    import droplab

    monkeypatch.setattr(droplab, "__version__", "0.0.0+other")
    with pytest.raises(ConfigError, match=r"has droplab .+, the driver 0\.0\.0\+other; install the same version"):
        run_sweep(
            SPEC, data=toy_tensors(), space={"dropout.hidden": [0.0]}, seeds=1,
            train=TrainConfig(epochs=1, batch_size=40), store=tmp_path / "s.db", executor="ray", progress=False,
        )


# --- resume across executors ------------------------------------------------------------------------
class _Stop(Exception):
    pass


@needs_ray
def test_a_local_sweep_resumes_on_ray_to_the_uninterrupted_results(cluster, npz, tmp_path, capsys):
    cfg = SweepConfig.from_dict({
        "data": {"name": "npz", "path": npz}, "model": {"hidden": [16]}, "train": {"epochs": 4},
        "space": {"dropout.hidden": [0.0, 0.3]}, "seeds": 2, "checkpoint_seconds": 0,
    })
    cut, ref = str(tmp_path / "cut.db"), str(tmp_path / "ref.db")

    def stop(info):
        if info["epoch"] == 2:
            raise _Stop

    with pytest.raises(_Stop):
        run_sweep(cfg.replace(store=cut), progress=False, on_epoch=stop)
    assert main(["sweep", "--resume", cut, "--executor", "ray", "--quiet"]) == 0
    run_sweep(cfg.replace(store=ref), progress=False)
    assert _runs_json(cut, capsys) == _runs_json(ref, capsys)
    assert _store(cut) == _store(ref)
    assert set(_attempts(cut).values()) == {2}


# --- without a cluster ------------------------------------------------------------------------------
def test_without_ray_the_sweep_says_in_one_line_how_to_install_it(monkeypatch, npz, tmp_path, capsys):
    from droplab.sweep.ray_executor import MISSING_RAY, RayExecutor

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if not installed
    with pytest.raises(ConfigError, match=re.escape("--executor ray needs Ray: pip install 'droplab[ray]'")):
        RayExecutor()
    db = tmp_path / "s.db"
    rc = main(["sweep", "--dataset", "npz", "--data", npz, "--quiet", "--executor", "ray", "--store", str(db)])
    assert rc == 2 and capsys.readouterr().err == f"droplab: error: {MISSING_RAY}\n"
    assert not db.exists()  # refused before anything was trained or written


def test_executor_and_address_are_run_options_checked_up_front(npz, tmp_path, capsys):
    cfg = SweepConfig.from_dict({"executor": "local", "train": {"epochs": 1}})
    assert "executor" not in cfg.to_dict() and "address" not in cfg.to_dict()
    with pytest.raises(ConfigError, match=r"executor must be one of 'local', 'ray'; got 'dask'"):
        SweepConfig(executor="dask")
    with pytest.raises(ConfigError, match=r"address applies to executor 'ray' \(a Ray cluster\), got executor 'local'"):
        SweepConfig(address="auto")
    with pytest.raises(ConfigError, match=r"address must be 'auto' or HOST:PORT of a Ray cluster, got ''"):
        SweepConfig(executor="ray", address="")
    rc = main(["sweep", "--dataset", "npz", "--data", npz, "--quiet", "--address", "auto"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "address applies to executor 'ray'" in err


def test_an_address_nobody_answers_on_is_refused_at_once():
    import socket

    from droplab.sweep.ray_executor import _check_reachable

    with socket.socket() as s:  # a loopback port that was free a moment ago, closed again
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConfigError, match=rf"cannot reach the Ray cluster at 127\.0\.0\.1:{port}: .+; is `ray start"):
        _check_reachable(f"127.0.0.1:{port}")
    _check_reachable("auto")  # not a HOST:PORT: left to Ray


@needs_ray
def test_tasks_are_sized_to_the_local_thread_count_and_the_nodes(monkeypatch):
    from droplab.sweep.executors import Job as _Job
    from droplab.sweep.ray_executor import RayExecutor

    class _R:
        def __init__(self, device):
            self.train = TrainConfig(device=device)

    def job(device="auto"):
        return _Job("p", "population", [(_R(device), 0)])

    monkeypatch.setattr(torch, "get_num_threads", lambda: 6)
    ex = RayExecutor()
    ex._max_cpus, ex._cluster_gpus = 4, 0.0
    assert ex._size(job()) == (4, 0.0)  # local threads, capped at the largest node
    ex._max_cpus = 16
    assert ex._size(job()) == (6, 0.0)
    ex._cluster_gpus = 2.0
    assert ex._size(job()) == (6, 1.0) and ex._size(job("cpu")) == (6, 0.0)
    ex = RayExecutor(cpus_per_task=2, gpus_per_task=0.5)
    ex._max_cpus, ex._cluster_gpus = 16, 2.0
    assert ex._size(job("cpu")) == (2, 0.5)
    with pytest.raises(ConfigError, match=r"max_retries must be a non-negative integer, got -1"):
        RayExecutor(max_retries=-1)
    with pytest.raises(ConfigError, match=r"cpus_per_task must be a positive integer, got 0"):
        RayExecutor(cpus_per_task=0)
