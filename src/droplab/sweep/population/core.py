"""The population: stacking, compaction, checkpoints, the epoch loop, the regularizers."""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from droplab.data.tasks import score_name
from droplab.errors import ConfigError, DataError
from droplab.sweep.population.base import MEMBER_FIELDS, OPTIMIZER_FIELDS, Member, Unstackable, _derive_seed, _Net
from droplab.sweep.population.losses import gaussian_nll
from droplab.sweep.population.mlp import MLPNet
from droplab.sweep.population.module import ModuleNet
from droplab.train.config import TrainConfig
from droplab.train.optim import SCHEDULE_STEPS_PER_BATCH, build_optimizer_over, build_scheduler, direct_step

__all__ = ["Population", "make_population", "POPULATION_FORMAT"]

POPULATION_FORMAT = "droplab-population-v1"
_FINALS_FORMAT = "droplab-population-finals-v1"  # Population.final_bytes: final weights only
_MASK_STREAM = 0x5EED_D809  # mixed into a seed to give the dropout-uniform generator its own stream


def _trim_heap() -> None:
    """Hand freed heap memory back to the OS (glibc ``malloc_trim``; a no-op elsewhere).

    Without it, memory a finished population freed stays in the process, the next population
    reuses it, and its resident-memory growth (its ``peak_mem_mb``) reads 0.
    """
    global _MALLOC_TRIM
    if _MALLOC_TRIM is None:
        try:
            import ctypes

            _MALLOC_TRIM = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):  # pragma: no cover - not glibc
            _MALLOC_TRIM = False
    if _MALLOC_TRIM:
        _MALLOC_TRIM(0)


_MALLOC_TRIM: Any = None


def _current_rss_mb() -> float:
    try:
        with open("/proc/self/statm") as fh:
            resident = int(fh.read().split()[1])
        import os

        return resident * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):  # pragma: no cover - non-Linux
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


_EVAL_CHUNK_BYTES = 8 << 20  # activations per evaluation chunk of a CPU population


# --- the population -------------------------------------------------------------------------------
class _MemberView:
    """What one member's EarlyStopping sees as its trainer (and as the trainer's model)."""

    def __init__(self, population: Population, index: int) -> None:
        self._population = population
        self._index = index
        self.model = self
        self.should_stop = False
        self.stop_reason: str | None = None

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self._population.live_weights(self._index)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self._population.frozen[self._index] = {k: v.detach().clone() for k, v in state.items()}


@dataclass
class _Run:
    start: int
    stop: int
    train: TrainConfig
    optimizer: Any = None
    scheduler: Any = None
    # optimizer.step() without torch's Python wrapper (train.optim.direct_step), built after
    # the first step; reset to None whenever the optimizer's state is replaced
    direct: Any = None

    def step(self) -> None:
        if self.direct:
            self.direct()
            return
        self.optimizer.step()
        if self.direct is None:  # False: this optimizer has no direct step
            self.direct = direct_step(self.optimizer) or False


def _counter_rows(seeds: torch.Tensor, start: int, batch: int, width: int) -> torch.Tensor:
    """``counter_uniform((S, batch, width), seeds, offset=start)``: in C++ where it built."""
    from droplab.sweep.fused_step import available, counter_uniforms

    if available():
        return counter_uniforms(seeds, start, batch, width)
    from droplab.functional.counter import counter_uniform

    return counter_uniform((len(seeds), batch, width), seeds, offset=start)


def _same_hparams(a: TrainConfig, b: TrainConfig) -> bool:
    # What one optimizer instance must share; L1/L2 are applied per row (see _layout).
    return all(getattr(a, f) == getattr(b, f) for f in OPTIMIZER_FIELDS)


