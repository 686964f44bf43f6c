"""Where populations train: the job protocol, :class:`LocalExecutor` and the Driver/Executor protocol.

The engine (the *driver*) decides **what** trains -- each population: its members, their
settings, the checkpoint to resume from -- and alone writes the study store. An *executor*
decides **where**: it takes the jobs of a round and, for each, asks ``driver.prepare(job)``
for the :class:`Work` of one attempt, trains it with :func:`train_job` (the same function
everywhere) and hands each event, in order, to ``driver.apply(job, event)`` in the driver's
process. :class:`LocalExecutor` trains in this process; :class:`droplab.sweep.ray_executor.RayExecutor`
trains as Ray tasks. Either way the numbers are the same.

Example::

    run_sweep(cfg, executor=LocalExecutor())   # what executor="local" does
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch

from droplab.sweep.plan import Resolved
from droplab.sweep.population import Member, Population, make_population
from droplab.sweep.selection import score_name

__all__ = [
    "EXECUTORS", "Job", "Work", "Driver", "Executor", "LocalExecutor", "train_job", "worker_info",
    "make_population_of", "state_blob",
]

#: Where populations train: in this process, or as tasks on a Ray cluster.
EXECUTORS = ("local", "ray")
_STATUS = {"early_stopping": "early_stopped"}

@dataclasses.dataclass
class Job:
    """One population of a round, as the driver tracks it across attempts."""

    pkey: str
    label: str
    part: list[tuple[Resolved, int]]
    run_ids: list[int | None] = dataclasses.field(init=False)
    shown: list[int] = dataclasses.field(init=False)  # epochs on the progress bar, per member
    failures: int = dataclasses.field(default=0, init=False)  # failed attempts (remote executors)

    def __post_init__(self) -> None:
        self.run_ids = [None] * len(self.part)
        self.shown = [0] * len(self.part)

    @property
    def epochs(self) -> int:
        return self.part[0][0].train.epochs


@dataclasses.dataclass
class Work:
    """What one attempt at a job needs, wherever it runs: picklable, no store, no data.

    ``checkpoint`` is the population's last checkpoint and ``run_checkpoints`` those of runs
    trained one by one (member index -> (epoch, blob)); ``recorded`` are members already
    finished. The driver reads them from the store before every attempt.
    """

    pkey: str
    plan: Any
    part: list[tuple[Resolved, int]]
    checkpoint: tuple[int, bytes] | None
    run_checkpoints: dict[int, tuple[int, bytes]]
    recorded: frozenset[int]
    checkpoint_seconds: float


def _members(part) -> list[Member]:
    return [Member(r.key, r.params, s, r.train, r.rates, schedules=r.schedules) for r, s in part]


def make_population_of(plan, part, splits) -> tuple[Population | None, str]:
    """The population of ``part``, or None and the reason it must train one run at a time."""
    r0 = part[0][0]
    if not plan.population:
        return None, "population training is off (population=False)"
    members = _members(part)
    folds = getattr(plan, "folds", None)
    if folds is not None:  # every (run, fold) a member: droplab.sweep.folds
        from droplab.sweep.folds import FoldPopulation
        from droplab.sweep.population import Unstackable

        try:
            pop = FoldPopulation(lambda fold_members: plan.make_net(r0, fold_members, splits), members, splits,
                                 folds, seed=getattr(plan, "fold_seed", 0), device=r0.train.resolve_device())
        except Unstackable as exc:
            from droplab.errors import ConfigError

            raise ConfigError(f"folds={folds} trains the folds as one population, which this model cannot be: "
                              f"{exc}") from None
        pop.extra_metrics = tuple(getattr(plan, "extra_metrics", ()))
        return pop, ""
    data = (splits.x_train, splits.y_train, splits.x_val, splits.y_val)
    pop, why = make_population(
        lambda: plan.make_net(r0, members, splits), members, data, splits.task,
        device=r0.train.resolve_device(),
    )
    if pop is not None:
        pop.extra_metrics = tuple(getattr(plan, "extra_metrics", ()))
    return pop, why


def worker_info() -> dict[str, Any]:
    """This process's ``host`` and ``pid`` (shown with each epoch a worker trained)."""
    import socket

    return {"host": socket.gethostname(), "pid": os.getpid()}


