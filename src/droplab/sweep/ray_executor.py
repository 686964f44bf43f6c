"""Sweeps on a Ray cluster: each population is a Ray task; the driver alone writes the store.

``droplab sweep ... --executor ray [--address auto|HOST:PORT]`` (or
``run_sweep(..., executor="ray")``) trains the same populations as a local sweep, with the
same code, but as Ray tasks spread over a cluster, as many at a time as it has room for:

* **One population per task.** The engine plans the populations exactly as for a local
  sweep; each becomes one task that builds the population on a worker, resumes it from the
  checkpoint the driver sends, and trains it epoch by epoch.
* **Results stream back.** The task is a Ray streaming generator: after every epoch it yields
  that epoch's rows (and, every ``checkpoint_seconds``, the population's checkpoint), and the
  driver commits them to the study store in one transaction, as a local sweep does. Workers
  never touch the store, so it needs no shared file system: it lives on the driver's machine.
  A task runs at most a few epochs ahead of what the driver has recorded (Ray's generator
  backpressure), which bounds how many checkpoints wait in the object store.
* **Failures are retried from the last checkpoint.** When a task fails -- its worker process
  died, its node was lost, Ray killed it for memory, or it raised -- the driver reads the
  population's last checkpoint from the store and submits the population again, at most
  ``max_retries`` times (default 3). The epochs redone are bitwise equal to the ones already
  recorded and replace them (an epoch row is keyed by run and epoch), so every run ends with
  each of its epochs recorded once. After the last retry the population's unfinished runs are
  marked ``failed`` with the error, the other populations go on, and ``--resume`` trains the
  failed runs again. Errors in the sweep's configuration or data (``ConfigError``,
  ``DataError``) end the sweep with their message, as locally, without retries.
* **Sizing.** A task asks Ray for ``cpus_per_task`` CPUs, by default as many as this
  process's torch threads (``torch.get_num_threads()``, the threads a local sweep would use),
  capped at the largest node's CPU count, and trains with that many torch threads. On
  machines alike a population therefore computes with the same thread count as it would
  locally, and its numbers are bitwise equal to a local sweep's. A task asks for
  ``gpus_per_task`` GPUs: by default one when the cluster has GPUs and the training device
  is not ``"cpu"`` (the population then trains on that GPU), else none (then ``device =
  "auto"`` means the CPU, so that a task never uses a GPU Ray did not give it).
* **Data** is loaded once, on the driver, and put in Ray's object store once per dataset
  (and round, for an adaptive sampler);
  the workers need droplab (the same version as the driver: checked) and torch, nothing else.
  A build function of your own must be importable on the workers, or defined in your script
  (Ray then sends it by value).

If Ray is already initialized in this process (``ray.init(...)``), the sweep uses that
connection and ``address`` is ignored; otherwise it calls ``ray.init(address=address)``
(``"HOST:PORT"``: the head node, checked to answer first; ``"auto"``: ``RAY_ADDRESS`` or
the cluster last started with ``ray start`` on this machine; ``None``: the same, else a new
Ray on this machine) and stays connected for the rest of the process, as ``ray.init`` does.

Example::

    # on the head:   ray start --head --port 6379
    # on the others: ray start --address HEAD:6379
    droplab sweep sweep.toml --executor ray --address HEAD:6379 --store study.db

    from droplab.sweep import run_sweep
    from droplab.sweep.ray_executor import RayExecutor
    run_sweep(cfg, executor=RayExecutor(address="auto", gpus_per_task=0.5))
"""

from __future__ import annotations

import dataclasses
import queue
import threading
from collections.abc import Sequence
from typing import Any

import torch

from droplab.errors import ConfigError, DroplabError
from droplab.sweep.executors import Driver, Job

__all__ = ["RayExecutor", "MISSING_RAY"]

#: The one line a sweep ends with when Ray is not installed.
MISSING_RAY = "--executor ray needs Ray: pip install 'droplab[ray]'"

#: Events a task may run ahead of the driver (Ray streaming-generator backpressure).
_AHEAD = 2


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError(MISSING_RAY) from None
    return ray


