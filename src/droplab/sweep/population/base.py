"""What the population's parts share: a member, the network protocol, the seed streams."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from droplab.train.config import TrainConfig

__all__ = ["Member", "Unstackable", "MEMBER_FIELDS", "OPTIMIZER_FIELDS"]

#: Training options that may differ between the members of one population (everything else in
#: a TrainConfig is shared by the population). The one list: populations and the engine read it.
MEMBER_FIELDS = ("lr", "weight_decay", "l1", "l2", "max_norm")
#: Those of them that one optimizer instance must share (L1 and L2 are applied per member).
OPTIMIZER_FIELDS = ("lr", "weight_decay", "max_norm")


class Unstackable(Exception):
    """Raised when a population cannot be vectorized; the message says why."""


@dataclass
class Member:
    """One run of a population: a configuration and a seed.

    Attributes:
        key: the configuration's key (see :func:`droplab.sweep.space.config_key`).
        params: the configuration.
        seed: the run's seed (initialization, data order, dropout draws).
        train: the member's training configuration (its ``seed`` field is ignored; ``seed``
            above is used). Members of one population may differ in ``lr``, ``weight_decay``,
            ``l1``, ``l2`` and ``max_norm``.
        rates: for :class:`MLPNet`, the drop rate at each dropout position of the spec (input
            first, then each hidden layer); ``None`` otherwise.
        run_id: the run's id in the study store, if any.
        schedules: for :class:`MLPNet`, the rate schedule at each dropout position (a
            :class:`~droplab.nn.schedule.RateSchedule`, its text, or ``None`` for a constant
            rate); ``None`` (default) takes the spec's. Members of one population may follow
            different schedules.
    """

    key: str
    params: dict[str, Any]
    seed: int
    train: TrainConfig
    rates: tuple[float, ...] | None = None
    run_id: int | None = None
    schedules: tuple[Any, ...] | None = None


def _derive_seed(seed: int, stream: int) -> int:
    import numpy as np

    return int(np.random.SeedSequence([seed, stream]).generate_state(1, dtype=np.uint64)[0] >> 1)


class _Net:
    """What a population needs from its network (see MLPNet and ModuleNet)."""

    names: list[str]
    weight_names: list[str]
    uniform_width: int = 0

    def init_params(self, members: Sequence[Member]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        raise NotImplementedError

    def counter_draws(self, task: str, device: torch.device) -> bool:
        """Whether a population of this net draws its dropout uniforms from the counter stream.

        False: one ``torch.Generator`` (mt19937) per seed. True: the uniforms of step ``t`` for
        a seed are a pure function of (seed, t) (see ``Population._uniforms``), drawn in C++
        where the fused step runs (see :mod:`droplab.sweep.fused_step`).
        """
        return False

    def train_step(self, P, buffers, x, y, u, task) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError

    def predict(self, P, buffers, x) -> torch.Tensor:
        raise NotImplementedError

    def activation_width(self, x: torch.Tensor) -> int:
        """Values per example of one member's widest activation on inputs like ``x`` (0: unknown).

        The population evaluates in chunks small enough that ``k`` members' activations of a
        chunk stay a few MiB (``Population.evaluate``).
        """
        return 0

    def unit_dims(self, name: str, tensor: torch.Tensor) -> tuple[int, ...]:
        """Dims of the stacked weight ``name`` that span one unit's incoming weights."""
        raise NotImplementedError

    def select_rows(self, index: torch.Tensor) -> None:
        """Keep only the members at rows ``index`` of any per-member state the net holds."""

    def update_schedule(self, epoch: int, step: int) -> None:
        """Set scheduled dropout rates to their values after ``epoch`` epochs, ``step`` steps."""

    per_step_schedule: bool = False
