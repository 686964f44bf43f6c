"""Apply dropout-rate schedules during training: :class:`DropoutScheduler`.

A :class:`~droplab.nn.schedule.RateSchedule` says what a layer's rate is after ``t`` epochs or
steps; this callback makes each scheduled layer's ``p`` that value before every epoch (epoch
schedules) and every optimizer step (step schedules). :class:`~droplab.train.Trainer` adds one
by itself when the model is a built :class:`~droplab.models.SpecModel` whose spec schedules a
rate (``DropoutSpec.schedule``), so ``droplab train --dropout hidden=0.1:early@5`` needs nothing
else. For other models, pass one with a table ``{submodule name: schedule}``.

After training the layers keep the rate of the last step (``early`` ends at 0): the model is
evaluated with the regime it was last trained in (this matters for ``classic`` dropout, which
scales by ``1 - p`` at evaluation).

Example::

    net = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), dn.Dropout(0.3), nn.Linear(64, 3))
    Trainer(net, TrainConfig(epochs=10), [DropoutScheduler({"2": "early@3"})]).fit((x, y))
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from droplab.errors import ConfigError
from droplab.nn.schedule import RateSchedule
from droplab.train.callbacks import Callback

__all__ = ["DropoutScheduler", "scheduled_layers", "apply_schedules"]

Target = tuple[nn.Module, float, RateSchedule]


def scheduled_layers(model: nn.Module) -> list[Target]:
    """The ``(layer, base rate, schedule)`` of every scheduled layer of a built SpecModel.

    Empty for other models and for specs without time schedules.
    """
    placements = getattr(model, "_placements", None)
    base = getattr(model, "_base_rates", None)
    spec = getattr(model, "spec", None)
    if placements is None or base is None or spec is None:
        return []
    out: list[Target] = []
    for (label, module), p in zip(placements, base):
        d = spec.dropout.get(label.split("[")[0])
        schedule = None if d is None else d.time_schedule
        if schedule is not None and p is not None:
            out.append((module, float(p), schedule))
    return out


def _named_targets(model: nn.Module, table: Mapping[str, Any]) -> list[Target]:
    modules = dict(model.named_modules())
    out: list[Target] = []
    for name, text in table.items():
        if name not in modules:
            raise ConfigError(
                f"DropoutScheduler: the model has no submodule {name!r}; it has "
                f"{', '.join(n for n, m in modules.items() if hasattr(m, 'p') and n) or 'none with a rate p'}"
            )
        module = modules[name]
        p = getattr(module, "p", None)
        if not isinstance(p, float) or isinstance(getattr(type(module), "p", None), property):
            raise ConfigError(
                f"DropoutScheduler: submodule {name!r} ({type(module).__name__}) has no fixed "
                f"rate p to schedule"
            )
        out.append((module, p, RateSchedule.parse(text)))
    return out


def apply_schedules(targets: list[Target], epoch: int, step: int) -> None:
    """Set each layer's ``p`` to its schedule's rate after ``epoch`` epochs / ``step`` steps."""
    for module, p, schedule in targets:
        module.p = schedule.rate(p, step if schedule.unit == "step" else epoch)


class DropoutScheduler(Callback):
    """Make scheduled dropout rates follow their schedules, epoch by epoch and step by step.

    Args:
        schedules: ``None`` (default): the schedules of a built SpecModel's spec. Otherwise a
            table ``{submodule name: schedule}`` (a :class:`RateSchedule` or its text, e.g.
            ``"late@5"``); each layer's rate at fit start is the ``p`` the schedule scales.

    ``t`` counts completed epochs before each epoch and optimizer steps before each step (from
    0); the step count is saved in checkpoints, so a resumed run sees the same rates.
    """

    def __init__(self, schedules: Mapping[str, Any] | None = None) -> None:
        if schedules is not None and not isinstance(schedules, Mapping):
            raise ConfigError(
                f"schedules must be a table {{submodule name: schedule}}, got {schedules!r}"
            )
        self.schedules = None if schedules is None else dict(schedules)
        if self.schedules is not None:
            for text in self.schedules.values():
                RateSchedule.parse(text)
        self.targets_: list[Target] = []
        self.steps_ = 0
        self._per_step = False

    def on_fit_start(self, trainer: Any, **kwargs: Any) -> None:
        if self.schedules is None:
            self.targets_ = scheduled_layers(trainer.model)
        elif not self.targets_:  # keep the base rates of a first fit on a second one
            self.targets_ = _named_targets(trainer.model, self.schedules)
        self.steps_ = 0
        self._per_step = any(s.unit == "step" for _, _, s in self.targets_)

    def on_epoch_start(self, trainer: Any, *, epoch: int, **kwargs: Any) -> None:
        apply_schedules(self.targets_, epoch - 1, self.steps_)

    def on_batch_end(self, trainer: Any, **kwargs: Any) -> None:
        self.steps_ += 1
        if self._per_step:
            apply_schedules(self.targets_, trainer.epoch, self.steps_)

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps_}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps_ = int(state["steps"])

    def __repr__(self) -> str:
        return f"DropoutScheduler({self.schedules!r})" if self.schedules else "DropoutScheduler()"
