"""Callbacks for :class:`droplab.train.Trainer`: the base class, a progress bar, checkpoints.

A callback is an object with no-op hooks that all take ``(trainer, **kwargs)``; the trainer calls
them by name (skorch, Keras). A callback stops training by setting ``trainer.should_stop = True``
(and, if it wants a reason other than ``"early_stopping"``, ``trainer.stop_reason``); it never
raises ``KeyboardInterrupt`` to do so -- skorch's ``EarlyStopping`` does, which swallows a real
Ctrl-C. State learned during training ends in ``_`` and is reset in ``on_fit_start``; a callback
with such state returns it from :meth:`Callback.state_dict` so that checkpoints can resume it.

Hooks and their keyword arguments:

=================  ==========================================================================
``on_fit_start``   (none)
``on_epoch_start`` ``epoch`` (1-based number of the epoch about to run)
``on_batch_end``   ``batch`` (0-based index in the epoch), ``loss`` (detached 0-d tensor; call
                   ``.item()`` only if you need it -- it synchronizes a GPU)
``on_epoch_end``   ``epoch``, ``logs`` (the history row just appended, a dict of floats)
``on_fit_end``     ``stop_reason``
=================  ==========================================================================

``on_batch_end`` is called only for callbacks that override it, so that the hot loop pays nothing
for the common case.
"""

from __future__ import annotations

import math
import os
from typing import Any

from droplab._checks import check_positive_int
from droplab.errors import ConfigError

__all__ = ["Callback", "ProgressBar", "Checkpoint"]


class Callback:
    """Base class with no-op hooks; subclass it and override the hooks you need.

    Every hook takes ``(trainer, **kwargs)`` (see the module docstring for the keywords) so that
    new keywords never break old callbacks.

    Example:
        >>> class PrintValLoss(Callback):
        ...     def on_epoch_end(self, trainer, *, logs, **kwargs):
        ...         print(logs.get("val_loss"))
    """

    def on_fit_start(self, trainer: Any, **kwargs: Any) -> None:
        """Called once before the first epoch; reset learned state (attributes ending in ``_``)."""

    def on_epoch_start(self, trainer: Any, **kwargs: Any) -> None:
        """Called before each epoch with ``epoch``."""

    def on_batch_end(self, trainer: Any, **kwargs: Any) -> None:
        """Called after each optimizer step with ``batch`` and ``loss`` (only if overridden)."""

    def on_epoch_end(self, trainer: Any, **kwargs: Any) -> None:
        """Called after each epoch with ``epoch`` and ``logs`` (the new history row)."""

    def on_fit_end(self, trainer: Any, **kwargs: Any) -> None:
        """Called once after the last epoch with ``stop_reason``, before the final evaluation."""

    def state_dict(self) -> dict[str, Any]:
        """Learned state to store in a checkpoint: tensors and plain Python values only."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (called after ``on_fit_start`` on resume)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.4g}"
    return str(value)


class ProgressBar(Callback):
    """A rich progress bar over epochs with live metrics, written to stderr.

    It is off when stderr is not a terminal (pipes, CI, tests) or when ``quiet=True``, so that
    machine-readable output on stdout stays clean. It updates once per epoch and never per step,
    so it costs nothing in the training loop.

    Args:
        metrics: history keys shown after the bar, when present (default: losses and accuracy).
        quiet: never show anything. Default ``False``.
        console: a ``rich.console.Console`` to draw on (default: one on stderr).

    Example:
        >>> from droplab.train import Trainer, TrainConfig
        >>> trainer = Trainer(model, TrainConfig(epochs=5), callbacks=[ProgressBar()])  # doctest: +SKIP
    """

    def __init__(
        self,
        metrics: tuple[str, ...] = ("train_loss", "val_loss", "val_acc", "val_rmse"),
        *,
        quiet: bool = False,
        console: Any = None,
    ) -> None:
        self.metrics = tuple(metrics)
        self.quiet = quiet
        self.console = console
        self.progress_: Any = None
        self.task_: Any = None

    @property
    def enabled(self) -> bool:
        """Whether the bar will draw: not quiet and the console is an interactive terminal."""
        if self.quiet:
            return False
        return bool(self._console().is_terminal)

    def _console(self) -> Any:
        if self.console is None:
            from rich.console import Console

            self.console = Console(stderr=True)
        return self.console

    def on_fit_start(self, trainer: Any, **kwargs: Any) -> None:
        """Start the bar (when enabled) at the trainer's current epoch (non-zero on resume)."""
        self.progress_ = None
        self.task_ = None
        if not self.enabled:
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress_ = Progress(
            TextColumn("[bold]epoch"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[metrics]}"),
            console=self._console(),
            transient=False,
        )
        self.progress_.start()
        self.task_ = self.progress_.add_task(
            "train", total=trainer.config.epochs, completed=trainer.epoch, metrics=""
        )

    def on_epoch_end(
        self, trainer: Any, *, epoch: int, logs: dict[str, Any], **kwargs: Any
    ) -> None:
        """Advance the bar and show the chosen metrics of the new history row."""
        if self.progress_ is None:
            return
        shown = "  ".join(f"{k}={_fmt(logs[k])}" for k in self.metrics if k in logs)
        self.progress_.update(self.task_, completed=epoch, metrics=shown)

    def on_fit_end(self, trainer: Any, **kwargs: Any) -> None:
        """Stop the bar, leaving its last state on screen."""
        if self.progress_ is not None:
            self.progress_.stop()
        self.progress_ = None
        self.task_ = None

    def __repr__(self) -> str:
        return f"ProgressBar(metrics={self.metrics!r}, quiet={self.quiet})"