def train_job(
    work: Work, splits, emit: Callable[[dict[str, Any]], None], worker: dict[str, Any] | None = None
) -> Population | None:
    """Train one job and report every step to ``emit``; the same code for every executor.

    Events (dicts, by ``"kind"``), in order: ``note`` (the population trains one run at a
    time, and why); per run trained alone ``recorded`` (already finished) or ``start``; then
    ``start`` (``members``, the ``epoch`` the checkpoint resumed at); per epoch ``epoch``
    (``rows``: member index -> history row; ``checkpoint``: bytes or None; ``single``;
    ``worker``); ``weights`` (final weights of a run trained alone); ``finish`` (``items``:
    ``(member, status, result, cost)``). The driver turns them into store transactions.

    Returns the finished population (its state is the final checkpoint's), or None when the
    runs trained one by one.
    """
    worker = worker_info() if worker is None else worker
    part = work.part
    pop, why = make_population_of(work.plan, part, splits)
    if pop is None:
        emit({"kind": "note", "text": (
            f"{len({r.key for r, _ in part})} configuration(s) of population {work.pkey} train one by one "
            f"with the Trainer: {why}"
        )})
        for i, (r, s) in enumerate(part):
            if i in work.recorded:
                emit({"kind": "recorded", "member": i})
            else:
                _train_single(work, i, splits, emit, worker)
        return None
    if work.checkpoint is not None:
        pop.load_bytes(work.checkpoint[1])
    emit({"kind": "start", "members": list(range(len(part))), "epoch": pop.epoch})
    last_ck = time.perf_counter()
    while not pop.done:
        rows = pop.run_epoch()
        blob = None
        if pop.done or time.perf_counter() - last_ck >= work.checkpoint_seconds:
            blob = pop.to_bytes()
            last_ck = time.perf_counter()
        emit({"kind": "epoch", "epoch": pop.epoch, "rows": rows, "checkpoint": blob, "single": False, "worker": worker})
    items = [(i, pop.status[i], pop.result(i), pop.cost(i)) for i in range(len(part))]
    emit({"kind": "finish", "items": items, "single": False, "weights": pop.final_bytes()})
    return pop


def _train_single(work: Work, i: int, splits, emit, worker: dict[str, Any]) -> None:
    """Member ``i`` of ``work`` trained alone by the :class:`~droplab.train.Trainer`."""
    from droplab.train import Callback, Trainer

    r, seed = work.part[i]
    ck = work.run_checkpoints.get(i)
    emit({"kind": "start", "members": [i], "epoch": 0 if ck is None else ck[0]})
    member = Member(r.key, r.params, seed, r.train, r.rates, schedules=r.schedules)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = work.plan.builder(r, splits)(member)
    cfg = r.train.replace(seed=seed, checkpoint_dir=None)
    every = work.checkpoint_seconds
    extra = tuple(getattr(work.plan, "extra_metrics", ()))

    class _Emit(Callback):
        def __init__(self) -> None:
            self.last = time.perf_counter()

        def on_epoch_end(self, trainer, *, epoch, logs, **kwargs):
            if extra and "val_loss" in logs:
                logs.update(_extra_val_metrics(trainer.model, splits, extra))
            blob = None
            if epoch >= cfg.epochs or trainer.should_stop or time.perf_counter() - self.last >= every:
                blob = _trainer_blob(trainer)
                self.last = time.perf_counter()
            emit({"kind": "epoch", "epoch": epoch, "rows": {i: logs}, "checkpoint": blob, "single": True,
                  "worker": worker})

    trainer = Trainer(model, cfg, [_Emit()])
    with tempfile.TemporaryDirectory(prefix="droplab-run-") as tmp:
        resume = None
        if ck is not None:
            resume = os.path.join(tmp, "resume.pt")
            with open(resume, "wb") as fh:
                fh.write(ck[1])
        result = trainer.fit(
            (splits.x_train, splits.y_train), val=(splits.x_val, splits.y_val), task=splits.task, resume=resume
        )
    if result.stop_reason == "interrupted":
        raise KeyboardInterrupt
    status = _STATUS.get(result.stop_reason, result.stop_reason)
    metric = score_name(splits.task)
    res = {
        "best_epoch": result.best_epoch,
        "weights_epoch": result.best_epoch if result.restored else result.epochs_run,
        "epochs_run": result.epochs_run,
        "stop_reason": status,
        "restored": result.restored,
    }
    for split in ("train", "val"):
        values = getattr(result, split) or {}
        prefix = "train_eval" if split == "train" else "val"
        for k in ("loss", metric):
            if k in values:
                res[f"{prefix}_{k}"] = values[k]
    if extra and "val_loss" in res:
        res.update(_extra_val_metrics(model, splits, extra))  # of the weights the run ends with
    cost = {
        "seconds": sum(row["seconds"] for row in result.history),
        "peak_mem_mb": max((row.get("peak_mem_mb", 0.0) for row in result.history), default=0.0),
        "population_size": 1,
        "population_seconds": result.seconds,
    }
    emit({"kind": "weights", "member": i, "epoch": result.epochs_run, "blob": state_blob(model.state_dict())})
    emit({"kind": "finish", "items": [(i, status, res, cost)], "single": True})