class Population:
    """Train the members of one population together, epoch by epoch.

    Args:
        net: an :class:`MLPNet` or :class:`ModuleNet` for these members.
        members: the members (configuration, seed, training configuration).
        data: ``(x_train, y_train, x_val, y_val)`` tensors.
        task: ``"classification"``, ``"binary"`` (one logit, BCE with logits, accuracy of
            ``logit > 0``), ``"regression"`` (mean squared error) or ``"gaussian"``
            (a mean/variance head trained on the Gaussian NLL, :func:`gaussian_nll`; the
            network outputs ``2 D`` columns for ``D`` targets).
        device: torch device. Default CPU.
        compact: at the end of an epoch in which members stopped (early stopping,
            divergence), drop them from the stacked tensors so that they cost nothing more
            (default True). An :class:`MLPNet` member trains the same either way, up to float
            rounding (kernels block a smaller stack differently); in a :class:`ModuleNet`
            population with random layers, torch.func draws the masks for the whole stack, so
            the remaining members draw other (equally distributed) masks after a compaction.
            Either way a run is reproducible: the same members and seeds give the same bits.
        groups: per-member data sets (an :class:`MLPNet` or :class:`ModuleNet` population; the
            folds of :mod:`droplab.sweep.folds`): member ``i`` trains
            and is evaluated on ``x[groups[i]]``, with the data tensors carrying a leading group
            axis ``(G, n, ...)`` (for example one standardized training set per split of a
            benchmark, every split's runs in one population). Default ``None``: one data set.
        history: keep every epoch's row in :attr:`history` (default True). Long runs of many
            members that need only their final weights pass False: the rows are still returned
            by :meth:`run_epoch`, and :meth:`result` / :meth:`cost` then see no rows.

    All members share the group-level training options (optimizer, epochs, batch size,
    schedule, early stopping, gradient clipping) of the first member's ``train``; ``lr``,
    ``weight_decay``, ``l1``, ``l2`` and ``max_norm`` are per member.

    Example::

        pop = Population(MLPNet(spec, (40,), 10, members), members, (x, y, xv, yv), "classification")
        while not pop.done:
            rows = pop.run_epoch()   # {member index: history row} for members still training
    """

    def __init__(
        self,
        net: _Net,
        members: Sequence[Member],
        data: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
        task: str,
        *,
        device: torch.device | str = "cpu",
        compact: bool = True,
        groups: Sequence[int] | None = None,
        history: bool = True,
    ) -> None:
        if not members:
            raise ConfigError("a population needs at least one member")
        if members[0].train.rdrop:
            raise Unstackable("R-Drop (rdrop > 0) trains through the Trainer")
        self.compact = compact
        self.keep_history = bool(history)
        self.net = net
        self.members = list(members)
        self.k = len(self.members)
        self.task = task
        self.device = torch.device(device)
        self.cfg = self.members[0].train
        for m in self.members:
            t = m.train.replace(**{f: getattr(self.cfg, f) for f in MEMBER_FIELDS}, seed=self.cfg.seed)
            if t != self.cfg:
                raise ConfigError(
                    f"member {m.key!r} differs from the population in more than "
                    f"{', '.join(MEMBER_FIELDS[:-1])} and {MEMBER_FIELDS[-1]}"
                )
        x, y, xv, yv = data
        self.groups = None if groups is None else [int(g) for g in groups]
        if self.groups is not None:
            if not isinstance(net, (MLPNet, ModuleNet)):
                raise ConfigError("per-member data sets (groups) need an MLPNet or ModuleNet population")
            if isinstance(net, ModuleNet):
                net.per_member_inputs = True  # predict() then takes one input set per member
            if len(self.groups) != self.k:
                raise ConfigError(f"groups must give one data set per member: {self.k} members, got {len(self.groups)}")
            bad = [g for g in self.groups if not 0 <= g < len(x)]
            if bad:
                raise ConfigError(f"groups must index the {len(x)} data sets, got {bad[0]}")
        self.x, self.y = x.to(self.device), y.to(self.device)
        self.xv, self.yv = xv.to(self.device), yv.to(self.device)
        if task == "classification":
            self.y, self.yv = self.y.long(), self.yv.long()
        elif self.groups is None:
            self.y = self.y.float().reshape(len(self.y), -1)
            self.yv = self.yv.float().reshape(len(self.yv), self.y.shape[1])  # also when empty
        else:  # (G, n) or (G, n, outputs)
            self.y, self.yv = (t.float() if t.dim() == 3 else t.float().unsqueeze(-1) for t in (self.y, self.yv))
        if isinstance(net, MLPNet):
            net.to(self.device)
        params, buffers = net.init_params(self.members)
        self.params = {n: t.to(self.device) for n, t in params.items()}
        self.buffers = {n: t.to(self.device) for n, t in buffers.items()}
        self.seeds = sorted({m.seed for m in self.members})
        self.data_gens = []
        self.mask_gens = []
        for s in self.seeds:
            self.data_gens.append(torch.Generator().manual_seed(s))
            self.mask_gens.append(torch.Generator(device=self.device).manual_seed(_derive_seed(s, _MASK_STREAM)))
        self.rng_state = self._seeded_rng_state()
        # Counter-stream draws (net.counter_draws): seed s's uniforms at global step t are
        # counter_uniform((B, width), mask seed of s, offset=t * stride), stride a power of two
        # >= batch_size * width, so a step's counters never cross a multiple of 2**32.
        self._counter_seeds: torch.Tensor | None = None
        if net.uniform_width and net.counter_draws(task, self.device):
            self._counter_seeds = torch.tensor([_derive_seed(s, _MASK_STREAM) for s in self.seeds], dtype=torch.int64)
            self._counter_stride = 1 << max(0, (self.cfg.batch_size * net.uniform_width - 1).bit_length())
        # (seeds, n) training-row indices per seed (bootstrap resamples), or None: every seed
        # trains on the data as given. Set before the first epoch (see droplab.ensemble).
        self.resample: torch.Tensor | None = None
        self.n = self.x.shape[0 if self.groups is None else 1]
        self.n_val = self.xv.shape[0 if self.groups is None else 1]
        self.steps_per_epoch = math.ceil(self.n / self.cfg.batch_size)
        # Members whose parameters are rows of the stacked tensors, in row order: every member
        # at first, the ones still training after a compaction.
        self.rows: list[int] = list(range(self.k))
        self._layout()
        self._build_optimizers()
        self.views = [_MemberView(self, i) for i in range(self.k)]
        self.stoppers = [m.train.make_early_stopping() for m in self.members]
        for es, view in zip(self.stoppers, self.views):
            if es is not None:
                es.on_fit_start(view)
        self.status: list[str | None] = [None] * self.k  # None while training
        self.frozen: dict[int, dict[str, torch.Tensor]] = {}
        self.history: list[list[dict[str, Any]]] = [[] for _ in range(self.k)]
        self.epoch = 0
        # The baseline is taken after the setup, so one-off costs of the process (torch's lazy
        # imports, ~70 MB, paid by the first population alone) are nobody's; the population's
        # own tensors are added back exactly. Freed memory of an earlier population goes back to
        # the OS first: reused in place, it would make this population's growth read 0.
        _trim_heap()
        own = sum(t.nbytes for t in (*self.params.values(), *self.buffers.values())) / 2**20
        self.mem_base = _current_rss_mb() - own
        self.mem_peak = self.mem_base + own
        self.seconds = 0.0
        self._weight_set = set(net.weight_names)
        # Metrics of droplab.train.metrics ("auroc", "f1", "mae") added to each validation row;
        # computed only when asked (the sweep engine asks for the one it selects by).
        self.extra_metrics: tuple[str, ...] = ()

    # -- setup ---------------------------------------------------------------------------------
    def _seeded_rng_state(self) -> torch.Tensor:
        g = torch.Generator().manual_seed(_derive_seed(self.seeds[0] * 1_000_003 + self.k, _MASK_STREAM + 1))
        return g.get_state()

    def _layout(self) -> None:
        """Per-row bookkeeping for ``self.rows``: seeds and runs of equal hyperparameters."""
        position = {s: i for i, s in enumerate(self.seeds)}
        row_seeds = [self.members[i].seed for i in self.rows]
        self._pos = {i: j for j, i in enumerate(self.rows)}  # member index -> row
        self.seed_index = torch.tensor([position[s] for s in row_seeds], device=self.device)
        self._identity = self.seeds == row_seeds
        self.group_index = (
            None if self.groups is None
            else torch.tensor([self.groups[i] for i in self.rows], device=self.device)
        )
        # Distinct data streams (group, seed): a batch is gathered once per stream for a net
        # that reads member k's at data_index[k] (MLPNet.data_rows).
        keys = [(0 if self.groups is None else self.groups[i], position[s]) for i, s in zip(self.rows, row_seeds)]
        streams = list(dict.fromkeys(keys))
        where = {key: j for j, key in enumerate(streams)}
        self.data_index = torch.tensor([where[key] for key in keys], device=self.device)
        self.stream_seed = torch.tensor([s for _, s in streams], device=self.device)
        self.stream_group = (
            None if self.groups is None else torch.tensor([g for g, _ in streams], device=self.device)
        )
        # L1/L2 strengths per row: a run of one optimizer may mix them (a grid over L2).
        # (name, the strength every row shares or None, per-row strengths when they differ)
        self._penalties = []
        for name in ("l1", "l2"):
            scale = 2.0 if name == "l2" else 1.0  # d/dw l2 * w**2 = 2 l2 w
            values = [scale * getattr(self.members[i].train, name) for i in self.rows]
            if not any(values):
                continue
            if len(set(values)) == 1:
                self._penalties.append((name, values[0], None))
            else:
                self._penalties.append((name, None, torch.tensor(values, device=self.device)))
        self.runs: list[_Run] = []
        for j, i in enumerate(self.rows):
            train = self.members[i].train
            if self.runs and _same_hparams(self.runs[-1].train, train):
                self.runs[-1].stop = j + 1
            else:
                self.runs.append(_Run(j, j + 1, train))

    def _select_rows(self, rows: list[int]) -> None:
        """Keep members ``rows`` (a subsequence of ``self.rows``) in the stacked tensors.

        Parameters, buffers and the per-row optimizer state (moments, momentum) are cut to the
        kept rows; step counts, learning rates and schedules carry over unchanged.
        """
        keep = torch.tensor([self._pos[i] for i in rows], device=self.device)
        old_runs = self.runs
        old_states = [run.optimizer.state_dict() for run in old_runs]
        run_of_row = [r for r, run in enumerate(old_runs) for _ in range(run.start, run.stop)]
        self.params = {n: t.index_select(0, keep) for n, t in self.params.items()}
        self.buffers = {n: t.index_select(0, keep) for n, t in self.buffers.items()}
        self.net.select_rows(keep)
        old_pos = dict(self._pos)
        self.rows = list(rows)
        self._layout()
        self._build_optimizers()
        stacked: dict[tuple[Any, str], torch.Tensor] = {}  # per-row state of all old runs
        for run in self.runs:
            old_rows = keep[run.start : run.stop]
            first = run_of_row[old_pos[self.rows[run.start]]]  # every old run stepped alike
            template = old_states[first]
            state: dict[Any, dict[str, Any]] = {}
            for pid, entries in template["state"].items():
                state[pid] = {}
                for key, value in entries.items():
                    if isinstance(value, torch.Tensor) and value.dim() > 0:  # one row per member
                        if (pid, key) not in stacked:
                            stacked[pid, key] = torch.cat([sd["state"][pid][key] for sd in old_states])
                        value = stacked[pid, key].index_select(0, old_rows)
                    state[pid][key] = value
            run.optimizer.load_state_dict({"state": state, "param_groups": template["param_groups"]})
            run.direct = None
            if run.scheduler is not None and old_runs[first].scheduler is not None:
                run.scheduler.load_state_dict(old_runs[first].scheduler.state_dict())

    def _build_optimizers(self) -> None:
        for run in self.runs:
            views = {n: self.params[n][run.start : run.stop] for n in self.net.names}
            weights = [views[n] for n in self.net.names if n in self.net.weight_names]
            others = [views[n] for n in self.net.names if n not in self.net.weight_names]
            run.views = views  # type: ignore[attr-defined]
            fused = self.device.type in ("cpu", "cuda")  # torch's fused kernels run there
            run.optimizer = build_optimizer_over(weights, others, run.train, fused=fused)
            run.scheduler = build_scheduler(run.optimizer, run.train, self.steps_per_epoch)

    # -- state ---------------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        """True when every member has stopped or the epoch budget is spent."""
        return self.epoch >= self.cfg.epochs or all(s is not None for s in self.status)

    @property
    def alive(self) -> list[int]:
        """Indices of the members still training."""
        return [i for i, s in enumerate(self.status) if s is None]

    def live_weights(self, index: int) -> dict[str, torch.Tensor]:
        """Views of member ``index``'s current parameters and buffers (not copies).

        Only for members still in the stacked tensors (``index in rows``).
        """
        row = self._pos[index]
        out = {n: t[row] for n, t in self.params.items()}
        out.update({f"buffer:{n}": t[row] for n, t in self.buffers.items()})
        return out

    def final_weights(self, index: int) -> dict[str, torch.Tensor]:
        """Member ``index``'s final weights: frozen ones if it stopped, else its current ones."""
        if index in self.frozen:
            return self.frozen[index]
        return {k: v.detach().clone() for k, v in self.live_weights(index).items()}

    # -- one epoch -------------------------------------------------------------------------------
    def run_epoch(self) -> dict[int, dict[str, Any]]:
        """Train every member for one epoch; return ``{member index: history row}``.

        Rows have the keys of :class:`droplab.train.Trainer`'s history. Members that stop this
        epoch (early stopping, divergence) still get their row; afterwards they are frozen.
        """
        if self.done:
            return {}
        t0 = time.perf_counter()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        epoch = self.epoch + 1
        lrs = [run.optimizer.param_groups[0]["lr"] for run in self.runs]
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(self.rng_state)
            running = self._train_epoch()
            self.rng_state = torch.get_rng_state()
        for run in self.runs:
            if run.scheduler is not None and run.train.lr_schedule not in SCHEDULE_STEPS_PER_BATCH:
                run.scheduler.step()
        train_loss = (running / self.n).tolist()
        metric = score_name(self.task)
        ev_train = self.evaluate(self.x, self.y) if self.cfg.eval_train else None
        ev_val = self.evaluate(self.xv, self.yv) if self.n_val else None
        self._sample_memory()
        self.epoch = epoch
        seconds = time.perf_counter() - t0
        self.seconds += seconds
        if self.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            peak = self.mem_peak - self.mem_base
        rows: dict[int, dict[str, Any]] = {}
        computed = len(self.rows)  # the epoch's cost is shared by the members it computed
        for i in self.alive:
            j = self._pos[i]
            run_lr = next(lr for run, lr in zip(self.runs, lrs) if run.start <= j < run.stop)
            row: dict[str, Any] = {"epoch": epoch, "train_loss": train_loss[j]}
            if math.isfinite(train_loss[j]):
                if ev_train is not None:
                    row["train_eval_loss"] = ev_train["loss"][j]
                    row[f"train_eval_{metric}"] = ev_train[metric][j]
                if ev_val is not None:
                    row["val_loss"] = ev_val["loss"][j]
                    row[f"val_{metric}"] = ev_val[metric][j]
                    for name in self.extra_metrics:
                        if name in ev_val:
                            row[f"val_{name}"] = ev_val[name][j]
            row["lr"] = run_lr
            row["seconds"] = seconds / computed
            row["peak_mem_mb"] = peak / computed
            rows[i] = row
            if self.keep_history:
                self.history[i].append(row)
            self._after_epoch(i, epoch, row)
        if self.done:
            for i in self.alive:
                self._stop(i, "completed")
        elif self.compact and len(self.alive) < len(self.rows):
            self._select_rows(self.alive)
        return rows

    def _after_epoch(self, i: int, epoch: int, row: dict[str, Any]) -> None:
        es, view = self.stoppers[i], self.views[i]
        if not math.isfinite(row["train_loss"]):
            self._stop(i, "diverged")
            return
        if es is not None:
            es.on_epoch_end(view, epoch=epoch, logs=row)
            if view.should_stop:
                self._stop(i, "diverged" if view.stop_reason == "diverged" else "early_stopped")

    def _stop(self, i: int, status: str) -> None:
        self.status[i] = status
        es = self.stoppers[i]
        if es is not None:
            es.on_fit_end(self.views[i], stop_reason=status)
        if i not in self.frozen:
            self.frozen[i] = {k: v.detach().clone() for k, v in self.live_weights(i).items()}

    def _sample_memory(self) -> None:
        if self.device.type == "cpu":
            self.mem_peak = max(self.mem_peak, _current_rss_mb())

    def _batches(self) -> list[torch.Tensor]:
        """Per-batch index tensors (S, B_b): one permutation per seed, like the Trainer's."""
        perms = [torch.randperm(self.n, generator=g).to(self.device) for g in self.data_gens]
        perm = torch.stack(perms)
        if self.resample is not None:  # each seed trains on its own resample of the data
            perm = self.resample.gather(1, perm)
        return list(perm.split(self.cfg.batch_size, dim=1))

    def _uniforms(self, batch: int, step: int, expand: bool = True) -> torch.Tensor | None:
        """The dropout uniforms of global step ``step``: ``(seeds, batch, width)``, or per row."""
        width = self.net.uniform_width
        if width == 0 or not getattr(self.net, "draws", True):
            return None
        if self._counter_seeds is not None:
            u = _counter_rows(self._counter_seeds, step * self._counter_stride, batch, width)
        else:
            u = torch.empty(len(self.seeds), batch, width, device=self.device)
            for s, g in enumerate(self.mask_gens):
                u[s].uniform_(generator=g)
        return u if self._identity or not expand else u.index_select(0, self.seed_index)

    def _train_epoch(self) -> torch.Tensor:
        cfg = self.cfg
        net, P = self.net, self.params
        running = torch.zeros(len(self.rows), device=self.device, dtype=torch.float64)
        per_batch_schedule = cfg.lr_schedule in SCHEDULE_STEPS_PER_BATCH
        sample_steps = 2
        first_step = self.epoch * self.steps_per_epoch
        net.update_schedule(self.epoch, first_step)
        by_data = getattr(net, "takes_data_rows", False)
        for b, idx in enumerate(self._batches()):
            if b and net.per_step_schedule:
                net.update_schedule(self.epoch, first_step + b)
            bsz = idx.shape[1]
            # one batch per data stream (the net reads member k's at data_index[k]), else per row
            by_stream = by_data and len(self.stream_seed) < len(self.rows)
            if by_stream:
                idx, gi = idx.index_select(0, self.stream_seed), self.stream_group
            else:
                idx = idx if self._identity else idx.index_select(0, self.seed_index)
                gi = self.group_index
            # index_select of flat row numbers: the same rows as x[idx] / x[gi, idx], in 0.45
            # instead of 0.75 ms for 20 x 32 images of 28 x 28 (advanced indexing copies element-wise)
            if gi is None:
                x, y, flat = self.x, self.y, idx.reshape(-1)
            else:
                x, y = self.x.flatten(0, 1), self.y.flatten(0, 1)
                flat = (gi.unsqueeze(1) * self.x.shape[1] + idx).reshape(-1)
            xb = x.index_select(0, flat).view(*idx.shape, *x.shape[1:])
            yb = y.index_select(0, flat).view(*idx.shape, *y.shape[1:])
            by_seed = getattr(net, "takes_seed_uniforms", False) and not self._identity
            u = self._uniforms(bsz, first_step + b, expand=not by_seed)
            if by_seed:  # u holds one row per seed; the net reads member k's at seed_index[k]
                net.uniform_rows = self.seed_index
            if by_stream:
                net.data_rows = self.data_index
            try:
                losses, grads = net.train_step(P, self.buffers, xb, yb, u, self.task)
            finally:
                if by_seed:
                    net.uniform_rows = None
                if by_stream:
                    net.data_rows = None
            if b < sample_steps:
                self._sample_memory()
            self._apply_regularizers(grads)
            if cfg.grad_clip is not None:
                _clip_per_member(grads, cfg.grad_clip)
            for run in self.runs:
                for n, view in run.views.items():
                    view.grad = grads[n][run.start : run.stop]
                run.step()
                if run.train.max_norm is not None:
                    for n in net.weight_names:
                        _max_norm_(run.views[n], run.train.max_norm, net.unit_dims(n, P[n]))
                if per_batch_schedule:
                    run.scheduler.step()
            running.add_(losses.to(torch.float64), alpha=bsz)
        for run in self.runs:
            for view in run.views.values():
                view.grad = None
        return running

    def _apply_regularizers(self, grads: dict[str, torch.Tensor]) -> None:
        for name, same, per_row in self._penalties:
            for n in self.net.weight_names:
                w, g = self.params[n], grads[n]
                term = torch.sign(w) if name == "l1" else w
                if per_row is None:
                    g.add_(term, alpha=same)
                else:
                    g.addcmul_(term, per_row.view(-1, *([1] * (w.dim() - 1))))

    # -- evaluation ------------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        weights: dict[str, torch.Tensor] | None = None,
        *,
        group_index: torch.Tensor | None = None,
    ) -> dict[str, list[float]]:
        """Per-member loss and accuracy (or RMSE) in eval mode, in chunks of eval_batch_size.

        On the CPU a built-in MLP population takes fewer examples per chunk when the chunk's
        activations would pass 8 MiB.

        Args:
            x, y: inputs and targets (targets in the population's task format).
            weights: stacked parameters to evaluate instead of the live ones (the keys of
                :meth:`final_weights`, stacked); default the live parameters.
            group_index: with per-member data sets (``groups``), the data set of each stacked
                member; default the live rows' (``x`` and ``y`` then carry the group axis).

        Returns:
            lists with one entry per stacked member: those of ``weights``, or with the live
            parameters one per member in :attr:`rows` (every member until stopped ones leave).
        """
        P, B = self.params, self.buffers
        if weights is not None:
            P = {n: weights[n] for n in self.net.names}
            B = {n: weights[f"buffer:{n}"] for n in self.buffers}
        k = P[self.net.names[0]].shape[0]
        x, y = x.to(self.device), y.to(self.device)
        if self.groups is not None:
            gi = self.group_index if group_index is None else group_index.to(self.device)
            x, y = x.index_select(0, gi), y.index_select(0, gi)  # (K, N, ...): one set per member
        if self.task == "classification":
            y = y.long()
        elif self.groups is not None:
            y = y.float().reshape(k, y.shape[1], -1)
        else:
            y = y.float().reshape(len(y), -1)
        n_items = x.shape[0 if self.groups is None else 1]
        total = torch.zeros(k, dtype=torch.float64, device=self.device)
        correct = torch.zeros(k, dtype=torch.long, device=self.device)
        sq = torch.zeros(k, dtype=torch.float64, device=self.device)  # gaussian: the mean's error
        extra = self.extra_metrics
        outs: list[torch.Tensor] = []  # the outputs, for the extra metrics
        step = self.cfg.eval_batch_size
        width = self.net.activation_width(x) if self.device.type == "cpu" and n_items else 0
        if width:
            # A chunk's activations (k, rows, widest) beyond a few MiB are fresh pages at every
            # allocation (glibc maps large blocks anew: page faults, kernel time); measured for
            # an MLP at k=30, width 256: 1000 rows 268-361 ms an epoch's evaluation, 250 rows
            # 215-252 ms; for the CNN of benchmarks/user_model_sweep.py (k=20, 784 values per
            # example): 500 rows 130 ms, 100 rows 55-60 ms.
            step = max(1, min(step, _EVAL_CHUNK_BYTES // (k * width * 4)))
        for start in range(0, n_items, step):
            if self.groups is None:
                xb, yb = x[start : start + step], y[start : start + step]
            else:
                xb, yb = x[:, start : start + step], y[:, start : start + step]
            out = self.net.predict(P, B, xb)
            if extra:
                outs.append(out)
            if self.task == "binary":
                total += F.binary_cross_entropy_with_logits(
                    out, yb.expand(k, -1, -1), reduction="none"
                ).sum((1, 2), dtype=torch.float64)
                correct += ((out > 0) == (yb > 0.5)).sum((1, 2))
            elif self.task == "classification":
                total += F.cross_entropy(
                    out.transpose(1, 2), yb.expand(k, -1), reduction="none"
                ).sum(1, dtype=torch.float64)
                correct += (out.argmax(dim=2) == yb).sum(1)
            elif self.task == "gaussian":
                d = yb.shape[1]
                total += gaussian_nll(out, yb).sum((1, 2), dtype=torch.float64) / d
                sq += (out[..., :d] - yb).pow(2).sum((1, 2), dtype=torch.float64) / d
            else:
                total += (out - yb).pow(2).sum((1, 2), dtype=torch.float64) / yb.shape[1]
        loss = (total / n_items).tolist()
        more: dict[str, list[float]] = {}
        if extra and n_items:
            from droplab.train import metrics as M

            full = torch.cat(outs, dim=1)
            for name in extra:
                fn = getattr(M, name)
                values = []
                for j in range(k):
                    # a Gaussian head's means are its first columns; an undefined metric (AUROC
                    # of a validation split with one class) is NaN, not a failed sweep
                    y_j = y if self.groups is None else y[j]  # per-member data sets: member j's
                    out_j = full[j][:, : y_j.shape[-1]] if name == "mae" else full[j]
                    try:
                        values.append(fn(out_j, y_j))
                    except DataError:
                        values.append(math.nan)
                more[name] = values
        if self.task in ("classification", "binary"):
            return {"loss": loss, "acc": (correct.double() / n_items).tolist(), **more}
        if self.task == "gaussian":
            return {"loss": loss, "rmse": (sq / n_items).sqrt().tolist(), **more}
        return {"loss": loss, "rmse": [math.sqrt(v) if v >= 0 else math.nan for v in loss], **more}

    def evaluate_members(self, indices: Sequence[int], x: torch.Tensor, y: torch.Tensor) -> dict[str, list[float]]:
        """Evaluate the *final* weights of some members (e.g. on the test split)."""
        finals = [self.final_weights(i) for i in indices]
        stacked = {k: torch.stack([f[k] for f in finals]) for k in finals[0]}
        gi = None if self.groups is None else torch.tensor([self.groups[i] for i in indices])
        return self.evaluate(x, y, stacked, group_index=gi)

    # -- results -----------------------------------------------------------------------------------
    def result(self, i: int) -> dict[str, Any]:
        """Final result of member ``i``: the metrics of the weights it ends with.

        When early stopping restored the best weights, those of its best epoch's row; otherwise
        the last row's. ``best_epoch`` follows the Trainer: the restored epoch, or the epoch
        with the lowest validation loss.
        """
        hist = self.history[i]
        es = self.stoppers[i]
        restored = bool(es is not None and es.restored_)
        if restored:
            best_epoch = es.best_epoch_
            row = next(r for r in hist if r["epoch"] == best_epoch)
        else:
            vals = [(r["val_loss"], r["epoch"]) for r in hist if math.isfinite(r.get("val_loss", math.nan))]
            best_epoch = min(vals)[1] if vals else None
            row = hist[-1] if hist else {}
        out: dict[str, Any] = {
            "best_epoch": best_epoch,
            "weights_epoch": best_epoch if restored else (hist[-1]["epoch"] if hist else 0),
            "epochs_run": len(hist),
            "stop_reason": self.status[i],
            "restored": restored,
        }
        for key, value in row.items():
            if key.startswith(("train_eval_", "val_")):
                out[key] = value
        if not restored and not math.isfinite(row.get("train_loss", math.nan)):
            metric = score_name(self.task)
            for key in ("val_loss", f"val_{metric}", "train_eval_loss", f"train_eval_{metric}"):
                out[key] = math.nan
        return out

    def cost(self, i: int) -> dict[str, Any]:
        """Cost of member ``i``: its share of the population's time and memory."""
        hist = self.history[i]
        return {
            "seconds": sum(r["seconds"] for r in hist),
            "peak_mem_mb": max((r["peak_mem_mb"] for r in hist), default=0.0),
            "population_size": self.k,
            "population_seconds": self.seconds,
        }

    # -- checkpoints -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bitwise-identically (tensors and plain values)."""
        return {
            "format": POPULATION_FORMAT,
            "epoch": self.epoch,
            "members": [[m.key, m.seed] for m in self.members],
            "rows": list(self.rows),
            "params": self.params,
            "buffers": self.buffers,
            "optimizers": [run.optimizer.state_dict() for run in self.runs],
            "schedulers": [None if run.scheduler is None else run.scheduler.state_dict() for run in self.runs],
            "data_gens": [g.get_state() for g in self.data_gens],
            "mask_gens": [g.get_state() for g in self.mask_gens],
            "rng": self.rng_state,
            "stoppers": [None if es is None else es.state_dict() for es in self.stoppers],
            "status": list(self.status),
            "frozen": {str(i): w for i, w in self.frozen.items()},
            "history": self.history,
            "seconds": self.seconds,
            "mem": [self.mem_base, self.mem_peak],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; the members must be the same, in the same order."""
        if not isinstance(state, dict) or state.get("format") != POPULATION_FORMAT:
            raise ConfigError("not a droplab population checkpoint")
        if [list(x) for x in state["members"]] != [[m.key, m.seed] for m in self.members]:
            raise ConfigError("the checkpoint holds a different population (members differ)")
        rows = [int(i) for i in state.get("rows", range(self.k))]
        if rows != self.rows:
            if self.rows != list(range(self.k)) or rows != sorted(set(rows)) or not set(rows) <= set(self.rows):
                raise ConfigError("the checkpoint's member rows do not fit this population")
            self._select_rows(rows)  # the checkpoint was taken after stopped members left
        self.epoch = int(state["epoch"])
        for n, t in state["params"].items():
            self.params[n].copy_(t)
        for n, t in state["buffers"].items():
            self.buffers[n].copy_(t)
        for run, opt_state, sched_state in zip(self.runs, state["optimizers"], state["schedulers"]):
            run.optimizer.load_state_dict(opt_state)
            run.direct = None
            if run.scheduler is not None and sched_state is not None:
                run.scheduler.load_state_dict(sched_state)
        # Generator states are CPU byte tensors whatever the generator's device; map_location
        # put them on the population's device with everything else.
        for g, s in zip(self.data_gens, state["data_gens"]):
            g.set_state(s.cpu())
        for g, s in zip(self.mask_gens, state["mask_gens"]):
            g.set_state(s.cpu())
        self.rng_state = state["rng"].cpu()
        for es, s in zip(self.stoppers, state["stoppers"]):
            if es is not None and s is not None:
                es.load_state_dict(s)
        self.status = list(state["status"])
        self.frozen = {int(i): {k: t.to(self.device) for k, t in w.items()} for i, w in state["frozen"].items()}
        self.history = [list(h) for h in state["history"]]
        self.seconds = float(state["seconds"])

    def to_bytes(self) -> bytes:
        """:meth:`state_dict` serialized with ``torch.save``."""
        buf = io.BytesIO()
        torch.save(self.state_dict(), buf)
        return buf.getvalue()

    def load_bytes(self, blob: bytes) -> None:
        """Restore from :meth:`to_bytes` (``torch.load(weights_only=True)``)."""
        state = torch.load(io.BytesIO(blob), map_location=self.device, weights_only=True)
        self.load_state_dict(state)


    def final_bytes(self) -> bytes:
        """Every member's final weights (:meth:`final_weights`), stacked, serialized.

        What the test split needs once the population is done: a fraction of :meth:`to_bytes`
        (no optimizer state, generators, copies or history).
        """
        finals = [self.final_weights(i) for i in range(self.k)]
        stacked = {n: torch.stack([f[n] for f in finals]).cpu() for n in finals[0]}
        buf = io.BytesIO()
        torch.save({"format": _FINALS_FORMAT, "members": [[m.key, m.seed] for m in self.members],
                    "weights": stacked}, buf)
        return buf.getvalue()

    def load_final_bytes(self, blob: bytes) -> None:
        """Take the final weights of :meth:`final_bytes` (for :meth:`evaluate_members` only).

        The population cannot train on from them: its optimizer state and schedule are not in
        the blob.
        """
        state = torch.load(io.BytesIO(blob), map_location=self.device, weights_only=True)
        if not isinstance(state, dict) or state.get("format") != _FINALS_FORMAT:
            raise ConfigError("not a droplab population's final weights")
        if [list(x) for x in state["members"]] != [[m.key, m.seed] for m in self.members]:
            raise ConfigError("the final weights are of a different population (members differ)")
        self.frozen = {i: {n: t[i] for n, t in state["weights"].items()} for i in range(self.k)}


def _max_norm_(w: torch.Tensor, c: float, dims: tuple[int, ...]) -> None:
    """Max-norm per unit on a stacked weight (droplab.regularize's rule, member axis kept)."""
    from droplab.regularize import clip_unit_norms_

    clip_unit_norms_(w, c, dims)


def _clip_per_member(grads: dict[str, torch.Tensor], max_norm: float) -> None:
    """``clip_grad_norm_`` per member: each member's global gradient norm is clipped alone."""
    sq = None
    for g in grads.values():
        s = g.pow(2).flatten(1).sum(1)
        sq = s if sq is None else sq + s
    coef = (max_norm / (sq.sqrt() + 1e-6)).clamp_(max=1.0)
    for g in grads.values():
        g.mul_(coef.view(-1, *([1] * (g.dim() - 1))))


def make_population(
    make_net: Callable[[], _Net],
    members: Sequence[Member],
    data: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    task: str,
    *,
    device: torch.device | str = "cpu",
) -> tuple[Population | None, str]:
    """The population of ``members``, or ``(None, reason)`` when they must train one by one.

    The one place that decides whether a set of runs can be vectorized (used by the sweep
    engine and the reproduction suite). A :class:`ModuleNet` population first takes one
    training step and one prediction on two examples (on copies), so that a model torch.func
    cannot vectorize is found before training, not in the middle of it.

    Args:
        make_net: builds the network (:class:`MLPNet` or :class:`ModuleNet`) of ``members``;
            it may raise :class:`Unstackable`.
        members, data, task, device: as for :class:`Population`.

    Returns:
        ``(population, "")``, or ``(None, reason)`` with a reason to show the user.

    Raises:
        ConfigError, DataError: bad configurations or data are the user's to fix, never a
            reason to fall back.
    """
    try:
        pop = Population(make_net(), members, data, task, device=device)
        if isinstance(pop.net, ModuleNet):
            _probe(pop)
        return pop, ""
    except Unstackable as exc:
        return None, str(exc)
    except (ConfigError, DataError):
        raise
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None, f"torch.func cannot vectorize this model ({type(exc).__name__}: {first[:160]})"


def _probe(pop: Population) -> None:
    """One vmapped step on two examples (on copies), so that failures surface now."""
    P = {n: t.clone() for n, t in pop.params.items()}
    B = {n: t.clone() for n, t in pop.buffers.items()}
    idx = torch.arange(min(2, pop.n), device=pop.device).expand(pop.k, -1)
    with torch.random.fork_rng(devices=[]):
        pop.net.train_step(P, B, pop.x[idx], pop.y[idx], None, pop.task)
        if len(pop.xv):
            pop.net.predict(P, B, pop.xv[:2])
        else:
            pop.net.predict(P, B, pop.x[:2])
