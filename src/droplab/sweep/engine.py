"""The sweep engine: :func:`run_sweep` -- configurations x seeds, trained as populations, stored, resumable.

:func:`run_sweep` validates every configuration before training anything (each distinct
architecture is built and run forward on two examples), groups the runs into populations
(:mod:`droplab.sweep.plan`), hands them to an executor (:mod:`droplab.sweep.executors`),
commits every epoch to the study store (this module alone writes it), and summarizes: means
and intervals over seeds, paired differences against the no-dropout baseline, the best and
one-standard-error choices (:mod:`droplab.sweep.selection`), test metrics of the selected
configurations only. Rerunning with the same store resumes. How a sweep flows through these
files, and why (checkpoint cadence, compaction, executors): ``docs/architecture.md``, "The
sweep wing".
"""

from __future__ import annotations

import io
import math
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from droplab.errors import ConfigError, DataError, StoreError
from droplab.stats import compare, mean_ci, rule_text
from droplab.sweep import selection
from droplab.sweep.executors import EXECUTORS, Job, LocalExecutor, Work, make_population_of
from droplab.sweep.plan import (
    MEMBER_FIELDS,
    Resolved,
    group_hash,
    make_plan,
    seed_list,
    to_json,
)
from droplab.sweep.population import Member, Population
from droplab.sweep.progress import Progress
from droplab.sweep.result import SweepResult, small_validation, summarize
from droplab.sweep.space import GridSpace, OptunaSpace, SearchSpace, config_key
from droplab.sweep.store import FINAL_STATUSES, Store
from droplab.train.config import TrainConfig

__all__ = ["run_sweep", "SweepResult", "MEMBER_FIELDS", "EXECUTORS", "LocalExecutor"]

#: Seeds per racing round with ``seeds="auto"`` (the first round included).
_RACE_STEP = 5
#: Statuses of runs a resume reads back instead of training; "failed" runs are trained again.
_RECORDED = tuple(s for s in FINAL_STATUSES if s != "failed")


def _estimate_mb(net_kind: str, r: Resolved, splits, k: int) -> float:
    """Rough memory of a population of k members (params, grads, optimizer, best copy, activations)."""
    cfg = r.train
    if net_kind == "mlp":
        widths = [math.prod(splits.input_shape), *r.spec.hidden, splits.n_outputs]
        n_params = sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))
        act = cfg.batch_size * sum(widths) * 3 + cfg.eval_batch_size * max(widths) * 2
    else:
        n_params = 0
        act = cfg.batch_size * math.prod(splits.input_shape) * 64  # unknown model: a generous guess
    per_member = (n_params * 6 + act) * 4
    return k * per_member / 2**20


def _rows_for_store(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v) for k, v in row.items() if k != "epoch"}


def _make_executor(executor: Any, address: str | None) -> Any:
    """``"local"``, ``"ray"`` or an executor object -> an executor object."""
    if executor is None or executor == "local":
        if address is not None:
            raise ConfigError(
                f"address applies to executor 'ray' (a Ray cluster), got address {address!r} with executor 'local'"
            )
        return LocalExecutor()
    if executor == "ray":
        from droplab.sweep.ray_executor import RayExecutor

        return RayExecutor(address=address)
    if isinstance(executor, str):
        from droplab._checks import check_choice

        check_choice("executor", executor, EXECUTORS)
    if not callable(getattr(executor, "run", None)):
        raise ConfigError(f"executor must be 'local', 'ray' or an object with run(jobs, driver), got {executor!r}")
    if address is not None:
        raise ConfigError("address applies to executor 'ray'; give an executor object its own address")
    return executor


