"""Early stopping: patience (Keras/skorch style) and Prechelt's GL, PQ and UP criteria.

Prechelt, L. (1998). "Early Stopping -- but when?" In *Neural Networks: Tricks of the Trade*,
LNCS 1524, 55-69. Definitions implemented exactly (E_va: validation error, E_tr: training error
*as trained*, i.e. the mean training loss with dropout on, averaged over the epoch's batches;
a training strip is k consecutive epochs, strips end at epochs k, 2k, ...):

* E_opt(t) = min_{t' <= t} E_va(t')
* generalization loss GL(t) = 100 * (E_va(t) / E_opt(t) - 1); GL_alpha stops after the first epoch
  with GL(t) > alpha.
* training progress P_k(t) = 1000 * (sum_{t'=t-k+1..t} E_tr(t') / (k * min_{t'=t-k+1..t} E_tr(t')) - 1);
  PQ_alpha stops after the first strip end with GL(t) / P_k(t) > alpha.
* UP_s stops after the strip end t at which the validation error has risen at s successive
  strip ends: E_va(t) > E_va(t-k), E_va(t-k) > E_va(t-2k), ... (s comparisons). The first
  strip end has no predecessor, so UP_s cannot stop before epoch (s+1)*k.

Prechelt found the slower criteria (larger alpha or s) to generalize about 4% better for about
4 times the training; the defaults here are the slowest of each class he studied (GL_5, PQ_3,
UP_4). His extra safeguard (also stop when P_k < 0.1 or after 3000 epochs) is not included:
``TrainConfig.epochs`` is the budget.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from droplab._checks import (
    check_choice,
    check_nonneg_float,
    check_nonneg_int,
    check_positive_float,
    check_positive_int,
    did_you_mean,
)
from droplab.errors import ConfigError
from droplab.train.callbacks import Callback

__all__ = ["EarlyStopping", "CRITERIA", "DEFAULT_ALPHA", "DEFAULT_S"]

CRITERIA = ("patience", "gl", "pq", "up")
DEFAULT_ALPHA = {"gl": 5.0, "pq": 3.0}
DEFAULT_S = 4

_MAX_NAMES = ("acc", "accuracy", "auc", "r2", "f1", "precision", "recall")
_MIN_NAMES = ("loss", "mse", "rmse", "mae", "error", "nll", "ece")


def _infer_mode(monitor: str) -> str:
    name = monitor.rsplit("_", 1)[-1]
    if name in _MAX_NAMES:
        return "max"
    if name in _MIN_NAMES:
        return "min"
    raise ConfigError(
        f"cannot tell whether {monitor!r} should go down or up; pass mode='min' or mode='max'"
    )


class EarlyStopping(Callback):
    """Stop training when a monitored metric stops improving, and restore the best weights.

    Implements the patience rule of Keras/skorch and the three criteria of Prechelt (1998),
    "Early Stopping -- but when?" (see the module docstring for the exact formulas). The best
    weights (best monitored value; for GL/PQ/UP the epoch of E_opt) are restored at the end of
    training, also when training ends without an early stop (``restore_best_weights=True``).

    Epochs ``1..start_from_epoch`` are ignored entirely (no best, no strips; strips count from the
    first monitored epoch). A non-finite monitored value stops with reason ``"diverged"``
    (``stop_on_nonfinite``), as does crossing ``divergence_threshold`` (above it in ``min`` mode,
    below it in ``max`` mode).

    Args:
        monitor: history key to watch. Default ``"val_loss"``.
        mode: ``"min"``, ``"max"`` or ``"auto"`` (from the name: ``*_loss`` min, ``*_acc`` max).
            GL/PQ/UP need an error, i.e. ``min``. Default ``"auto"``.
        min_delta: smallest change that counts as an improvement (patience only). Default 0.
        min_delta_mode: ``"absolute"`` (best -/+ min_delta) or ``"relative"``
            (best -/+ min_delta * abs(best)). Default ``"absolute"``.
        patience: epochs without improvement before stopping (patience only). Default 10.
        baseline: the patience counter only resets on epochs that also beat this value
            (patience only). Default ``None``.
        start_from_epoch: number of warm-up epochs not monitored. Default 0.
        restore_best_weights: load the best weights at the end of training. Default ``True``.
        stop_on_nonfinite: stop (``"diverged"``) when the monitored value is NaN/inf. Default True.
        divergence_threshold: stop (``"diverged"``) when the value is worse than this. Default None.
        criterion: ``"patience"``, ``"gl"``, ``"pq"`` or ``"up"``. Default ``"patience"``.
        alpha: threshold of GL (percent) and PQ. Default 5.0 for GL, 3.0 for PQ.
        strip_length: Prechelt's k, epochs per strip (PQ and UP). Default 5.
        s: number of successive strip-end rises for UP. Default 4.
        train_monitor: history key of E_tr for PQ. Default ``"train_loss"`` (as trained).

    Example:
        >>> es = EarlyStopping(criterion="gl", alpha=2.0)
        >>> es = EarlyStopping(monitor="val_acc", patience=5, min_delta=0.001)
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        mode: str = "auto",
        min_delta: float = 0.0,
        min_delta_mode: str = "absolute",
        patience: int = 10,
        baseline: float | None = None,
        start_from_epoch: int = 0,
        restore_best_weights: bool = True,
        stop_on_nonfinite: bool = True,
        divergence_threshold: float | None = None,
        criterion: str = "patience",
        alpha: float | None = None,
        strip_length: int = 5,
        s: int | None = None,
        train_monitor: str = "train_loss",
    ) -> None:
        if not isinstance(monitor, str) or not monitor:
            raise ConfigError(f"monitor must be a history key (a string), got {monitor!r}")
        self.monitor = monitor
        check_choice("mode", mode, ("auto", "min", "max"))
        self.mode = _infer_mode(monitor) if mode == "auto" else mode
        self.min_delta = check_nonneg_float("min_delta", min_delta)
        self.min_delta_mode = check_choice(
            "min_delta_mode", min_delta_mode, ("absolute", "relative")
        )
        self.patience = check_nonneg_int("patience", patience)
        if baseline is not None and (
            isinstance(baseline, bool)
            or not isinstance(baseline, (int, float))
            or not math.isfinite(baseline)
        ):
            raise ConfigError(f"baseline must be a finite number or None, got {baseline!r}")
        self.baseline = None if baseline is None else float(baseline)
        self.start_from_epoch = check_nonneg_int("start_from_epoch", start_from_epoch)
        for name, flag in (
            ("restore_best_weights", restore_best_weights),
            ("stop_on_nonfinite", stop_on_nonfinite),
        ):
            if not isinstance(flag, bool):
                raise ConfigError(f"{name} must be True or False, got {flag!r}")
        self.restore_best_weights = restore_best_weights
        self.stop_on_nonfinite = stop_on_nonfinite
        if divergence_threshold is not None and (
            isinstance(divergence_threshold, bool)
            or not isinstance(divergence_threshold, (int, float))
            or math.isnan(divergence_threshold)
        ):
            raise ConfigError(
                f"divergence_threshold must be a number or None, got {divergence_threshold!r}"
            )
        self.divergence_threshold = (
            None if divergence_threshold is None else float(divergence_threshold)
        )
        self.criterion = check_choice("criterion", criterion, CRITERIA)
        self.strip_length = check_positive_int("strip_length", strip_length)
        if not isinstance(train_monitor, str) or not train_monitor:
            raise ConfigError(
                f"train_monitor must be a history key (a string), got {train_monitor!r}"
            )
        self.train_monitor = train_monitor

        if criterion == "patience":
            if alpha is not None:
                raise ConfigError("alpha applies to criterion 'gl' or 'pq', not 'patience'")
            if s is not None:
                raise ConfigError("s applies to criterion 'up', not 'patience'")
            self.alpha = None
            self.s = None
        else:
            # Prechelt's criteria are defined on errors (lower is better) with no tolerance knobs.
            if self.mode != "min":
                raise ConfigError(
                    f"criterion {criterion!r} (Prechelt 1998) needs an error to minimize; "
                    f"monitor {monitor!r} is in mode {self.mode!r}"
                )
            if self.min_delta != 0.0 or self.baseline is not None:
                raise ConfigError(
                    f"min_delta and baseline apply to criterion 'patience', not {criterion!r}"
                )
            if criterion == "up":
                if alpha is not None:
                    raise ConfigError("alpha applies to criterion 'gl' or 'pq', not 'up'")
                self.alpha = None
                self.s = DEFAULT_S if s is None else check_positive_int("s", s)
            else:
                if s is not None:
                    raise ConfigError(f"s applies to criterion 'up', not {criterion!r}")
                self.alpha = (
                    DEFAULT_ALPHA[criterion]
                    if alpha is None
                    else check_positive_float("alpha", alpha)
                )
                self.s = None
        self._reset()

    # -- learned state -------------------------------------------------------------------------
    def _reset(self) -> None:
        self.best_: float | None = None  # best value (E_opt for GL/PQ/UP)
        self.best_epoch_: int | None = None
        self.best_state_: dict[str, torch.Tensor] | None = None
        self.wait_ = 0  # patience: monitored epochs since the last good one
        self.seen_ = 0  # monitored epochs (strip position)
        self.strip_: list[float] = []  # E_tr over the current strip (PQ)
        self.last_strip_value_: float | None = None  # E_va at the previous strip end (UP)
        self.rises_ = 0  # successive strip-end rises (UP)
        self.gl_: float | None = None
        self.pk_: float | None = None
        self.stopped_epoch_: int | None = None
        self.stop_reason_: str | None = None
        self.restored_ = False

    _STATE = (
        "best_",
        "best_epoch_",
        "best_state_",
        "wait_",
        "seen_",
        "strip_",
        "last_strip_value_",
        "rises_",
        "gl_",
        "pk_",
        "stopped_epoch_",
        "stop_reason_",
        "restored_",
    )

    def state_dict(self) -> dict[str, Any]:
        """Everything learned so far, including the best weights (tensors and plain values)."""
        state = {name: getattr(self, name) for name in self._STATE}
        state["strip_"] = list(self.strip_)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (all keys are required)."""
        missing = [name for name in self._STATE if name not in state]
        if missing:
            raise ConfigError(f"EarlyStopping state lacks {', '.join(missing)}")
        for name in self._STATE:
            setattr(self, name, state[name])
        self.strip_ = list(self.strip_)

    # -- comparisons ---------------------------------------------------------------------------
    def _delta(self, reference: float) -> float:
        return (
            self.min_delta * abs(reference) if self.min_delta_mode == "relative" else self.min_delta
        )

    def _better(self, value: float, reference: float | None) -> bool:
        """True if ``value`` improves on ``reference`` by more than the tolerance."""
        if reference is None:
            return True
        if self.mode == "min":
            return value < reference - self._delta(reference)
        return value > reference + self._delta(reference)

    def _read(self, logs: dict[str, Any], key: str) -> float:
        if key not in logs:
            raise ConfigError(
                f"EarlyStopping monitors {key!r}, which this run does not record"
                f"{did_you_mean(key, logs)}; recorded: {', '.join(sorted(logs))}"
            )
        return float(logs[key])

    def _stop(self, trainer: Any, epoch: int, reason: str) -> None:
        self.stopped_epoch_ = epoch
        self.stop_reason_ = reason
        trainer.should_stop = True
        trainer.stop_reason = reason

    def _save_best(self, trainer: Any, value: float, epoch: int) -> None:
        self.best_ = value
        self.best_epoch_ = epoch
        if (
            self.restore_best_weights
            and trainer is not None
            and getattr(trainer, "model", None) is not None
        ):
            self.best_state_ = {
                k: v.detach().clone() for k, v in trainer.model.state_dict().items()
            }

    # -- hooks ---------------------------------------------------------------------------------
    def on_fit_start(self, trainer: Any, **kwargs: Any) -> None:
        """Forget everything learned in a previous fit."""
        self._reset()

    def on_epoch_end(
        self, trainer: Any, *, epoch: int, logs: dict[str, Any], **kwargs: Any
    ) -> None:
        """Read the monitored value(s) from ``logs``, update the best, and stop if due."""
        if epoch <= self.start_from_epoch:
            return
        value = self._read(logs, self.monitor)
        if not math.isfinite(value):
            if self.stop_on_nonfinite:
                self._stop(trainer, epoch, "diverged")
            return
        if self.divergence_threshold is not None:
            worse = (
                value > self.divergence_threshold
                if self.mode == "min"
                else value < self.divergence_threshold
            )
            if worse:
                self._stop(trainer, epoch, "diverged")
                return
        self.seen_ += 1
        if self.criterion == "patience":
            self._patience_step(trainer, epoch, value)
        else:
            self._prechelt_step(trainer, epoch, value, logs)

    def _patience_step(self, trainer: Any, epoch: int, value: float) -> None:
        improved = self._better(value, self.best_)
        if improved:
            self._save_best(trainer, value, epoch)
        if improved and (self.baseline is None or self._better(value, self.baseline)):
            self.wait_ = 0
        else:
            self.wait_ += 1
            if self.wait_ >= self.patience:
                self._stop(trainer, epoch, "early_stopping")

    def _prechelt_step(self, trainer: Any, epoch: int, value: float, logs: dict[str, Any]) -> None:
        if value < 0:
            raise ConfigError(
                f"criterion {self.criterion!r} (Prechelt 1998) needs a non-negative error; "
                f"{self.monitor} = {value!r} at epoch {epoch}"
            )
        if self.best_ is None or value < self.best_:
            self._save_best(trainer, value, epoch)
        e_opt = self.best_
        if e_opt > 0:
            self.gl_ = 100.0 * (value / e_opt - 1.0)
        else:  # E_opt = 0: any positive error is an infinite relative loss
            self.gl_ = math.inf if value > 0 else 0.0
        k = self.strip_length
        if self.criterion == "pq":
            train_value = self._read(logs, self.train_monitor)
            if not math.isfinite(train_value) or train_value < 0:
                if not math.isfinite(train_value) and self.stop_on_nonfinite:
                    self._stop(trainer, epoch, "diverged")
                    return
                raise ConfigError(
                    f"criterion 'pq' needs a non-negative training error; "
                    f"{self.train_monitor} = {train_value!r} at epoch {epoch}"
                )
            self.strip_.append(train_value)
            del self.strip_[:-k]
        strip_end = self.seen_ % k == 0
        if self.criterion == "gl":
            if self.gl_ > self.alpha:
                self._stop(trainer, epoch, "early_stopping")
        elif self.criterion == "pq":
            if strip_end:
                total, low = sum(self.strip_), min(self.strip_)
                if low > 0:
                    self.pk_ = 1000.0 * (total / (k * low) - 1.0)
                else:
                    self.pk_ = math.inf if total > 0 else 0.0
                if self.pk_ > 0:
                    quotient = self.gl_ / self.pk_
                else:  # no training progress at all: any generalization loss stops
                    quotient = math.inf if self.gl_ > 0 else 0.0
                if quotient > self.alpha:
                    self._stop(trainer, epoch, "early_stopping")
        elif strip_end:  # "up"
            if self.last_strip_value_ is not None:
                self.rises_ = self.rises_ + 1 if value > self.last_strip_value_ else 0
            self.last_strip_value_ = value
            if self.rises_ >= self.s:
                self._stop(trainer, epoch, "early_stopping")

    def on_fit_end(self, trainer: Any, **kwargs: Any) -> None:
        """Load the best weights into ``trainer.model`` (when ``restore_best_weights``)."""
        if self.restore_best_weights and self.best_state_ is not None:
            trainer.model.load_state_dict(self.best_state_)
            self.restored_ = True

    def __repr__(self) -> str:
        parts = [
            f"monitor={self.monitor!r}",
            f"mode={self.mode!r}",
            f"criterion={self.criterion!r}",
        ]
        if self.criterion == "patience":
            parts += [f"patience={self.patience}", f"min_delta={self.min_delta}"]
            if self.min_delta_mode != "absolute":
                parts.append(f"min_delta_mode={self.min_delta_mode!r}")
            if self.baseline is not None:
                parts.append(f"baseline={self.baseline}")
        elif self.criterion == "up":
            parts += [f"strip_length={self.strip_length}", f"s={self.s}"]
        else:
            parts.append(f"alpha={self.alpha}")
            if self.criterion == "pq":
                parts.append(f"strip_length={self.strip_length}")
        if self.start_from_epoch:
            parts.append(f"start_from_epoch={self.start_from_epoch}")
        if self.divergence_threshold is not None:
            parts.append(f"divergence_threshold={self.divergence_threshold}")
        parts.append(f"restore_best_weights={self.restore_best_weights}")
        return f"EarlyStopping({', '.join(parts)})"