class Checkpoint(Callback):
    """Save a resumable checkpoint every ``every`` epochs (see :meth:`Trainer.save_checkpoint`).

    A checkpoint holds the model, optimizer, scheduler, every callback's ``state_dict()``, the
    history, the epoch and the RNG states (torch's global RNG inside the trainer's forked RNG,
    the data-order generator), so that ``Trainer.fit(..., resume=path)`` continues bitwise
    identically to an uninterrupted run. Files are written atomically (temporary file, then
    ``os.replace``). Put this callback last so that it sees the other callbacks' state after
    their ``on_epoch_end``; the trainer does so for the one it builds from ``TrainConfig``.

    Args:
        dirname: folder for the files (created if missing).
        every: save after epochs ``every, 2*every, ...``. Default 1.
        filename: file name, formatted with ``epoch``. Default ``"last.pt"`` (overwritten);
            use e.g. ``"epoch{epoch:04d}.pt"`` to keep one file per save.

    Example:
        >>> cb = Checkpoint("runs/a", every=5, filename="epoch{epoch:04d}.pt")
    """

    def __init__(
        self, dirname: str | os.PathLike[str], every: int = 1, filename: str = "last.pt"
    ) -> None:
        self.dirname = os.fspath(dirname)
        self.every = check_positive_int("every", every)
        if not isinstance(filename, str) or not filename:
            raise ConfigError(f"filename must be a non-empty string, got {filename!r}")
        try:
            filename.format(epoch=1)
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(
                f"filename may only use the field {{epoch}}, got {filename!r} ({exc})"
            ) from None
        self.filename = filename
        self.last_path_: str | None = None

    def path_for(self, epoch: int) -> str:
        """The file written after ``epoch``."""
        return os.path.join(self.dirname, self.filename.format(epoch=epoch))

    def on_fit_start(self, trainer: Any, **kwargs: Any) -> None:
        """Create the folder."""
        self.last_path_ = None
        os.makedirs(self.dirname, exist_ok=True)

    def on_epoch_end(self, trainer: Any, *, epoch: int, **kwargs: Any) -> None:
        """Save after every ``every``-th epoch."""
        if epoch % self.every == 0:
            path = self.path_for(epoch)
            trainer.save_checkpoint(path)
            self.last_path_ = path

    def __repr__(self) -> str:
        return (
            f"Checkpoint(dirname={self.dirname!r}, every={self.every}, filename={self.filename!r})"
        )