def run_sweep(
    build: Any = None,
    data: Any = None,
    space: SearchSpace | Mapping[str, Any] | None = None,
    *,
    seeds: int | Sequence[int] = 3,
    train: TrainConfig | None = None,
    store: str | os.PathLike[str] | None = None,
    metric: str | None = None,
    name: str = "sweep",
    models: Mapping[str, Any] | None = None,
    memory_mb: float | None = None,
    population: bool = True,
    checkpoint_seconds: float = 10.0,
    confidence: float = 0.95,
    progress: bool = True,
    console: Any = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    executor: Any = None,
    address: str | None = None,
    stat: str | None = None,
    max_seeds: int = 20,
    regularization: Sequence[str] | None = None,
    task: str | None = None,
    target: str | None = None,
    val_fraction: float = 0.2,
    data_seed: int = 0,
    convert: bool = True,
    folds: int | None = None,
) -> SweepResult:
    """Train every configuration of ``space`` with every seed; store, select, summarize.

    Three ways to say what to train:

    * ``run_sweep(SweepConfig)`` -- a whole sweep from TOML/flags (what ``droplab sweep``
      does); the other arguments but ``progress``, ``console`` and ``on_epoch`` come from it.
    * ``run_sweep(ModelSpec, data={"name": "mnist1d"}, space=...)`` -- droplab's models;
      axes ``dropout.<place>``, ``dropout.<place>.layer``, ``dropout``, ``model`` (a name in
      ``models``), ``model.<field>``, ``train.<field>``, ``data.<option>``.
    * ``run_sweep(build_fn, data=(x_train, y_train, x_val, y_val[, x_test, y_test]), space=...)``
      -- your own model: ``build_fn(configuration) -> nn.Module`` (droplab or torch layers),
      called inside ``torch.random.fork_rng`` with ``torch.manual_seed(seed)`` so that the
      initialization is reproducible and runs with equal seeds start equal. Axes named
      ``train.<field>`` set the training configuration; every other axis is passed to
      ``build_fn``. ``data`` may also be a :class:`droplab.data.Splits`, or anything
      :func:`droplab.data.as_splits` reads: a numpy or tensor pair ``(x, y)``, a pandas
      DataFrame with ``target=``, a ``Dataset``, a ``DataLoader`` or a function returning
      batches (the validation split: ``val_fraction`` of it, drawn with ``data_seed``).
      The engine calls :func:`droplab.nn.convert` on each model (``convert=True``): torch's
      ``nn.Dropout`` family becomes droplab's equivalent layers (same distribution), whose
      rates are per-member data, so configurations that differ only in those rates train as
      ONE population (grouped by the built model's structure, not by the parameters).

    Args:
        build: a :class:`~droplab.sweep.config.SweepConfig`, a ``ModelSpec`` or a callable.
        data: see above; for a ``ModelSpec`` a dict of :func:`droplab.data.load_dataset`
            arguments (``name`` plus options) or a ``Splits``.
        space: a :class:`~droplab.sweep.space.SearchSpace` or a dict of axes (a grid).
        seeds: number of seeds (``0..n-1``), the seeds themselves, or ``"auto"``: racing
            (Maron & Moore 1994; Birattari et al., F-race, GECCO 2002). Every configuration
            starts with 5 seeds; after each round the configurations decided worse than the
            best (:func:`droplab.stats.compare`, Holm within the round, the level split
            Bonferroni-wise over the planned rounds) stop, and the others -- plus the
            no-dropout baseline while the best's comparison with it is open -- get 5 more,
            up to ``max_seeds``. Default 3.
        train: base :class:`TrainConfig` (its ``seed`` is ignored). Default ``TrainConfig()``.
        store: path of the SQLite study store; ``None`` uses a temporary file removed at the
            end. Rerunning with the same store resumes.
        metric: selection metric: ``val_acc`` (default for classification), ``val_loss``
            (default for regression) or ``val_rmse``.
        name: study name. Default ``"sweep"``.
        models: name -> ``ModelSpec`` for a ``model`` axis (architectures as an axis).
        memory_mb: memory budget of one population in MB; larger ones are split. Default
            ``None``: 2048.
        population: train populations vectorized (default True); ``False`` trains one run at
            a time with the Trainer.
        checkpoint_seconds: minimum seconds between population checkpoints (>= 0; 0 = every
            epoch). Default 10.
        confidence: level of the intervals. Default 0.95.
        progress: show a rich progress bar (on stderr). Default True.
        console: a ``rich.console.Console`` for the progress bar and notes.
        on_epoch: called after every committed population epoch with
            ``{"population", "epoch", "members", "rows", "worker"}`` (``worker``: the
            ``host`` and ``pid`` that trained it, and on Ray its ``node``), e.g. to stop or
            inspect a sweep.
        executor: where populations train: ``"local"`` (default: one after another in this
            process), ``"ray"`` (as tasks on a Ray cluster, see
            :class:`~droplab.sweep.ray_executor.RayExecutor`) or an executor object. Not part
            of the study: a sweep may be resumed with another executor. Default ``None``:
            the ``SweepConfig``'s, else ``"local"``.
        address: the Ray cluster for ``executor="ray"``: ``"auto"`` or ``"HOST:PORT"``.
            Default ``None``: the ``SweepConfig``'s, else ``RAY_ADDRESS``, a cluster started
            on this machine, or a new Ray here.
        stat: the decision rule of the summary: ``"t"`` or ``"bootstrap"``
            (:func:`droplab.stats.compare`); stored with the study. Default ``None``: the
            ``SweepConfig``'s, else bootstrap from 5 seeds on, t below.
        max_seeds: the most seeds a configuration gets with ``seeds="auto"``. Default 20.
        regularization: the axes that are regularization, by name (``["p"]``): their value 0
            is the no-regularization baseline of the paired differences and the report, and
            the one-SE rule may trade them. Axes named ``*dropout*``, ``train.weight_decay``
            / ``l1`` / ``l2`` / ``max_norm`` always are, and so is any numeric axis of a build
            function found to set a droplab dropout rate. Default none more.
        task: ``"classification"``, ``"binary"`` (one logit, BCE with logits) or
            ``"regression"`` for your own data; default inferred (a printed note says why).
        target: the target column of a DataFrame ``data``.
        val_fraction: the validation fraction drawn from data given without one (a pair, a
            DataFrame, a Dataset, a DataLoader). Default 0.2.
        data_seed: the seed of that validation draw. Default 0.
        convert: convert torch's dropout layers of a build function's model to droplab's
            (:func:`droplab.nn.convert`). Default True.
        folds: k-fold cross-validation for small tables (:mod:`droplab.sweep.folds`): the
            training and validation splits are pooled and cut into ``k`` folds (stratified,
            drawn with ``data_seed``); each (configuration, seed, fold) is a member of one
            population, and each run's metrics are the mean over its folds (selection: the
            mean over folds, then over seeds). Default None (the validation split).

    Returns:
        A :class:`SweepResult`.

    Example::

        def build(cfg):
            return nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Dropout(cfg["p"]), nn.Linear(64, 3))
        result = run_sweep(build, data=(x, y, xv, yv), space={"p": [0.0, 0.3]}, seeds=3,
                           train=TrainConfig(epochs=5))
        result.best, result.row(result.best)["mean"]
    """
    from droplab.sweep.config import SweepConfig

    if isinstance(build, SweepConfig):
        cfg = build
        if executor is None:
            executor, address = cfg.executor, cfg.address if address is None else address
        plan = cfg.plan()
        _set_folds(plan, cfg.folds, cfg.data.seed if cfg.data.seed is not None else 0)
        return _Engine(
            plan=plan,
            space=cfg.make_space(),
            seeds=cfg.seed_list(),
            store=cfg.store,
            metric=cfg.metric,
            name=cfg.name,
            memory_mb=cfg.memory_mb,
            checkpoint_seconds=cfg.checkpoint_seconds,
            confidence=confidence,
            spec=cfg.to_dict(),
            progress=progress,
            console=console,
            on_epoch=on_epoch,
            executor=_make_executor(executor, address),
            stat=cfg.stat if stat is None else stat,
            race=cfg.max_seeds if cfg.seeds == "auto" else None,
        ).run()
    train = TrainConfig() if train is None else train
    if not isinstance(train, TrainConfig):
        raise ConfigError(f"train must be a TrainConfig, got {type(train).__name__}")
    if space is None:
        space = {}
    if not isinstance(space, SearchSpace):
        space = GridSpace(space)
    data_options = {}
    if task is not None or target is not None or val_fraction != 0.2 or data_seed != 0:
        data_options = {"task": task, "target": target, "val_fraction": val_fraction, "data_seed": data_seed}
    plan = make_plan(build, data, train, models=models, population=population,
                     regularization=() if regularization is None else regularization, convert=convert,
                     data_options=data_options)
    _set_folds(plan, folds, data_seed)
    race = None
    if isinstance(seeds, str) and seeds == "auto":
        from droplab._checks import check_positive_int

        race = check_positive_int("max_seeds", max_seeds)
        if isinstance(space, OptunaSpace):
            raise ConfigError("seeds='auto' races the configurations of a grid or random space; "
                              "TPE already chooses what to train next")
        seeds = max_seeds
    seed_values = seed_list(seeds)
    spec = {"plan": plan.describe(), "space": space.spec(), "seeds": seed_values, "metric": metric,
            "population": population}
    if folds is not None:
        spec["folds"] = folds
    if stat is not None:
        spec["stat"] = stat
    if race is not None:
        spec["seeds"], spec["max_seeds"] = "auto", race
    runner = _make_executor(executor, address)
    return _Engine(
        plan=plan,
        space=space,
        seeds=seed_values,
        store=store,
        metric=metric,
        name=name,
        memory_mb=memory_mb,
        checkpoint_seconds=checkpoint_seconds,
        confidence=confidence,
        spec=spec,
        progress=progress,
        console=console,
        on_epoch=on_epoch,
        executor=runner,
        stat=stat,
        race=race,
    ).run()


