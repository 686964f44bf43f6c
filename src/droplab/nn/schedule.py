"""Dropout rates over training time and over depth: :class:`RateSchedule` and :func:`depth_rates`.

A schedule scales a layer's configured rate ``p`` by a factor ``f(t)`` in [0, 1], where ``t`` is
the number of completed epochs (``unit="epoch"``, the default) or optimizer steps
(``unit="step"``) before the current one. The kinds:

==============  ===================================================================================
kind            rate at time t
==============  ===================================================================================
``constant``    ``p``
``early@k``     ``p`` while ``t < k``, then 0: dropout in the first k epochs only (Liu et al.,
                "Dropout Reduces Underfitting", ICML 2023, arXiv:2303.01500)
``late@k``      0 while ``t < k``, then ``p`` (Liu et al. 2023)
``linear@k``    ``p * min(t / k, 1)``: a linear ramp from 0 to ``p`` over k
``cosine@k``    ``p * (1 - cos(pi * min(t / k, 1))) / 2``: a cosine ramp from 0 to ``p``
``curriculum@g``  ``1 - theta(t)`` with ``theta(t) = (1 - theta_f) exp(-g t) + theta_f`` and
                ``theta_f = 1 - p``, i.e. ``p * (1 - exp(-g t))``: the retain probability decays
                from 1 towards ``1 - p`` (Morerio et al., "Curriculum Dropout", ICCV 2017,
                arXiv:1703.06229)
==============  ===================================================================================

Every kind is ``p`` times a factor of ``t``, so a schedule composes with per-layer rates. The
depth rule of stochastic depth (Huang et al., "Deep Networks with Stochastic Depth", ECCV 2016,
arXiv:1603.09382), ``p_l = (l / L) p_L`` for block ``l = 1..L``, is :func:`depth_rates`; in a
dropout setting it is the word ``depth`` and may be combined with one time schedule.

The text form, used by the CLI and config files: ``KIND[@VALUE[UNIT]]`` with ``UNIT`` one of
``epoch`` (default) and ``step``: ``early@5``, ``late@300step``, ``cosine@10``,
``curriculum@0.002step``. A dropout setting joins ``depth`` and a time schedule with ``+``
(``depth+early@5``).

Example::

    s = RateSchedule.parse("early@5")
    [s.rate(0.3, t) for t in range(7)]  # [0.3, 0.3, 0.3, 0.3, 0.3, 0.0, 0.0]
    depth_rates(0.3, 3)                 # (0.1, 0.2, 0.3)
"""

from __future__ import annotations

import dataclasses
import math
import re

from droplab._checks import check_choice, check_nonneg_float, check_positive_float
from droplab.errors import ConfigError

__all__ = [
    "SCHEDULES",
    "RateSchedule",
    "depth_rates",
    "parse_schedule_setting",
    "canonical_setting",
    "is_schedule_text",
]

SCHEDULES = ("constant", "early", "late", "linear", "cosine", "curriculum")
_UNITS = ("epoch", "step")
_NEEDS_VALUE = ("early", "late", "linear", "cosine", "curriculum")
_TEXT = re.compile(r"^([a-z]+)(?:@([0-9.eE+-]+?)(epoch|step)?)?$")