class RayExecutor:
    """Train a sweep's populations as Ray tasks across a cluster (see the module docstring).

    Args:
        address: the cluster: ``"HOST:PORT"`` (its head node), ``"auto"`` (``RAY_ADDRESS``
            or the one started by ``ray start`` on this machine) or None (default: the same
            as ``"auto"``, else a new Ray on this machine). Ignored when Ray is already
            initialized here.
        cpus_per_task: CPUs a population's task asks for, and its torch threads. Default
            None: ``torch.get_num_threads()`` of this process, capped at the largest node's CPUs.
        gpus_per_task: GPUs a population's task asks for (fractions share a GPU). Default
            None: 1 when the cluster has GPUs and the training device is not ``"cpu"``, else 0.
        max_retries: times a failed population is resubmitted from its last checkpoint
            before its runs are marked failed. Default 3.
        runtime_env: Ray runtime environment for ``ray.init`` (e.g. ``{"py_modules": [...]}``
            so workers can import your build function's module). Default None.

    Raises:
        ConfigError: Ray is not installed (``pip install 'droplab[ray]'``), or an argument is out
            of range.

    Example::

        run_sweep(cfg, executor=RayExecutor(address="auto", max_retries=5))
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        cpus_per_task: int | None = None,
        gpus_per_task: float | None = None,
        max_retries: int = 3,
        runtime_env: dict[str, Any] | None = None,
    ) -> None:
        from droplab._checks import check_nonneg_float, check_nonneg_int, check_positive_int

        self._ray = _import_ray()
        if address is not None and (not isinstance(address, str) or not address.strip()):
            raise ConfigError(f"address must be 'auto' or HOST:PORT of a Ray cluster, got {address!r}")
        self.address = address
        self.cpus_per_task = None if cpus_per_task is None else check_positive_int("cpus_per_task", cpus_per_task)
        self.gpus_per_task = None if gpus_per_task is None else check_nonneg_float("gpus_per_task", gpus_per_task)
        self.max_retries = check_nonneg_int("max_retries", max_retries)
        self.runtime_env = runtime_env

    def __repr__(self) -> str:
        return (
            f"RayExecutor(address={self.address!r}, cpus_per_task={self.cpus_per_task}, "
            f"gpus_per_task={self.gpus_per_task}, max_retries={self.max_retries})"
        )

    # -- cluster ---------------------------------------------------------------------------------
    def _connect(self) -> None:
        ray = self._ray
        if not ray.is_initialized():
            if self.address is not None:
                _check_reachable(self.address)
            try:
                ray.init(address=self.address, runtime_env=self.runtime_env)
            except ConnectionError as exc:
                raise ConfigError(f"cannot reach the Ray cluster at {self.address!r}: {exc}") from None
        cpus, gpus = [], 0.0
        for node in ray.nodes():
            if node.get("Alive"):
                cpus.append(int(node["Resources"].get("CPU", 0)))
                gpus += float(node["Resources"].get("GPU", 0))
        self._max_cpus = max(max(cpus, default=1), 1)
        self._cluster_gpus = gpus

    def _size(self, job) -> tuple[int, float]:
        cpus = self.cpus_per_task if self.cpus_per_task is not None else torch.get_num_threads()
        cpus = max(1, min(cpus, self._max_cpus))
        gpus = self.gpus_per_task
        if gpus is None:
            gpus = 1.0 if self._cluster_gpus > 0 and job.part[0][0].train.device != "cpu" else 0.0
        return cpus, gpus

    # -- running ---------------------------------------------------------------------------------
    def run(self, jobs: Sequence[Job], driver: Driver) -> None:
        """Submit every job, record the events as they stream back, retry failed ones."""
        from droplab import __version__

        ray = self._ray
        self._connect()
        remote = ray.remote(_task)
        data: dict[str, Any] = {}
        active: dict[Any, Any] = {}

        def submit(job) -> None:
            work = driver.prepare(job)
            if work is None:
                return
            r0 = job.part[0][0]
            if r0.data_key not in data:
                data[r0.data_key] = ray.put(driver.splits(job))
            cpus, gpus = self._size(job)
            part = work.part
            if gpus == 0:  # never use a GPU Ray did not give the task
                part = [
                    (dataclasses.replace(r, train=r.train.replace(device="cpu")) if r.train.device == "auto" else r, s)
                    for r, s in part
                ]
            work = dataclasses.replace(work, plan=work.plan.without_data(), part=part)
            gen = remote.options(
                num_returns="streaming",
                num_cpus=cpus,
                num_gpus=gpus,
                max_retries=0,  # retried here, from the newest checkpoint, not from the first arguments
                name=f"droplab population {job.pkey}",
                _generator_backpressure_num_objects=_AHEAD,
            ).remote(work, data[r0.data_key], cpus, __version__)
            active[gen] = job

        for job in jobs:
            submit(job)
        try:
            while active:
                ready, _ = ray.wait(list(active), num_returns=1)
                gen = ready[0]
                job = active[gen]
                try:
                    event = ray.get(next(gen))
                except StopIteration:
                    del active[gen]
                    continue
                except ray.exceptions.RayError as exc:
                    del active[gen]
                    self._failed(job, exc, driver, submit)
                    continue
                driver.apply(job, event)
        finally:
            for gen in active:  # interrupted (Ctrl-C, an error): stop what still runs
                try:
                    ray.cancel(gen, force=True)
                except Exception:  # noqa: BLE001 - best effort while leaving
                    pass

    def _failed(self, job, exc: Exception, driver: Any, submit) -> None:
        ray = self._ray
        if isinstance(exc, ray.exceptions.TaskCancelledError):
            raise exc
        cause = exc.cause if isinstance(exc, ray.exceptions.RayTaskError) else None
        if isinstance(cause, (DroplabError, KeyboardInterrupt)):
            raise cause from None  # the sweep's own error: reported as a local sweep reports it
        why = _describe(cause if cause is not None else exc)
        job.failures += 1
        if job.failures <= self.max_retries:
            driver.note(
                f"population {job.pkey}: {why}; retrying from its last checkpoint "
                f"(retry {job.failures} of {self.max_retries})"
            )
            submit(job)
        else:
            driver.fail(job, f"{why} (gave up after {job.failures} attempts)")


def _check_reachable(address: str) -> None:
    """Fail fast on a HOST:PORT nobody listens on (Ray itself retries for minutes)."""
    import socket

    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as exc:
        raise ConfigError(
            f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}; "
            f"is `ray start --head --port {port}` running on {host}?"
        ) from None


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0].rstrip(".") if text else ""
    return f"{type(exc).__name__}: {first[:200]}" if first else type(exc).__name__


# --- on a worker ------------------------------------------------------------------------------------
_END = object()


class _Raised:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def _task(work, splits, threads: int, version: str):
    """One population on a worker: train it, yield its events as they happen.

    The training (the same :func:`~droplab.sweep.executors.train_job` as a local sweep) runs in a thread that hands its
    events over a small queue; this generator yields them to the driver.
    """
    import ray

    from droplab import __version__
    from droplab.sweep.executors import train_job, worker_info

    worker = {**worker_info(), "node": ray.get_runtime_context().get_node_id()}
    if __version__ != version:
        raise ConfigError(
            f"worker {worker['host']} has droplab {__version__}, the driver {version}; "
            f"install the same version on every node"
        )
    torch.set_num_threads(threads)
    events: queue.Queue = queue.Queue(maxsize=1)

    def train() -> None:
        try:
            torch.set_num_threads(threads)
            train_job(work, splits, events.put, worker)
        except BaseException as exc:  # noqa: BLE001 - handed to the task, which raises it
            events.put(_Raised(exc))
        else:
            events.put(_END)

    thread = threading.Thread(target=train, name=f"droplab-{work.pkey}", daemon=True)
    thread.start()
    while True:
        event = events.get()
        if event is _END:
            break
        if isinstance(event, _Raised):
            raise event.exc
        yield event
    thread.join()
