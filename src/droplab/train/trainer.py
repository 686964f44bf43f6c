"""The training loop: :class:`Trainer`, :class:`FitResult` and the :func:`fit` shortcut.

One loop for every model and dataset in droplab. Data lives in memory as tensors, so batches
are drawn by an index permutation from the trainer's own seeded ``torch.Generator`` instead of a
``DataLoader`` (no worker processes, no collate: faster for in-memory tensors, and the order is
reproducible from ``config.seed`` alone).

Reproducibility. With ``config.seed`` set, the trainer runs the whole fit inside
``torch.random.fork_rng()`` and seeds torch's global RNG there, so that dropout masks drawn from
the global RNG are reproducible while the caller's global RNG is left exactly as it was (the
trainer never reseeds the caller's RNG). Same seed, config, initial weights and machine give a
bitwise-identical history (timing and memory fields aside). Model *initialization* happens
before the trainer sees the model: seed it where the model is built (the CLI does, see
:func:`droplab.train.run.build_run`).

Memory. Each history row has ``peak_mem_mb``: on CUDA the peak of
``torch.cuda.max_memory_allocated`` during the epoch (tensors only, not the caching
allocator's reserve); on CPU the process's peak resident set size so far
(``getrusage(RUSAGE_SELF).ru_maxrss``), a high-water mark of the whole process -- Python,
torch and any earlier work included -- which can only grow and does not isolate one epoch.
``tracemalloc`` would attribute memory precisely but slows training several-fold.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from droplab.data.tasks import score_name
from droplab.errors import ConfigError, DataError, DroplabWarning
from droplab.regularize import l1_penalty, l2_penalty, max_norm_, weight_parameters
from droplab.train.callbacks import Callback, Checkpoint
from droplab.train.rdrop import rdrop_loss
from droplab.train.schedules import DropoutScheduler, scheduled_layers
from droplab.train.config import TrainConfig
from droplab.train.early_stopping import EarlyStopping
from droplab.train.optim import SCHEDULE_STEPS_PER_BATCH, build_optimizer, build_scheduler

__all__ = ["Trainer", "FitResult", "fit", "STOP_REASONS", "TIMING_KEYS", "CHECKPOINT_FORMAT"]

STOP_REASONS = ("completed", "early_stopping", "diverged", "interrupted")
#: History keys that measure the machine rather than the run (excluded from determinism checks).
TIMING_KEYS = ("seconds", "peak_mem_mb")
CHECKPOINT_FORMAT = "droplab-checkpoint-v1"
TASKS = ("classification", "regression")
# One logit, 0/1 targets, BCE with logits (droplab.data.infer_task, droplab.train.metrics).
BINARY = "binary"


@dataclasses.dataclass
class FitResult:
    """What :meth:`Trainer.fit` returns.

    Attributes:
        history: one dict per epoch: ``epoch``, ``train_loss`` (as trained, dropout on, mean
            over the epoch's examples), ``train_eval_loss``/``train_eval_acc`` (or ``_rmse``;
            train split in eval mode, when ``eval_train``), ``val_loss``, ``val_acc`` (or
            ``val_rmse``), ``lr`` (at the start of the epoch), ``seconds``, ``peak_mem_mb``.
        best_epoch: epoch whose weights the model holds when early stopping restored them,
            otherwise the epoch with the lowest ``val_loss`` (``None`` without validation data).
        restored: whether the final weights are the best epoch's (restored by early stopping).
        stop_reason: ``"completed"``, ``"early_stopping"``, ``"diverged"`` or ``"interrupted"``.
        epochs_run: epochs completed (including those before a resume).
        seconds: wall time of this call to ``fit``.
        task: ``"classification"`` or ``"regression"``.
        train, val, test: final metrics (``loss`` and ``acc`` or ``rmse``) of the final weights,
            in eval mode; the test split is evaluated once, here, and never during training.
    """

    history: list[dict[str, Any]]
    best_epoch: int | None
    restored: bool
    stop_reason: str
    epochs_run: int
    seconds: float
    task: str
    train: dict[str, float] | None = None
    val: dict[str, float] | None = None
    test: dict[str, float] | None = None

    def summary(self) -> dict[str, Any]:
        """A flat, JSON-friendly dict (non-finite numbers become ``None``)."""
        out: dict[str, Any] = {
            "best_epoch": self.best_epoch,
            "epochs_run": self.epochs_run,
            "stop_reason": self.stop_reason,
            "seconds": round(self.seconds, 3),
        }
        metric = score_name(self.task)
        for split in ("train", "val", "test"):
            values = getattr(self, split)
            for key in ("loss", metric):
                value = None if values is None else values.get(key)
                if isinstance(value, float) and not math.isfinite(value):
                    value = None
                out[f"{split}_{key}"] = value
        return out


def _overrides(cb: Callback, hook: str) -> bool:
    return getattr(type(cb), hook, None) is not getattr(Callback, hook)


def _concrete_regularizer(model: nn.Module) -> Any:
    """``model.concrete_regularization`` when the model has ConcreteDropout layers, else None.

    Concrete dropout (Gal, Hron & Kendall 2017, arXiv:1705.07832) learns its rate only through a
    regularizer added to the loss, which needs the layer that consumes each dropout's output;
    droplab's built models know it and expose ``concrete_regularization()``. A model with
    ConcreteDropout layers but no such method gets a warning: the rate would not be learned.
    """
    from droplab.nn import ConcreteDropout

    if not any(isinstance(m, ConcreteDropout) for m in model.modules()):
        return None
    method = getattr(model, "concrete_regularization", None)
    if callable(method):
        return method
    warnings.warn(
        "the model has ConcreteDropout layers but no concrete_regularization() method; "
        "their regularizer is not added to the loss, so their rates are not learned properly",
        DroplabWarning,
        stacklevel=4,
    )
    return None


def _peak_rss_mb() -> float:
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return float("nan")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _as_pair(name: str, value: Any) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise DataError(f"{name} must be a pair (x, y) of tensors, got {type(value).__name__}")
    x, y = value
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise DataError(f"{name} must hold tensors, got ({type(x).__name__}, {type(y).__name__})")
    if x.dim() == 0 or y.dim() == 0 or len(x) != len(y):
        raise DataError(
            f"{name}: x and y must have the same number of examples, "
            f"got x of shape {tuple(x.shape)} and y of shape {tuple(y.shape)}"
        )
    if len(x) == 0:
        raise DataError(f"{name} is empty")
    return x, y


class Trainer:
    """Train a model with a :class:`TrainConfig` and callbacks; one loop for all of droplab.

    The loop, per epoch: draw a permutation with the trainer's generator, take batches of
    ``batch_size`` (the last one may be smaller), compute the loss (cross-entropy for
    classification, MSE for regression) plus the ``l1``/``l2`` penalties on weights and, for
    models with concrete dropout, ``model.concrete_regularization()``; step, apply max-norm,
    then evaluate in eval mode, append a history row and call the callbacks. A NaN/inf training
    loss ends the run with ``stop_reason="diverged"`` without raising; Ctrl-C ends it with
    ``"interrupted"``. Both still restore the best weights and evaluate the final model.

    The hot loop is lean: the running loss is accumulated as a tensor (one ``.item()`` per
    epoch), and ``on_batch_end`` is only called on callbacks that override it.

    Callbacks from the config (early stopping, checkpoints) are added around the given ones:
    ``[early stopping] + callbacks + [checkpoint]``. Attributes callbacks may use: ``model``,
    ``config``, ``optimizer``, ``scheduler``, ``device``, ``task``, ``history``, ``epoch``
    (completed epochs), ``should_stop``, ``stop_reason``.

    Args:
        model: the network; moved to the config's device by :meth:`fit`.
        config: a :class:`TrainConfig` (default: ``TrainConfig()``).
        callbacks: extra :class:`~droplab.train.Callback` objects.

    Example:
        >>> net = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Dropout(0.3), nn.Linear(64, 3))
        >>> x, y = torch.randn(500, 20), torch.randint(0, 3, (500,))
        >>> result = Trainer(net, TrainConfig(epochs=2)).fit((x, y), val=(x[:100], y[:100]))
        >>> result.stop_reason
        'completed'
    """

    def __init__(
        self,
        model: nn.Module,
        config: TrainConfig | None = None,
        callbacks: Iterable[Callback] = (),
    ) -> None:
        if not isinstance(model, nn.Module):
            raise ConfigError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        config = TrainConfig() if config is None else config
        if not isinstance(config, TrainConfig):
            raise ConfigError(f"config must be a TrainConfig, got {type(config).__name__}")
        callbacks = list(callbacks)
        for cb in callbacks:
            if not isinstance(cb, Callback):
                raise ConfigError(
                    f"callbacks must be droplab.train.Callback objects, got {type(cb).__name__}"
                )
        if scheduled_layers(model) and not any(isinstance(cb, DropoutScheduler) for cb in callbacks):
            callbacks.insert(0, DropoutScheduler())  # the spec schedules a dropout rate
        self.model = model
        self.config = config
        built_es = config.make_early_stopping()
        self.callbacks: list[Callback] = ([built_es] if built_es else []) + callbacks
        if config.checkpoint_dir is not None:
            self.callbacks.append(Checkpoint(config.checkpoint_dir, every=config.checkpoint_every))
        self.device = config.resolve_device()
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: Any = None
        self.task: str | None = None
        self.history: list[dict[str, Any]] = []
        self.epoch = 0
        self.should_stop = False
        self.stop_reason: str | None = None
        self._data_gen: torch.Generator | None = None

    # -- data --------------------------------------------------------------------------------
    def _unpack(self, data: Any, val: Any, test: Any, task: str | None) -> dict[str, Any]:
        if all(hasattr(data, a) for a in ("x_train", "y_train")):
            if val is not None or test is not None:
                raise ConfigError("pass val/test only with tensors, not with a splits object")
            splits = {"train": (data.x_train, data.y_train)}
            for split in ("val", "test"):
                x, y = getattr(data, f"x_{split}", None), getattr(data, f"y_{split}", None)
                if x is not None and y is not None and len(x) > 0:
                    splits[split] = (x, y)
            task = task or getattr(data, "task", None)
        else:
            splits = {"train": data}
            if val is not None:
                splits["val"] = val
            if test is not None:
                splits["test"] = test
        pairs = {name: _as_pair(name, value) for name, value in splits.items()}
        y_train = pairs["train"][1]
        if task is None:
            task = "regression" if y_train.is_floating_point() else "classification"
        if task not in (*TASKS, BINARY):
            raise ConfigError(
                f"task must be one of 'classification', 'regression', 'binary'; got {task!r}"
            )
        if task == BINARY:
            from droplab.data.tasks import infer_task

            for name, (_, y) in pairs.items():
                try:
                    infer_task(y, task=BINARY)  # 0/1 values, or a DataError saying what came
                except DataError as exc:
                    raise DataError(f"{name}: {exc}") from None
        out = {}
        for name, (x, y) in pairs.items():
            if task == "classification":
                if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool or y.dim() != 1:
                    raise DataError(
                        f"{name}: classification targets must be a 1-D tensor of integer class ids, "
                        f"got dtype {y.dtype} and shape {tuple(y.shape)}"
                    )
                y = y.long()
            else:
                y = y.to(torch.get_default_dtype()).reshape(len(y), -1)
            out[name] = (x.to(self.device), y.to(self.device))
        out["task"] = task
        return out

    def _check_outputs(self, x: torch.Tensor, y: torch.Tensor) -> None:
        # One eval-mode forward on two examples: draws no dropout mask, updates no statistics.
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad():
            out = self.model(x[:2])
        self.model.train(was_training)
        if not isinstance(out, torch.Tensor) or out.dim() != 2:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise DataError(f"the model must return a 2-D tensor (N, outputs), got {shape}")
        if self.task == "classification":
            n_classes = int(y.max()) + 1
            if out.shape[1] < n_classes or int(y.min()) < 0:
                raise DataError(
                    f"labels range over {int(y.min())}..{n_classes - 1} but the model has "
                    f"{out.shape[1]} outputs"
                )
        elif self.task == BINARY and out.shape[1] != 1:
            raise DataError(
                f"a binary task needs a model with one output (a logit), got {out.shape[1]}"
            )
        elif out.shape[1] != y.shape[1]:
            raise DataError(
                f"regression targets have {y.shape[1]} columns but the model has {out.shape[1]} outputs"
            )

    # -- evaluation --------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """Loss and accuracy (classification) or RMSE (regression) in eval mode.

        Batches of ``config.eval_batch_size``, on the trainer's device (the model and each batch
        are moved there); restores the model's train/eval mode afterwards.
        """
        was_training = self.model.training
        self.model.to(self.device).eval()
        total = torch.zeros((), device=self.device, dtype=torch.float64)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        step = self.config.eval_batch_size
        classification = self.task == "classification"
        for start in range(0, len(x), step):
            xb, yb = x[start : start + step].to(self.device), y[start : start + step].to(self.device)
            out = self.model(xb)
            if classification:
                total += F.cross_entropy(out, yb, reduction="sum")
                correct += (out.argmax(dim=1) == yb).sum()
            elif self.task == BINARY:
                total += F.binary_cross_entropy_with_logits(out, yb, reduction="sum")
                correct += ((out > 0) == (yb > 0.5)).sum()
            else:
                total += F.mse_loss(out, yb, reduction="sum") / yb.shape[1]
        self.model.train(was_training)
        loss = total.item() / len(x)
        if classification or self.task == BINARY:
            return {"loss": loss, "acc": correct.item() / len(x)}
        return {"loss": loss, "rmse": math.sqrt(loss) if loss >= 0 else float("nan")}

    # -- checkpoints ---------------------------------------------------------------------------
    def _callback_keys(self) -> list[str]:
        return [f"{i}:{type(cb).__name__}" for i, cb in enumerate(self.callbacks)]

    def save_checkpoint(
        self, path: str | os.PathLike[str], extra: Mapping[str, Any] | None = None
    ) -> None:
        """Save everything needed to resume: model, optimizer, scheduler, callbacks, history, RNG.

        Tensors and plain Python values only, so that it loads with
        ``torch.load(weights_only=True)``. Written atomically (temporary file + ``os.replace``).
        """
        if self.optimizer is None:
            raise ConfigError("save_checkpoint needs a trainer that has started fitting")
        rng: dict[str, Any] = {"torch": torch.get_rng_state(), "data": self._data_gen.get_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        state = {
            "format": CHECKPOINT_FORMAT,
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "callbacks": dict(
                zip(self._callback_keys(), (cb.state_dict() for cb in self.callbacks), strict=True)
            ),
            "history": [dict(row) for row in self.history],
            "rng": rng,
            "should_stop": self.should_stop,
            "stop_reason": self.stop_reason,
            "config": self.config.to_dict(),
            "extra": dict(extra or {}),
        }
        path = os.fspath(path)
        tmp = f"{path}.tmp{os.getpid()}"
        torch.save(state, tmp)
        os.replace(tmp, path)

    def _load_checkpoint(self, path: str | os.PathLike[str]) -> None:
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise ConfigError(f"checkpoint not found: {path}")
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as exc:  # a corrupt or foreign file is the user's problem, not a bug
            raise ConfigError(f"cannot read checkpoint {path}: {exc}") from None
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise ConfigError(f"{path} is not a droplab training checkpoint")
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise ConfigError(
                f"checkpoint {path} does not fit this model/optimizer: {exc}"
            ) from None
        if (state["scheduler"] is None) != (self.scheduler is None):
            raise ConfigError(f"checkpoint {path} was saved with a different lr_schedule")
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        saved = state["callbacks"]
        for key, cb in zip(self._callback_keys(), self.callbacks, strict=True):
            if key in saved:
                cb.load_state_dict(saved[key])
        self.history = [dict(row) for row in state["history"]]
        self.epoch = int(state["epoch"])
        self.should_stop = bool(state["should_stop"])
        self.stop_reason = state["stop_reason"]
        torch.set_rng_state(state["rng"]["torch"].cpu())
        self._data_gen.set_state(state["rng"]["data"].cpu())
        if "cuda" in state["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng"]["cuda"].cpu(), self.device)

    # -- the loop ------------------------------------------------------------------------------
    def fit(
        self,
        data: Any,
        *,
        val: Sequence[torch.Tensor] | None = None,
        test: Sequence[torch.Tensor] | None = None,
        task: str | None = None,
        resume: str | os.PathLike[str] | None = None,
    ) -> FitResult:
        """Train and return a :class:`FitResult`.

        Args:
            data: a splits object with ``x_train, y_train, x_val, y_val, x_test, y_test`` (and
                ``task``), e.g. from :func:`droplab.data.load_dataset`; or a pair ``(x, y)``.
            val: ``(x, y)`` validation pair when ``data`` is a pair. Default None.
            test: ``(x, y)`` test pair, evaluated once at the end. Default None.
            task: ``"classification"``, ``"regression"`` or ``"binary"`` (one logit, 0/1
                targets, BCE with logits, accuracy of ``logit > 0``); default from the splits
                object, or from the dtype of ``y`` (integers: classification).
            resume: path of a checkpoint written by :meth:`save_checkpoint` to continue from.
        """
        seed = self.config.seed
        if seed is None:
            return self._fit(data, val, test, task, resume)
        cuda = self.device.type == "cuda"
        devices = (
            [self.device.index if self.device.index is not None else torch.cuda.current_device()]
            if cuda
            else []
        )
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            return self._fit(data, val, test, task, resume)

    def _fit(self, data: Any, val: Any, test: Any, task: str | None, resume: Any) -> FitResult:
        cfg = self.config
        t_start = time.perf_counter()
        self.model.to(self.device)
        splits = self._unpack(data, val, test, task)
        self.task = splits["task"]
        x, y = splits["train"]
        self._check_outputs(x, y)
        n = len(x)
        steps_per_epoch = math.ceil(n / cfg.batch_size)

        self._data_gen = torch.Generator()
        if cfg.seed is None:
            self._data_gen.seed()
        else:
            self._data_gen.manual_seed(cfg.seed)
        self.optimizer = build_optimizer(self.model, cfg)
        self.scheduler = build_scheduler(self.optimizer, cfg, steps_per_epoch)
        per_batch_schedule = cfg.lr_schedule in SCHEDULE_STEPS_PER_BATCH
        self.history = []
        self.epoch = 0
        self.should_stop = False
        self.stop_reason = None

        for cb in self.callbacks:
            cb.on_fit_start(self)
        if resume is not None:
            self._load_checkpoint(resume)

        model, opt, sched = self.model, self.optimizer, self.scheduler
        batch_cbs = [cb for cb in self.callbacks if _overrides(cb, "on_batch_end")]
        classification = self.task == "classification"
        loss_fn = F.cross_entropy if classification else F.mse_loss
        if self.task == BINARY:
            if cfg.rdrop:
                raise ConfigError("rdrop is for classification and regression, not a binary task")
            loss_fn = F.binary_cross_entropy_with_logits  # targets are (N, 1) floats, as the logit
        # Plain locals: the per-step loop below reads no dataclass attributes.
        l1, l2, clip, max_norm, batch_size = (
            cfg.l1,
            cfg.l2,
            cfg.grad_clip,
            cfg.max_norm,
            cfg.batch_size,
        )
        weights = weight_parameters(model) if l1 > 0 or l2 > 0 else []
        concrete = _concrete_regularizer(model)
        rdrop = cfg.rdrop
        params = [p for p in model.parameters() if p.requires_grad]
        cuda = self.device.type == "cuda"

        reason: str | None = self.stop_reason if self.should_stop else None
        model.train()
        try:
            while reason is None and self.epoch < cfg.epochs:
                epoch = self.epoch + 1
                t_epoch = time.perf_counter()
                if cuda:
                    torch.cuda.reset_peak_memory_stats(self.device)
                for cb in self.callbacks:
                    cb.on_epoch_start(self, epoch=epoch)
                lr = opt.param_groups[0]["lr"]
                running = torch.zeros((), device=self.device)
                perm = torch.randperm(n, generator=self._data_gen).to(self.device)
                for b, idx in enumerate(perm.split(batch_size)):
                    xb, yb = x[idx], y[idx]
                    if rdrop:
                        loss, total = rdrop_loss(model, xb, yb, rdrop, classification=classification, loss_fn=loss_fn)
                    else:
                        loss = loss_fn(model(xb), yb)
                        total = loss
                    if l1 > 0:
                        total = total + l1_penalty(weights, l1)
                    if l2 > 0:
                        total = total + l2_penalty(weights, l2)
                    if concrete is not None:
                        total = total + concrete()
                    opt.zero_grad(set_to_none=True)
                    total.backward()
                    if clip is not None:
                        torch.nn.utils.clip_grad_norm_(params, clip)
                    opt.step()
                    if max_norm is not None:
                        max_norm_(model, max_norm)
                    if per_batch_schedule:
                        sched.step()
                    running.add_(loss.detach(), alpha=len(idx))
                    if batch_cbs:
                        detached = loss.detach()
                        for cb in batch_cbs:
                            cb.on_batch_end(self, batch=b, loss=detached)
                if sched is not None and not per_batch_schedule:
                    sched.step()
                self.epoch = epoch
                train_loss = running.item() / n
                row: dict[str, Any] = {"epoch": epoch, "train_loss": train_loss}
                if not math.isfinite(train_loss):
                    reason = "diverged"
                else:
                    metric = score_name(self.task)
                    if cfg.eval_train:
                        ev = self.evaluate(x, y)
                        row["train_eval_loss"], row[f"train_eval_{metric}"] = ev["loss"], ev[metric]
                    if "val" in splits:
                        ev = self.evaluate(*splits["val"])
                        row["val_loss"], row[f"val_{metric}"] = ev["loss"], ev[metric]
                row["lr"] = lr
                row["seconds"] = time.perf_counter() - t_epoch
                row["peak_mem_mb"] = (
                    torch.cuda.max_memory_allocated(self.device) / 2**20 if cuda else _peak_rss_mb()
                )
                self.history.append(row)
                if reason is not None:
                    break
                for cb in self.callbacks:
                    cb.on_epoch_end(self, epoch=epoch, logs=row)
                if self.should_stop:
                    reason = self.stop_reason or "early_stopping"
                    if reason not in STOP_REASONS:
                        raise ConfigError(
                            f"a callback set stop_reason={reason!r}; use one of {STOP_REASONS}"
                        )
        except KeyboardInterrupt:
            reason = "interrupted"
        self.stop_reason = reason or "completed"
        self.should_stop = self.stop_reason != "completed"

        for cb in self.callbacks:
            cb.on_fit_end(self, stop_reason=self.stop_reason)
        es = next((cb for cb in self.callbacks if isinstance(cb, EarlyStopping)), None)
        restored = bool(es is not None and es.restored_)
        if restored:
            best_epoch = es.best_epoch_
        else:
            vals = [
                (r["val_loss"], r["epoch"])
                for r in self.history
                if math.isfinite(r.get("val_loss", math.nan))
            ]
            best_epoch = min(vals)[1] if vals else None
        finals = {
            name: self.evaluate(*splits[name])
            for name in ("train", "val", "test")
            if name in splits
        }
        return FitResult(
            history=self.history,
            best_epoch=best_epoch,
            restored=restored,
            stop_reason=self.stop_reason,
            epochs_run=self.epoch,
            seconds=time.perf_counter() - t_start,
            task=self.task,
            train=finals.get("train"),
            val=finals.get("val"),
            test=finals.get("test"),
        )


def fit(
    model: nn.Module,
    data: Any,
    config: TrainConfig | None = None,
    *,
    callbacks: Iterable[Callback] = (),
    val: Sequence[torch.Tensor] | None = None,
    test: Sequence[torch.Tensor] | None = None,
    task: str | None = None,
    **overrides: Any,
) -> FitResult:
    """Train ``model`` on ``data`` in one call: ``Trainer(model, config, callbacks).fit(data)``.

    Keyword ``overrides`` replace fields of ``config`` (validated; unknown names raise).

    Example:
        >>> net = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 1))
        >>> x, y = torch.randn(200, 10), torch.randn(200)
        >>> fit(net, (x, y), epochs=2, lr=1e-2).stop_reason
        'completed'
    """
    config = TrainConfig() if config is None else config
    if overrides:
        config = config.replace(**overrides)
    return Trainer(model, config, callbacks).fit(data, val=val, test=test, task=task)