@dataclasses.dataclass(frozen=True)
class RateSchedule:
    """How a dropout rate changes over training: a factor in [0, 1] of the configured rate.

    Args:
        kind: one of :data:`SCHEDULES`, default ``"constant"``.
        value: ``k`` (epochs or steps) for ``early``/``late``/``linear``/``cosine``; the decay
            rate ``gamma`` (per unit) for ``curriculum``; unused (0) for ``constant``.
        unit: ``"epoch"`` (default) or ``"step"``: what ``t`` counts.

    Example::

        RateSchedule("linear", 4).rate(0.5, 2)  # 0.25
    """

    kind: str = "constant"
    value: float = 0.0
    unit: str = "epoch"

    def __post_init__(self) -> None:
        check_choice("schedule", self.kind, SCHEDULES)
        check_choice("schedule unit", self.unit, _UNITS)
        if self.kind == "constant":
            value = check_nonneg_float("schedule value", self.value)
        elif self.kind in ("early", "late"):
            value = check_nonneg_float(f"{self.kind} schedule value", self.value)
        else:
            value = check_positive_float(f"{self.kind} schedule value", self.value)
        if self.kind in ("early", "late", "linear", "cosine") and value != int(value):
            raise ConfigError(
                f"{self.kind} schedule takes a whole number of {self.unit}s, got {self.value!r}"
            )
        object.__setattr__(self, "value", float(value))

    def factor(self, t: int) -> float:
        """The factor of ``p`` after ``t`` completed epochs or steps (``t >= 0``)."""
        k = self.value
        if self.kind == "constant":
            return 1.0
        if self.kind == "early":
            return 1.0 if t < k else 0.0
        if self.kind == "late":
            return 0.0 if t < k else 1.0
        if self.kind == "linear":
            return min(t / k, 1.0)
        if self.kind == "cosine":
            return (1.0 - math.cos(math.pi * min(t / k, 1.0))) / 2.0
        return 1.0 - math.exp(-k * t)  # curriculum

    def rate(self, p: float, t: int) -> float:
        """The rate of a layer configured with ``p`` after ``t`` completed epochs or steps.

        Curriculum: ``1 - ((1 - theta_f) exp(-gamma t) + theta_f)`` with ``theta_f = 1 - p``.
        """
        return p * self.factor(t)

    def __str__(self) -> str:
        if self.kind == "constant":
            return "constant"
        value = f"{self.value:g}"
        return f"{self.kind}@{value}" + ("step" if self.unit == "step" else "")

    @classmethod
    def parse(cls, text: str) -> RateSchedule:
        """Read ``KIND[@VALUE[UNIT]]`` (see the module docstring); ``str()`` gives it back."""
        if isinstance(text, RateSchedule):
            return text
        if not isinstance(text, str):
            raise ConfigError(f"a schedule must be a string like 'early@5', got {text!r}")
        m = _TEXT.match(text.strip())
        if m is None:
            raise ConfigError(
                f"cannot parse schedule {text!r}; expected KIND[@VALUE[epoch|step]], "
                f"e.g. 'early@5', 'late@300step', 'curriculum@0.5'"
            )
        kind, value, unit = m.group(1), m.group(2), m.group(3) or "epoch"
        check_choice("schedule", kind, SCHEDULES)
        if value is None:
            if kind in _NEEDS_VALUE:
                raise ConfigError(
                    f"schedule {kind!r} needs a value: {kind}@K "
                    f"({'gamma' if kind == 'curriculum' else 'epochs'}), e.g. '{kind}@5'"
                )
            return cls(kind)
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"cannot parse schedule value {value!r} in {text!r}") from None
        return cls(kind, number, unit)


def depth_rates(p: float, n: int) -> tuple[float, ...]:
    """Per-block rates of the stochastic-depth rule: ``p_l = (l / n) p`` for ``l = 1..n``.

    Huang, Sun, Liu, Sedra, Weinberger 2016, "Deep Networks with Stochastic Depth",
    arXiv:1603.09382: the last block gets ``p``, the first ``p / n``.

    Example::

        depth_rates(0.2, 4)  # (0.05, 0.1, 0.15, 0.2)
    """
    return tuple(p * (l + 1) / n for l in range(n))


def parse_schedule_setting(text: str) -> tuple[bool, RateSchedule | None]:
    """Split a dropout setting's schedule text into ``(depth, time schedule or None)``.

    ``"depth"`` -> ``(True, None)``; ``"early@5"`` -> ``(False, early@5)``;
    ``"depth+late@3"`` -> ``(True, late@3)``.
    """
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"a schedule must be a string like 'early@5' or 'depth', got {text!r}")
    depth, time = False, None
    for part in (s.strip() for s in text.split("+")):
        if part == "depth":
            if depth:
                raise ConfigError(f"schedule {text!r} names depth twice")
            depth = True
        else:
            if time is not None:
                raise ConfigError(
                    f"schedule {text!r} names two time schedules; combine at most one with depth"
                )
            time = RateSchedule.parse(part)
    return depth, time


def canonical_setting(depth: bool, time: RateSchedule | None) -> str | None:
    """The text form of ``(depth, time)``; ``None`` when neither changes the rate."""
    parts = (["depth"] if depth else []) + (
        [str(time)] if time is not None and time.kind != "constant" else []
    )
    return "+".join(parts) or None


def is_schedule_text(text: str) -> bool:
    """Whether a field of the compact dropout grammar is a schedule (``early@5``, ``depth``...)."""
    head = re.split(r"[@+]", text.strip(), maxsplit=1)[0]
    return head in SCHEDULES or head == "depth"