def _set_folds(plan: Any, folds: Any, seed: int) -> None:
    """k-fold cross-validation on the plan (``make_population_of`` reads it), checked."""
    from droplab.sweep.folds import check_folds

    plan.folds = check_folds(folds)
    plan.fold_seed = seed
    if plan.folds is not None and not plan.population:
        raise ConfigError("folds trains the folds as members of one population; it needs population=True")


class _Engine:
    """The driver of one sweep: plans the populations, writes the store, summarizes.

    It is the :class:`~droplab.sweep.executors.Driver` an executor talks to (``prepare``,
    ``apply``, ``fail``, ``note``, ``splits``, ``keep_final``).
    """

    def __init__(self, *, plan, space, seeds, store, metric, name, memory_mb, checkpoint_seconds,
                 confidence, spec, progress, console, on_epoch, executor, stat=None, race=None):
        self.plan = plan
        self.race = race  # max seeds of a racing sweep (seeds="auto"), else None
        self.racing: dict[str, dict[str, Any]] = {}
        if stat is not None:
            from droplab._checks import check_choice
            from droplab.stats import STATS

            check_choice("stat", stat, STATS)
        self.stat = stat
        self.executor = executor
        self.space = space
        self.seeds = seeds
        self.store_path = store
        self.metric = metric
        self.name = name
        if memory_mb is not None and (
            isinstance(memory_mb, bool) or not isinstance(memory_mb, (int, float)) or memory_mb <= 0
        ):
            raise ConfigError(f"memory_mb must be a number > 0, got {memory_mb!r}")
        self.memory_mb = 2048.0 if memory_mb is None else float(memory_mb)
        if isinstance(checkpoint_seconds, bool) or not isinstance(checkpoint_seconds, (int, float)) or checkpoint_seconds < 0:
            raise ConfigError(f"checkpoint_seconds must be a number >= 0, got {checkpoint_seconds!r}")
        self.checkpoint_seconds = float(checkpoint_seconds)
        self.confidence = confidence
        self.spec = spec
        self.on_epoch = on_epoch
        if console is None and progress:
            from rich.console import Console

            console = Console(stderr=True)
        self.console = console
        self.progress_enabled = bool(progress)
        self.notes: list[str] = []
        self.resolved: dict[str, Resolved] = {}
        self.config_ids: dict[str, int] = {}
        self.pop_keys: dict[tuple[str, int], str] = {}  # (config key, seed) -> population key
        self._finals: dict[str, Population | None] = {}  # one finished population, for the test split
        self._stored_test: dict[str, dict[str, Any]] = {}  # test metrics of a summary already stored
        self.parts: dict[str, list[tuple[Resolved, int]]] = {}  # population key -> members
        self._plans: dict[str, Resolved] = {}  # config key -> its resolved plan (resolved once)

    def resolve(self, params: Mapping[str, Any]) -> Resolved:
        """The plan of one configuration; each configuration is resolved once (validation and
        registration share it)."""
        key = config_key(params)
        if key not in self._plans:
            self._plans[key] = self.plan.resolve(params)
        return self._plans[key]

    # -- validation ------------------------------------------------------------------------------
    def validate(self) -> None:
        if isinstance(self.space, OptunaSpace):
            self.space.check_available()
        for name in self.space.axes:
            self.plan.check_axis(name)
        points = self.space.validation_points()
        seen_arch: set[str] = set()
        task = None
        for params in points:
            r = self.resolve(params)
            splits = self.plan.data(r)
            task = splits.task
            if getattr(self.plan, "folds", None) is not None:
                from droplab.sweep.folds import check_folds

                check_folds(self.plan.folds, len(splits.x_train) + len(splits.x_val))
            arch = to_json(r.group)
            if arch in seen_arch:
                continue
            seen_arch.add(arch)
            self._check_model(r, splits)
        self.task = task or "classification"
        if self.metric is None:
            self.metric = selection.default_metric(self.task)
        self.maximize = selection.check_metric(self.metric, self.task)
        extra = self.metric.rsplit("_", 1)[-1]
        self.plan.extra_metrics = (extra,) if extra in selection.EXTRA_METRICS else ()
        if isinstance(self.space, OptunaSpace):
            self.space.maximize = self.maximize

    def _check_model(self, r: Resolved, splits) -> None:
        member = Member(r.key, r.params, self.seeds[0], r.train, r.rates, schedules=r.schedules)
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                model = self.plan.builder(r, splits)(member)
                model.eval()
                with torch.no_grad():
                    out = model(splits.x_train[:2])
        except (ConfigError, DataError):
            raise
        except Exception as exc:  # the user's model failing on their data is a config problem
            raise ConfigError(f"configuration {r.key!r}: building or running the model failed: {exc}") from None
        if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[1] != splits.n_outputs:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ConfigError(
                f"configuration {r.key!r}: the model must return (N, {splits.n_outputs}) outputs, got {shape}"
            )

    # -- main ----------------------------------------------------------------------------------
    def run(self) -> SweepResult:
        if self.store_path is not None:
            from droplab._checks import check_writable_file

            check_writable_file("study", self.store_path)
        self.validate()
        tmp = None
        path = self.store_path
        if path is None:
            tmp = tempfile.TemporaryDirectory(prefix="droplab-sweep-")
            path = os.path.join(tmp.name, "study.db")
        try:
            with Store.open(path) as store, Progress(self.progress_enabled, self.console) as prog:
                self.store = store
                self.progress = prog
                spec = dict(self.spec)
                spec["metric"] = self.metric
                store.init_study(self.name, spec)
                round_no = 0
                if self.race is not None:
                    self._race()
                while self.race is None:
                    configs = self.space.ask()
                    if not configs:
                        break
                    self._run_round(round_no, configs)
                    if self.space.adaptive:
                        for params in configs:
                            values = self._values(config_key(params))
                            est = mean_ci(list(values.values()), self.confidence)
                            self.space.tell(params, est.mean)
                    round_no += 1
                self._stored_test = (store.summary() or {}).get("test") or {}
                step_cost = self._step_costs()
                result = self._summarize(str(path))
                result.step_cost = step_cost
                result.racing = self.racing
                store.set_summary(result.to_dict())
                if tmp is None and store.is_complete():
                    # Every result and the test metrics are committed: the weights kept for the
                    # test split are needed no more (a resume of a complete study reads the
                    # summary). Dropping them shrinks a study from tens of MB to what it records.
                    try:
                        store.drop_checkpoints()
                    except StoreError as exc:  # the results are committed: only the space is lost
                        self.note(f"the study file could not be compacted: {exc}")
                return result
        finally:
            if tmp is not None:
                tmp.cleanup()

    def _register(self, configs: list[dict[str, Any]]) -> list[Resolved]:
        out = []
        for params in configs:
            r = self.resolve(params)
            self.resolved[r.key] = r
            self.config_ids[r.key] = self.store.add_configuration(r.key, r.params, group_hash(r.group))
            out.append(r)
        return out

    def _race(self) -> None:
        """``seeds="auto"``: seeds in rounds, only where the decision is still open (see run_sweep)."""
        configs = self.space.ask()
        while more := self.space.ask():
            configs += more
        keys = [self.resolve(p).key for p in configs]
        by_key = dict(zip(keys, configs))
        targets = list(range(min(_RACE_STEP, self.race), self.race, _RACE_STEP)) + [self.race]
        confidence = 1.0 - (1.0 - self.confidence) / len(targets)  # Bonferroni over the planned looks
        n = {k: 0 for k in keys}
        open_keys = list(keys)
        why: dict[str, str] = {}
        stop = f"max_seeds ({self.race}) reached with the decision still open"
        for k, target in enumerate(targets):
            seeds_for = {key: list(range(n[key], target)) for key in open_keys}
            self._run_round(k, [by_key[key] for key in open_keys], seeds_for)
            for key in open_keys:
                n[key] = target
            if k == len(targets) - 1:
                break
            open_keys, decided = self._still_open(keys, n, confidence, why)
            if not open_keys:
                stop = decided
                break
        for key in keys:
            why.setdefault(key, f"raced to the end ({n[key]} seeds): {stop}")
        self.racing = {key: {"seeds": n[key], "why": why[key]} for key in keys}
        self.note(f"seeds=auto ({self.race} at most, rounds of {_RACE_STEP}): {stop}; "
                  + ", ".join(f"{key}: {n[key]}" for key in keys)
                  + f" seeds, {sum(n.values())} runs (fixed {self.race} seeds: {self.race * len(keys)})")

    def _still_open(self, keys: list[str], n: dict[str, int], confidence: float,
                    why: dict[str, str]) -> tuple[list[str], str]:
        """The configurations that get more seeds: not decided worse than the best, plus the
        baseline and the best while their comparison is open. Records why the others stopped;
        with none open, also says what was decided."""
        values = {k: {s: v for s, v in self._values(k).items() if s < n[k]} for k in keys}
        means = {k: mean_ci(list(v.values())) for k, v in values.items()}
        best = selection.best(means, maximize=self.maximize)
        if best is None:
            return [], "no configuration has a finite metric"
        out = {best}
        against_best = compare(values, best, maximize=self.maximize, stat=self.stat, confidence=confidence)
        for k, c in against_best.items():
            if c.worse:
                why.setdefault(k, f"stopped at {n[k]} seeds: decided worse than {best} "
                                  f"(p = {c.p_holm:.2g} after Holm, level {1 - confidence:.3g} per round)")
            else:
                out.add(k)
        r = self.resolved[best]
        bkey = self._baseline_key(r)
        if bkey in values and bkey != best:
            c = compare({bkey: values[bkey], best: values[best]}, bkey, maximize=self.maximize, stat=self.stat,
                        confidence=confidence)[best]
            decided = f"{best} is the best, decided {'better' if c.better else 'worse'} than {bkey}"
            if not c.decided:
                out |= {bkey}
        else:
            decided = f"{best} is the best"
        if out == {best}:
            return [], decided + ", every other configuration decided worse"
        return [k for k in keys if k in out], ""

    def _run_round(self, round_no: int, configs: list[dict[str, Any]],
                   seeds_for: Mapping[str, list[int]] | None = None) -> None:
        resolved = self._register(configs)
        groups: dict[str, list[Resolved]] = {}
        for r in resolved:
            groups.setdefault(to_json(r.group), []).append(r)
        plan = []
        for gkey, rs in groups.items():
            # Members with equal per-member hyper-parameters next to each other: one optimizer each.
            rs = sorted(rs, key=lambda r: tuple(_sortable(getattr(r.train, f)) for f in MEMBER_FIELDS))
            members = [(r, s) for r in rs for s in (self.seeds if seeds_for is None else seeds_for[r.key])]
            splits = self.plan.data(rs[0])
            per = _estimate_mb(rs[0].net, rs[0], splits, 1)
            chunk = max(1, int(self.memory_mb // max(per, 1e-9)))
            for c in range(0, len(members), chunk):
                part = members[c : c + chunk]
                pkey = f"r{round_no}/{group_hash(rs[0].group)}/{c // chunk}"
                for r, s in part:
                    self.pop_keys[(r.key, s)] = pkey
                self.parts[pkey] = part
                plan.append((pkey, part))
        self.progress.plan(sum(len(p) for _, p in plan) * max(r.train.epochs for r in resolved))
        label = f"round {round_no + 1} " if self.space.adaptive or seeds_for is not None else ""
        jobs = [
            Job(pkey, f"{label}population {i + 1}/{len(plan)} ({len(part)} runs)", part)
            for i, (pkey, part) in enumerate(plan)
        ]
        self.executor.run(jobs, self)

    def _run_states(self, part) -> list[dict | None]:
        return [self.store.run_state(self.config_ids[r.key], s) for r, s in part]

    # -- what executors call (on the driver, the only process that writes the store) ------------
    def splits(self, job: Job):
        """The data the job's population trains on."""
        return self.plan.data(job.part[0][0])

    def prepare(self, job: Job) -> Work | None:
        """The work of one attempt at ``job``, from the store as it is now; None if all recorded."""
        states = self._run_states(job.part)
        recorded = [st is not None and st["status"] in _RECORDED for st in states]
        if all(recorded):
            self._progress_to(job, range(len(job.part)), job.epochs, f"{job.label} (recorded)")
            return None
        run_checkpoints = {}
        for i, st in enumerate(states):
            if st is not None and not recorded[i]:
                ck = self.store.load_checkpoint(f"run/{st['id']}")
                if ck is not None:
                    run_checkpoints[i] = ck
        return Work(
            pkey=job.pkey,
            plan=self.plan,
            part=job.part,
            checkpoint=self.store.load_checkpoint(job.pkey),
            run_checkpoints=run_checkpoints,
            recorded=frozenset(i for i, done in enumerate(recorded) if done),
            checkpoint_seconds=self.checkpoint_seconds,
        )

    def apply(self, job: Job, event: dict[str, Any]) -> None:
        """Record one event of ``job``'s training (see :func:`~droplab.sweep.executors.train_job`) in the store."""
        kind, part, epochs = event["kind"], job.part, job.epochs
        if kind == "note":
            self.note(event["text"])
        elif kind == "recorded":
            i = event["member"]
            self._progress_to(job, [i], epochs, f"{part[i][0].key} seed {part[i][1]} (recorded)")
        elif kind == "start":
            for i in event["members"]:
                r, s = part[i]
                job.run_ids[i] = self.store.start_run(self.config_ids[r.key], s)
            self._progress_to(job, event["members"], event["epoch"], job.label)
        elif kind == "epoch":
            epoch, rows, blob = event["epoch"], event["rows"], event["checkpoint"]
            store_rows = [(job.run_ids[i], epoch, _rows_for_store(row)) for i, row in rows.items()]
            if event["single"]:
                (i,) = rows
                r, s = part[i]
                ckey = f"run/{job.run_ids[i]}"
                info = {"population": ckey, "epoch": epoch, "members": 1, "rows": {0: rows[i]}}
                members, text = [i], f"{r.key} seed {s} epoch {epoch}/{epochs}"
            else:
                ckey = job.pkey
                info = {"population": ckey, "epoch": epoch, "members": len(part), "rows": rows}
                members, text = range(len(part)), f"{job.label} epoch {epoch}/{epochs}{self._best_text(rows)}"
            self.store.commit_epoch(store_rows, checkpoint=None if blob is None else (ckey, epoch, blob))
            self._progress_to(job, members, epoch, text)
            if self.on_epoch is not None:
                self.on_epoch({**info, "worker": event["worker"]})
        elif kind == "weights":
            # The final weights of a run trained alone, for the test evaluation of selected configurations.
            i = event["member"]
            self.store.commit_epoch([], checkpoint=(f"final/{job.run_ids[i]}", event["epoch"], event["blob"]))
        elif kind == "finish":
            # A finished population keeps only its members' final weights (for the test split),
            # not its checkpoint (optimizer state, copies, history: several times the weights);
            # a run trained alone has them under final/<run id> already. The weights are
            # committed before the runs finish, the checkpoint dropped after: a crash in between
            # leaves at worst a stale checkpoint, which the end of the sweep drops.
            items = event["items"]
            if event.get("weights") is not None:
                self.store.commit_epoch([], checkpoint=(f"weights/{job.pkey}", epochs, event["weights"]))
            self.store.finish_runs([(job.run_ids[i], status, res, cost) for i, status, res, cost in items])
            stale = [f"run/{job.run_ids[i]}" for i, *_ in items] if event["single"] else [job.pkey]
            for key in stale:
                self.store.delete_checkpoint(key)
            text = part[items[0][0]][0].key if event["single"] else job.label
            self._progress_to(job, [i for i, *_ in items], epochs, text)
        else:  # pragma: no cover - a bug, not a user error
            raise ValueError(f"unknown training event {kind!r}")

    def fail(self, job: Job, message: str) -> None:
        """Mark the unfinished runs of ``job`` failed (an executor gave up on it); a resume retries them."""
        items = []
        for i, ((r, s), st) in enumerate(zip(job.part, self._run_states(job.part))):
            if st is not None and st["status"] in _RECORDED:
                continue
            run_id = st["id"] if st is not None else self.store.start_run(self.config_ids[r.key], s)
            items.append((run_id, "failed", {"error": message}, {}))
        if items:
            self.store.finish_runs(items)
        self.note(f"{len(items)} run(s) of population {job.pkey} failed: {message}; --resume retries them")
        self._progress_to(job, range(len(job.part)), job.epochs, f"{job.label} (failed)")

    def note(self, text: str) -> None:
        """A message about how the sweep ran: kept in the result and shown under the progress bar."""
        self.notes.append(text)
        self.progress.note(text)

    def _progress_to(self, job: Job, members, epoch: int, text: str) -> None:
        """Move the bar to ``epoch`` for ``members``; epochs replayed after a failure count once."""
        n = 0
        for i in members:
            if epoch > job.shown[i]:
                n += epoch - job.shown[i]
                job.shown[i] = epoch
        self.progress.advance(n, text)

    def _best_text(self, rows: dict[int, dict[str, Any]]) -> str:
        values = [row.get(self.metric) for row in rows.values()]
        values = [v for v in values if v is not None and math.isfinite(v)]
        if not values:
            return ""
        best = max(values) if self.maximize else min(values)
        return f"  best {self.metric} {best:.4f}"

    # -- summary ---------------------------------------------------------------------------------
    def _values(self, key: str) -> dict[int, float]:
        cid = self.config_ids.get(key)
        out = {}
        for run in self._runs_by_config().get(cid, []):
            res = run["result"] or {}
            v = res.get(self.metric)
            out[run["seed"]] = math.nan if v is None else float(v)
        return out

    def _runs_by_config(self) -> dict[int, list[dict]]:
        by: dict[int, list[dict]] = {}
        for run in self.store.runs():
            if run["seed"] in self.seeds and run["status"] in FINAL_STATUSES:
                by.setdefault(run["config_id"], []).append(run)
        return by

    def _summarize(self, path: str) -> SweepResult:
        by = self._runs_by_config()
        baseline = {}
        for key, r in self.resolved.items():
            bkey = self._baseline_key(r)
            if bkey is not None and bkey != key:
                baseline[key] = bkey
        sm = summarize(self.resolved, {k: by.get(self.config_ids[k], []) for k in self.resolved}, metric=self.metric,
                       maximize=self.maximize, confidence=self.confidence, stat=self.stat, baseline=baseline,
                       regularization=self._reg_axes())
        self._rule = sm.stat
        selected: dict[str, list[str]] = {}
        if sm.best is not None:
            selected.setdefault(sm.best, []).append("best")
        if sm.one_se is not None:
            selected.setdefault(sm.one_se, []).append("1-SE")
        for arch, key in sm.per_arch.items():
            selected.setdefault(key, []).append(f"best of {arch}")
        small = small_validation(sm.rows, sm.best, self.metric)  # shown under the table
        return SweepResult(
            store=path,
            metric=self.metric,
            maximize=self.maximize,
            rows=sm.rows,
            best=sm.best,
            one_se=sm.one_se,
            per_arch=sm.per_arch,
            test=self._test(selected, by),
            notes=list(self.notes),
            confidence=self.confidence,
            stat=sm.stat,
            stat_text=rule_text(sm.stat, self.confidence, sm.family, self.stat),
            regularization=self._reg_axes(),
            small_validation=small,
        )

    def _reg_axes(self) -> list[str]:
        """Every rate / regularization axis of the sweep's configurations (named or found)."""
        return list(dict.fromkeys(a for o in self.resolved.values() for a in o.rate_axes))

    def _baseline_key(self, r: Resolved) -> str | None:
        """The configuration like ``r`` without dropout, if the sweep has it (:func:`selection.find_baseline`)."""
        axes = selection.rate_axes(r.params, self._reg_axes())
        return selection.find_baseline(r.params, {k: o.params for k, o in self.resolved.items()}, axes)

    def _step_costs(self) -> dict[str, dict[str, Any]]:
        """Each configuration's per-step time and memory trained alone (see :mod:`droplab.sweep.cost`)."""
        from droplab.sweep.cost import sweep_step_costs

        baseline = {}
        for r in self.resolved.values():
            bkey = self._baseline_key(r)
            if bkey is not None and bkey != r.key:
                baseline[r.key] = bkey
        return sweep_step_costs(self.plan, list(self.resolved.values()), self.seeds[0], baseline)

    def _test(self, selected: dict[str, list[str]], by) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        metric = selection.score_name(self.task)
        for key, reasons in selected.items():
            r = self.resolved[key]
            splits = self.plan.data(r)
            x_test, y_test = getattr(splits, "x_test", None), getattr(splits, "y_test", None)
            if x_test is None or y_test is None or len(x_test) == 0:
                continue
            runs = {run["seed"]: run for run in by.get(self.config_ids[key], []) if run["status"] in _RECORDED}
            values: dict[int, float] = {}
            losses: dict[int, float] = {}
            for seed, ev in self._test_runs(r, runs, splits).items():
                values[seed], losses[seed] = ev[metric], ev["loss"]
            stored = self._stored_test.get(key)
            if not values and stored is not None:
                # A complete study keeps no weights: its test metrics were committed with its
                # summary, from the same weights, and are read back instead of evaluated again.
                out[key] = {**stored, "selected_as": reasons}
                continue
            est = selection.metric_interval([values[s] for s in sorted(values)], f"test_{metric}", self._rule,
                                            self.confidence)
            lest = selection.metric_interval([losses[s] for s in sorted(losses)], "test_loss", self._rule,
                                             self.confidence)
            out[key] = {
                "selected_as": reasons,
                "metric": f"test_{metric}",
                "mean": est.mean, "lo": est.lo, "hi": est.hi, "n": est.n,
                "values": {str(s): v for s, v in values.items()},
                "loss_mean": lest.mean, "loss_lo": lest.lo, "loss_hi": lest.hi,
            }
        return out

    def _test_runs(self, r: Resolved, runs: dict[int, dict], splits) -> dict[int, dict[str, float]]:
        """Evaluate the final weights of some runs of one configuration on the test split.

        Runs trained one by one have their weights under ``final/<run id>``; population runs
        are evaluated together from their population's final checkpoint (loaded once).
        """
        out: dict[int, dict[str, float]] = {}
        by_pop: dict[str, list[int]] = {}
        for seed in sorted(runs):
            final = self.store.load_checkpoint(f"final/{runs[seed]['id']}")
            if final is None:
                pkey = self.pop_keys.get((r.key, seed))
                if pkey is not None:
                    by_pop.setdefault(pkey, []).append(seed)
                continue
            from droplab.train import Trainer

            member = Member(r.key, r.params, seed, r.train, r.rates, schedules=r.schedules)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = self.plan.builder(r, splits)(member)
            model.load_state_dict(torch.load(io.BytesIO(final[1]), weights_only=True))
            trainer = Trainer(model, r.train.replace(seed=seed, checkpoint_dir=None))
            trainer.task = splits.task
            y = splits.y_test if splits.task == "classification" else splits.y_test.float().reshape(len(splits.y_test), -1)
            out[seed] = trainer.evaluate(splits.x_test.to(trainer.device), y.to(trainer.device))
        for pkey, seeds in by_pop.items():
            pop = self._final_population(pkey, splits)
            if pop is None:
                continue
            index = {(m.key, m.seed): i for i, m in enumerate(pop.members)}
            ev = pop.evaluate_members([index[(r.key, s)] for s in seeds], splits.x_test, splits.y_test)
            for j, seed in enumerate(seeds):
                out[seed] = {k: v[j] for k, v in ev.items()}
        return out

    def keep_final(self, pkey: str, pop: Population | None) -> None:
        """Hold a population an executor finished in this process, for the test evaluation.

        Its state is the final checkpoint's, so the test split needs no reload from the store.
        One population is held at a time; ``None`` releases the one held.
        """
        self._finals = {} if pop is None else {pkey: pop}

    def _final_population(self, pkey: str, splits) -> Population | None:
        """The population ``pkey`` as its final checkpoint left it (cached: loaded once)."""
        cache = self._finals
        if pkey not in cache:
            ck = self.store.load_checkpoint(f"weights/{pkey}")
            full = ck is None  # a study written before final weights were kept apart
            if full:
                ck = self.store.load_checkpoint(pkey)
            pop = None
            if ck is not None:
                pop, _ = make_population_of(self.plan, self.parts[pkey], splits)
                if pop is not None:
                    (pop.load_bytes if full else pop.load_final_bytes)(ck[1])
            cache.clear()  # keep one population in memory at a time
            cache[pkey] = pop
        return cache[pkey]


def _sortable(value: Any) -> tuple:
    return (value is None, 0.0 if value is None else float(value))