class Driver(Protocol):
    """What an executor may call on the driver (:class:`droplab.sweep.engine` implements it).

    ``prepare(job)`` reads the store and returns the :class:`Work` of one attempt (None when
    every run of the job is recorded); ``apply(job, event)`` records one event of
    :func:`train_job`; ``fail(job, message)`` marks the job's unfinished runs failed;
    ``note(text)`` reports how the sweep runs; ``splits(job)`` is the data the job trains on;
    ``keep_final(pkey, pop)`` hands over a population finished in the driver's process (for
    the test split; None releases it).
    """

    def prepare(self, job: Job) -> Work | None: ...

    def apply(self, job: Job, event: dict[str, Any]) -> None: ...

    def fail(self, job: Job, message: str) -> None: ...

    def note(self, text: str) -> None: ...

    def splits(self, job: Job) -> Any: ...

    def keep_final(self, pkey: str, pop: Population | None) -> None: ...


class Executor(Protocol):
    """Trains the jobs of a round: ``run(jobs, driver)`` (see :class:`Driver`)."""

    name: str

    def run(self, jobs: Sequence[Job], driver: Driver) -> None: ...


class LocalExecutor:
    """Train the populations one after another in this process (the default executor).

    An executor decides *where* populations train; the engine decides *what* (the
    populations, their members and settings) and alone writes the study store. An executor
    is any object with ``run(jobs, driver)``: for each job, ``driver.prepare(job)`` gives the
    work of one attempt (None when all its runs are recorded), which :func:`train_job` trains
    where the executor likes, handing each event, in order, to ``driver.apply(job, event)``
    in the driver's process. See :class:`droplab.sweep.ray_executor.RayExecutor` for one that
    trains on a Ray cluster.

    Example::

        run_sweep(cfg, executor=LocalExecutor())   # what executor="local" does
    """

    name = "local"

    def run(self, jobs: Sequence[Job], driver: Driver) -> None:
        """Train ``jobs`` in order, in this process."""
        for job in jobs:
            driver.keep_final(job.pkey, None)  # free the last population before the next trains
            work = driver.prepare(job)
            if work is not None:
                pop = train_job(work, driver.splits(job), lambda event, job=job: driver.apply(job, event))
                if pop is not None:
                    driver.keep_final(job.pkey, pop)


def state_blob(state: dict[str, torch.Tensor]) -> bytes:
    """A state dict as bytes (``torch.save`` of CPU copies): final weights in the store."""
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in state.items()}, buf)
    return buf.getvalue()


def _extra_val_metrics(model: torch.nn.Module, splits, names: Sequence[str]) -> dict[str, float]:
    """``val_<name>`` of :mod:`droplab.train.metrics` for a model trained alone (eval mode; NaN
    where undefined, e.g. the AUROC of a one-class validation split), as a population computes them."""
    from droplab.errors import DataError
    from droplab.train import metrics

    was = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        with torch.no_grad():
            out = torch.cat([model(xb.to(device)).cpu() for xb in splits.x_val.split(1024)])
    finally:
        model.train(was)
    y = splits.y_val if splits.task == "classification" else splits.y_val.float().reshape(len(splits.y_val), -1)
    res = {}
    for name in names:
        try:
            res[f"val_{name}"] = getattr(metrics, name)(out[:, : y.shape[1]] if name == "mae" else out, y)
        except DataError:
            res[f"val_{name}"] = math.nan
    return res


def _trainer_blob(trainer) -> bytes:
    with tempfile.TemporaryDirectory(prefix="droplab-ck-") as tmp:
        path = os.path.join(tmp, "ck.pt")
        trainer.save_checkpoint(path)
        with open(path, "rb") as fh:
            return fh.read()

