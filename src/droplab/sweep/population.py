"""Population training: many configurations x seeds trained as one vectorized computation.

A *population* is a set of *members* (configuration, seed) that share an architecture. Their
parameters are stacked along a leading member axis ``K`` and every step trains all of them
at once. Members stay independent: each has its own parameters, optimizer state, data order,
dropout masks, learning rate, weight decay, L1/L2 strength and max-norm bound, and its own
early stopping. A member's numbers therefore match the same configuration trained alone to
within seed noise (the tests check it against :class:`droplab.train.Trainer`).

Two engines compute the steps:

* :class:`MLPNet` -- droplab's own MLP specs (``kind="mlp"``, no batch norm, Bernoulli
  dropout ``dropout``/``classic`` at ``input``/``hidden``): explicit batched layers, weights
  ``(K, in, out)`` multiplied with ``torch.baddbmm``, and for ReLU a hand-written backward pass
  (no autograd graph; the ReLU and mask backward is one ``threshold_backward`` per layer).
  Dropout rates are per member: the uniforms behind the masks are drawn once per *seed* and
  each member keeps ``u >= p_member`` (``torch.ge`` written as 1.0/0.0 into the uniforms' own
  memory, then scaled). Members that share a seed therefore share the uniform draws, and their
  masks are nested across rates: common random numbers for paired comparisons. Narrow products
  (an output layer of a few classes) are computed transposed on the CPU, where the batched GEMM
  is slow for them.
* :class:`ModuleNet` -- any ``nn.Module`` (the user's own, or droplab's other architectures):
  ``torch.func.stack_module_state`` + ``functional_call`` + ``vmap(grad_and_value(...),
  randomness="different")``. Batch-norm running statistics are stacked buffers and update per
  member. A module's dropout rate is an attribute of the module, not a tensor, so members of
  one ModuleNet population share the module configuration (dropout rates included) and differ
  in seed and in the per-member training hyper-parameters (lr, weight decay, L1, L2,
  max-norm); configurations with other rates form other populations. Inside a population the
  dropout draws are independent per member ("different" randomness, from a generator seeded
  per population), so for these models the paired comparisons share initialization and data
  order but not the masks. A model that vmap cannot run (``.item()`` in forward,
  data-dependent control flow, in-place updates of captured tensors) raises
  :class:`Unstackable`, and the engine trains it one by one with the Trainer.

Shared by both: each distinct seed owns two ``torch.Generator`` s, one for the data order --
seeded with the seed itself, so the batches are exactly those :class:`~droplab.train.Trainer`
draws with ``TrainConfig(seed=seed)`` -- and one for dropout uniforms. Initialization is
``build_model(..., seed=seed)`` (or the user's build function inside
``torch.random.fork_rng`` with ``torch.manual_seed(seed)``), so members with one seed start
from the same weights. The optimizer is torch's own (``Adam``/``AdamW``/``SGD``/``RMSprop``,
fused where torch supports it, or droplab's ``SGDW``), one instance per run of consecutive
members with equal lr and weight decay, over views of the stacked tensors; learning-rate
schedules come from :func:`droplab.train.optim.build_scheduler`. L1/L2 gradients, max-norm and
gradient clipping are applied per member.

Early stopping reuses :class:`droplab.train.EarlyStopping`, one instance per member, fed that
member's epoch row. A stopped (or diverged) member is frozen: its final weights (the best ones
when ``restore_best``) are kept aside and its rows stop. Its slot keeps being computed until the
whole population ends -- a deliberate trade: removing members would re-pack every stacked
tensor and the optimizers' state mid-run, for a saving only when many members stop early.

Cost: every epoch row carries ``seconds`` = the population's epoch wall time / K, and
``peak_mem_mb`` = the population's stacked parameters and buffers plus the peak growth of the
process's resident memory while it trains (read from ``/proc/self/statm`` after steps and
evaluations, from a baseline taken once freed memory went back to the OS; on CUDA
``torch.cuda.max_memory_allocated``), divided by K.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from droplab.errors import ConfigError, DataError
from droplab.train.config import TrainConfig
from droplab.train.optim import SCHEDULE_STEPS_PER_BATCH, build_scheduler

__all__ = [
    "gaussian_nll",
    "Member",
    "MLPNet",
    "ModuleNet",
    "Population",
    "Unstackable",
    "mlp_fast_path",
    "make_population",
    "POPULATION_FORMAT",
]

POPULATION_FORMAT = "droplab-population-v1"
_FINALS_FORMAT = "droplab-population-finals-v1"  # Population.final_bytes: final weights only
_MASK_STREAM = 0x5EED_D809  # mixed into a seed to give the dropout-uniform generator its own stream


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


# --- which MLP specs the fast path runs ---------------------------------------------------------
_FAST_LAYERS = ("dropout", "classic")


def mlp_fast_path(spec: Any) -> str | None:
    """Why ``spec`` cannot use :class:`MLPNet` (a sentence), or ``None`` if it can."""
    if spec.kind != "mlp":
        return f"kind {spec.kind!r} is not an MLP"
    if spec.batch_norm:
        return "batch norm is trained through vmap"
    for place, d in spec.dropout.items():
        if d.layer not in _FAST_LAYERS:
            return f"dropout layer {d.layer!r} at {place!r} is trained through vmap"
        if d.options:
            return f"dropout options {dict(d.options)} at {place!r} are trained through vmap"
    return None


def mlp_positions(spec: Any) -> list[tuple[str, int]]:
    """Dropout positions of an MLP spec in forward order: ``("input", 0)``, ``("hidden", i)``."""
    out: list[tuple[str, int]] = []
    if "input" in spec.dropout:
        out.append(("input", 0))
    if "hidden" in spec.dropout:
        out += [("hidden", i) for i in range(len(spec.hidden))]
    return out


_ACTS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu,
    "tanh": torch.tanh,
    "gelu": F.gelu,
    "selu": F.selu,
    "sigmoid": torch.sigmoid,
    "elu": F.elu,
}


#: Variance floor of the Gaussian head (Lakshminarayanan et al. 2017 add 1e-6 to the softplus).
GAUSSIAN_MIN_VAR = 1e-6
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def gaussian_nll(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Elementwise Gaussian negative log-likelihood of a mean/variance head, in nats.

    Task ``"gaussian"`` (Lakshminarayanan, Pritzel, Blundell, "Simple and Scalable Predictive
    Uncertainty Estimation using Deep Ensembles", NeurIPS 2017, arXiv:1612.01474): the last
    axis of ``out`` holds ``D`` means then ``D`` raw variances, ``var = softplus(raw) + 1e-6``;
    ``nll = 0.5 log(2 pi var) + (y - mean)^2 / (2 var)``.

    Args:
        out: ``(..., 2 D)``. y: ``(..., D)``.

    Returns:
        ``(..., D)``.

    Example:
        >>> float(gaussian_nll(torch.tensor([[0.0, 20.0]]), torch.tensor([[0.0]]))[0, 0])  # doctest: +ELLIPSIS
        2.4...
    """
    d = y.shape[-1]
    if out.shape[-1] != 2 * d:
        raise DataError(
            f"a Gaussian head needs 2 x {d} outputs (means, then raw variances), got {out.shape[-1]}"
        )
    mean, var = out[..., :d], F.softplus(out[..., d:]) + GAUSSIAN_MIN_VAR
    return 0.5 * var.log() + (y - mean).pow(2) / (2 * var) + _HALF_LOG_2PI


def _loss_and_grad_out(out: torch.Tensor, y: torch.Tensor, task: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-member mean loss (K,) and its gradient w.r.t. ``out`` (K, B, C), no autograd."""
    batch = out.shape[1]
    if task == "gaussian":
        d = y.shape[2]
        losses = gaussian_nll(out, y).mean((1, 2))
        mean, raw = out[..., :d], out[..., d:]
        var = F.softplus(raw) + GAUSSIAN_MIN_VAR
        diff = mean - y
        scale = 1.0 / (batch * d)
        d_mean = diff / var * scale
        d_raw = 0.5 * (1 / var - diff.pow(2) / var.pow(2)) * torch.sigmoid(raw) * scale
        return losses, torch.cat([d_mean, d_raw], dim=2)
    if task == "classification":
        logp = torch.log_softmax(out, dim=2)
        losses = -logp.gather(2, y.unsqueeze(2)).squeeze(2).mean(1)
        d = logp.exp_()
        d.scatter_add_(2, y.unsqueeze(2), d.new_full((d.shape[0], batch, 1), -1.0))
        return losses, d.mul_(1.0 / batch)
    diff = out - y
    losses = diff.pow(2).mean((1, 2))
    return losses, diff.mul_(2.0 / diff[0].numel())


def _loss_per_member(out: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
    if task == "gaussian":
        return gaussian_nll(out, y).mean((1, 2))
    if task == "classification":
        return F.cross_entropy(out.transpose(1, 2), y, reduction="none").mean(1)
    return (out - y).pow(2).mean((1, 2))


_EVAL_CHUNK_BYTES = 8 << 20  # activations per evaluation chunk of a CPU MLP population
_NARROW = 16  # batched CPU products with fewer output columns than this run transposed


def _narrow(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.device.type == "cpu" and b.shape[2] < _NARROW and a.shape[1] > b.shape[2]


def _bmm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` for ``(K, m, k) @ (K, k, n)``, in the orientation the CPU's batched GEMM runs fast.

    With few output columns (an output layer of 10 classes) the batched GEMM behind
    ``torch.bmm`` is slow on the CPU; ``(b^T a^T)^T`` is the same product with the long side as
    columns. Measured at K=30 on 2 cores: ``(100, 256) @ (256, 10)`` 1.20 ms against 0.24 ms,
    ``(256, 100) @ (100, 10)`` 1.13 ms against 0.22 ms; from 16 columns on there is no gain.
    """
    if a.shape[2] == 1:
        # An outer product (the gradient into a single-output layer's inputs): the batched GEMM
        # takes 9.3 ms for (240, 128, 1) @ (240, 1, 50) on one core, a broadcast multiply 1.0 ms
        # (the same products, each rounded once).
        return a * b
    if _narrow(a, b):
        return torch.bmm(b.transpose(1, 2), a.transpose(1, 2)).transpose(1, 2).contiguous()
    return torch.bmm(a, b)


def _baddbmm(bias: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``bias + a @ b`` (``bias`` ``(K, 1, n)``), oriented as :func:`_bmm`."""
    if _narrow(a, b):
        out = torch.baddbmm(bias.transpose(1, 2), b.transpose(1, 2), a.transpose(1, 2))
        return out.transpose(1, 2).contiguous()
    return torch.baddbmm(bias, a, b)


class _Net:
    """What a population needs from its network (see MLPNet and ModuleNet)."""

    names: list[str]
    weight_names: list[str]
    uniform_width: int = 0

    def init_params(self, members: Sequence[Member]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        raise NotImplementedError

    def train_step(self, P, buffers, x, y, u, task) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError

    def predict(self, P, buffers, x) -> torch.Tensor:
        raise NotImplementedError

    def unit_dims(self, name: str, tensor: torch.Tensor) -> tuple[int, ...]:
        """Dims of the stacked weight ``name`` that span one unit's incoming weights."""
        raise NotImplementedError

    def select_rows(self, index: torch.Tensor) -> None:
        """Keep only the members at rows ``index`` of any per-member state the net holds."""

    def update_schedule(self, epoch: int, step: int) -> None:
        """Set scheduled dropout rates to their values after ``epoch`` epochs, ``step`` steps."""

    per_step_schedule: bool = False


class MLPNet(_Net):
    """Explicit batched MLP: weights ``(K, in, out)``, per-member dropout rates.

    Args:
        spec: a ``ModelSpec`` accepted by :func:`mlp_fast_path` (its rates are ignored; each
            member brings its own in ``Member.rates``).
        input_shape: shape of one example (flattened).
        n_outputs: output width.
        members: the population, for the per-member rates and modes.
        manual_backward: use the hand-written backward for ReLU networks (default True);
            other activations always use autograd over the same batched forward.

    Shape:
        ``train_step`` takes ``x`` of shape ``(K, B, *input_shape)`` and the members' uniforms
        ``u`` ``(K, B, uniform_width)``, which it overwrites with the dropout masks; ``predict``
        takes ``(N, *input_shape)`` shared by all members and returns ``(K, N, n_outputs)``.
    """

    def __init__(
        self,
        spec: Any,
        input_shape: Sequence[int],
        n_outputs: int,
        members: Sequence[Member],
        *,
        manual_backward: bool = True,
    ) -> None:
        reason = mlp_fast_path(spec)
        if reason is not None:
            raise Unstackable(reason)
        self.spec = spec
        self.input_shape = tuple(input_shape)
        self.n_outputs = n_outputs
        self.in_features = math.prod(self.input_shape)
        self.widths = [self.in_features, *spec.hidden, n_outputs]
        self.depth = len(self.widths) - 1
        self.names = [f"W{i}" for i in range(self.depth)] + [f"b{i}" for i in range(self.depth)]
        self.weight_names = [f"W{i}" for i in range(self.depth)]
        self.activation = spec.activation
        self.manual = manual_backward and spec.activation == "relu"
        self.positions = mlp_positions(spec)
        # Column ranges of each dropout position in the per-example uniform block.
        self.columns: dict[int, tuple[int, int]] = {}  # layer input index -> (start, stop)
        start = 0
        for place, i in self.positions:
            layer_input = 0 if place == "input" else i + 1
            width = self.widths[layer_input]
            self.columns[layer_input] = (start, start + width)
            start += width
        self.uniform_width = start
        k = len(members)
        rates = torch.zeros(k, max(len(self.positions), 1), dtype=torch.float64)
        for j, m in enumerate(members):
            if m.rates is None or len(m.rates) != len(self.positions):
                raise ConfigError(
                    f"member {m.key!r} gives {None if m.rates is None else len(m.rates)} dropout "
                    f"rates for {len(self.positions)} dropout positions"
                )
            if self.positions:
                rates[j] = torch.tensor(m.rates, dtype=torch.float64)
        self._classic = {
            pos: spec.dropout["input" if pos[0] == "input" else "hidden"].layer == "classic"
            for pos in self.positions
        }
        self._device = torch.device("cpu")
        self.base_rates = rates
        self.row_schedules = _member_schedules(spec, self.positions, members)
        self.per_step_schedule = any(s is not None and s.unit == "step" for r in self.row_schedules for s in r)
        self._last_rates: list[list[float]] | None = None
        self._set_rates(rates)
        # Uniforms are drawn while any member could drop (its base rate > 0), whatever its
        # schedule says now: a member's draws then do not depend on the others' schedules.
        self.draws = bool((rates > 0).any())

    def update_schedule(self, epoch: int, step: int) -> None:
        """Set every member's rates to its schedules' values after ``epoch`` epochs, ``step`` steps."""
        if not any(any(s is not None for s in row) for row in self.row_schedules):
            return
        rates = [
            [
                p if s is None else s.rate(p, step if s.unit == "step" else epoch)
                for p, s in zip(row_p, row_s)
            ]
            for row_p, row_s in zip(self.base_rates.tolist(), self.row_schedules)
        ]
        if rates != self._last_rates:
            self._last_rates = rates
            self._set_rates(torch.tensor(rates, dtype=torch.float64).view(len(rates), -1))

    def _set_rates(self, rates: torch.Tensor) -> None:
        """Masks' thresholds and scales from per-member rates ``(K, positions)`` (float64)."""
        k = len(rates)
        classic = self._classic
        p_cols = torch.zeros(k, 1, max(self.uniform_width, 1))
        s_cols = torch.ones(k, 1, max(self.uniform_width, 1))
        self.eval_scale: dict[int, torch.Tensor] = {}
        self.active: set[int] = set()
        for col, pos in enumerate(self.positions):
            layer_input = 0 if pos[0] == "input" else pos[1] + 1
            a, b = self.columns[layer_input]
            p = rates[:, col]
            p_cols[:, 0, a:b] = p.float().unsqueeze(1)
            if classic[pos]:
                # Classic dropout: masks are 0/1 in training, activations scaled by 1-p at eval.
                self.eval_scale[layer_input] = (1.0 - p).float().view(k, 1, 1)
            else:
                # Divide in float64 then round: the same 1/(1-p) scaling as the reference layer.
                s_cols[:, 0, a:b] = (1.0 / (1.0 - p)).float().unsqueeze(1)
            if bool((p > 0).any()):
                self.active.add(layer_input)
        self.p_cols, self.s_cols = p_cols.to(self._device), s_cols.to(self._device)
        self.eval_scale = {i: v.to(self._device) for i, v in self.eval_scale.items()}
        self.rates = rates  # (K, positions) float64: the exact rates now, for MC passes
        self.classic = [classic[pos] for pos in self.positions]

    def to(self, device: torch.device) -> MLPNet:
        self._device = torch.device(device)
        self.p_cols, self.s_cols = self.p_cols.to(device), self.s_cols.to(device)
        self.eval_scale = {k: v.to(device) for k, v in self.eval_scale.items()}
        return self

    def select_rows(self, index: torch.Tensor) -> None:
        rows = index.tolist()
        self.base_rates = self.base_rates[rows]
        self.draws = bool((self.base_rates > 0).any())
        self.row_schedules = [self.row_schedules[r] for r in rows]
        if self._last_rates is not None:
            self._last_rates = [self._last_rates[r] for r in rows]
        self.p_cols, self.s_cols = self.p_cols[index], self.s_cols[index]
        self.rates = self.rates[index.cpu()]
        self.eval_scale = {k: v[index] for k, v in self.eval_scale.items()}
        self.active = {i for i, (a, b) in self.columns.items() if bool((self.p_cols[:, :, a:b] > 0).any())}

    def init_params(self, members: Sequence[Member]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        from droplab.models import build_model

        per_seed: dict[int, dict[str, torch.Tensor]] = {}
        for m in members:
            if m.seed in per_seed:
                continue
            model = build_model(self.spec, self.input_shape, self.n_outputs, seed=m.seed)
            linears = [mod for mod in model.modules() if isinstance(mod, nn.Linear)]
            if len(linears) != self.depth:  # a bug: the fast path must mirror droplab's MLP
                raise AssertionError(f"MLP has {len(linears)} Linear layers, expected {self.depth}")
            state = {}
            for i, lin in enumerate(linears):
                state[f"W{i}"] = lin.weight.detach().t().contiguous()
                state[f"b{i}"] = lin.bias.detach().view(1, -1).clone()
            per_seed[m.seed] = state
        params = {n: torch.stack([per_seed[m.seed][n] for m in members]) for n in self.names}
        return params, {}

    def unit_dims(self, name: str, tensor: torch.Tensor) -> tuple[int, ...]:
        return (1,)  # (K, in, out): unit j's incoming weights are [:, :, j]

    def masks(self, u: torch.Tensor | None) -> dict[int, torch.Tensor]:
        """Per-position keep-and-scale masks from member uniforms ``u`` (K, B, width).

        ``u`` is overwritten: the masks are built in its memory.
        """
        if u is None or not self.active:
            return {}
        # keep = u >= p, written as 1.0/0.0 into u itself, then scaled: two passes, no new
        # tensor (measured 0.69 ms against 1.3 ms for a sign/clamp chain at K=30, B=100,
        # width 512; torch.where took 4.4 ms).
        m = torch.ge(u, self.p_cols, out=u).mul_(self.s_cols)
        return {i: m[:, :, a:b] for i, (a, b) in self.columns.items() if i in self.active}

    def _forward(self, P, x, masks, act) -> tuple[torch.Tensor, list[torch.Tensor]]:
        h = x.flatten(2)
        if 0 in masks:
            h = h * masks[0]
        saved = [h]
        for i in range(self.depth - 1):
            z = _baddbmm(P[f"b{i}"], h, P[f"W{i}"])
            if act is None:
                z = z.relu_()
                if i + 1 in masks:
                    z = z.mul_(masks[i + 1])
            else:
                z = act(z)
                if i + 1 in masks:
                    z = z * masks[i + 1]
            h = z
            saved.append(h)
        last = self.depth - 1
        return _baddbmm(P[f"b{last}"], h, P[f"W{last}"]), saved

    def train_step(self, P, buffers, x, y, u, task):
        masks = self.masks(u)
        if not self.manual:
            req = {n: P[n].detach().requires_grad_() for n in self.names}
            with torch.enable_grad():
                out, _ = self._forward(req, x, masks, _ACTS[self.activation])
                losses = _loss_per_member(out, y, task)
                losses.sum().backward()
            return losses.detach(), {n: req[n].grad for n in self.names}
        with torch.no_grad():
            out, saved = self._forward(P, x, masks, None)
            losses, d = _loss_and_grad_out(out, y, task)
            grads: dict[str, torch.Tensor] = {}
            for i in range(self.depth - 1, -1, -1):
                h = saved[i]
                grads[f"W{i}"] = _bmm(h.transpose(1, 2), d)
                grads[f"b{i}"] = d.sum(1, keepdim=True)
                if i == 0:
                    break
                dh = _bmm(d, P[f"W{i}"].transpose(1, 2))
                if i in masks:
                    dh = dh.mul_(masks[i])
                # h = relu(z) * mask > 0 exactly where both pass, so one threshold covers both.
                d = torch.ops.aten.threshold_backward(dh, h, 0)
        return losses, grads

    @torch.no_grad()
    def predict(self, P, buffers, x):
        act = _ACTS[self.activation]
        # (N, *input_shape) shared by all members, or (K, N, *input_shape) one set per member
        per_member = x.dim() == len(self.input_shape) + 2
        h = (x.flatten(2) if per_member else x.flatten(1)).to(P["W0"].dtype)
        z = torch.matmul(h, P["W0"])  # (N, in) or (K, N, in) @ (K, in, out) -> (K, N, out)
        if 0 in self.eval_scale:
            z = z * self.eval_scale[0]
        h = z.add_(P["b0"])
        for i in range(1, self.depth):
            # h is this function's own buffer: work in place (a fresh (K, N, width) tensor per
            # op costs its page faults, as much as the op itself at evaluation sizes).
            h = h.relu_() if self.activation == "relu" else act(h)
            if i in self.eval_scale:
                h = h.mul_(self.eval_scale[i])
            h = _baddbmm(P[f"b{i}"], h, P[f"W{i}"])
        return h

    @torch.no_grad()
    def mc_passes(
        self,
        P: dict[str, torch.Tensor],
        x: torch.Tensor,
        passes: int,
        seeds: Sequence[int],
        *,
        budget_bytes: int = 64 << 20,
    ) -> Iterator[tuple[int, torch.Tensor]]:
        """MC-dropout predictions of every member, ``passes`` stochastic forward passes each.

        Dropout stays on, at each member's own rates, as in MC dropout (Gal & Ghahramani,
        2016, "Dropout as a Bayesian Approximation", arXiv:1506.02142). The masks are
        counter-based draws (``droplab.functional._counter.counter_dropout``): the mask of pass
        ``t``, example ``n``, unit ``j`` of member ``k`` is a pure function of ``(seeds[k],
        position, t, n, j)``, so the result does not depend on the chunking or thread count.
        Passes come in chunks whose activations stay within ``budget_bytes``, so that a caller
        reduces them (mean, log-sum-exp) without holding all ``K x passes x N`` outputs.

        Args:
            P: stacked parameters (``Population.params`` or stacked final weights).
            x: ``(N, *input_shape)`` shared by all members, or ``(K, N, *input_shape)``.
            passes: number of MC passes T per member.
            seeds: one integer per member (members with equal seeds share their masks).
            budget_bytes: activations per chunk (default 64 MiB).

        Yields:
            ``(t0, out)``: the first pass's index and ``out`` of shape ``(K, t, N, n_outputs)``.

        Example::

            for t0, out in net.mc_passes(pop.params, x_test, 1000, seeds=[0] * pop.k):
                total += out.sum(1)
        """
        from droplab._checks import check_positive_int
        from droplab.functional._counter import _U_BITS, counter_dropout, counter_uniform

        check_positive_int("passes", passes)
        k = P["W0"].shape[0]
        if len(seeds) != k:
            raise ConfigError(f"mc_passes needs one seed per member: {k} members, got {len(seeds)} seeds")
        per_member = x.dim() == len(self.input_shape) + 2
        x = (x.flatten(2) if per_member else x.flatten(1).unsqueeze(0)).to(P["W0"].dtype)
        n = x.shape[1]
        row_bytes = 4 * k * n * (sum(self.widths) + max(self.widths))
        chunk = max(1, min(passes, budget_bytes // max(row_bytes, 1)))
        act = _ACTS[self.activation]
        distinct = sorted({int(s) for s in seeds})
        # Members that share a seed share their draws (nested masks across rates). When most
        # do, hash the draws once per seed and threshold them per member: the same masks as
        # counter_dropout's fused kernel, bit for bit (drop iff the 24-bit draw < ceil(p 2**24)).
        shared = 2 * len(distinct) <= k
        seed_index = torch.tensor([distinct.index(int(s)) for s in seeds], device=P["W0"].device)
        positions = {}
        for col, pos in enumerate(self.positions):
            layer_input = 0 if pos[0] == "input" else pos[1] + 1
            owners = distinct if shared else [int(s) for s in seeds]
            stream = torch.tensor([_derive_seed(s, 0xC0DE + col) for s in owners], dtype=torch.int64)
            rates = self.rates[:, col]
            thr = torch.tensor([math.ceil(r * 2**_U_BITS) * 2.0**-_U_BITS for r in rates.tolist()])
            scale = torch.ones(k, dtype=torch.float64) if self.classic[col] else 1.0 / (1.0 - rates)
            dev = P["W0"].device
            positions[layer_input] = (col, stream, thr.float().view(k, 1, 1).to(dev),
                                      scale.float().view(k, 1, 1).to(dev))
        for t0 in range(0, passes, chunk):
            t = min(chunk, passes - t0)
            h = x.unsqueeze(1).expand(k, t, n, x.shape[-1]).reshape(k, t * n, x.shape[-1])
            for i in range(self.depth):
                if i in positions:
                    col, stream, thr, scale = positions[i]
                    width = h.shape[-1]
                    if not shared:
                        h = counter_dropout(
                            h, self.rates[:, col], stream, scale=not self.classic[col], offset=t0 * n * width
                        )
                    elif bool((self.rates[:, col] > 0).any()):
                        u = counter_uniform((len(distinct), t * n, width), stream, offset=t0 * n * width,
                                            device=h.device)
                        u = u.index_select(0, seed_index)
                        h = h * torch.ge(u, thr, out=u).mul_(scale)
                h = _baddbmm(P[f"b{i}"], h, P[f"W{i}"])
                if i < self.depth - 1:
                    h = h.relu_() if self.activation == "relu" else act(h)
            yield t0, h.view(k, t, n, -1)


def _member_schedules(spec: Any, positions: list[tuple[str, int]], members: Sequence[Member]) -> list[list[Any]]:
    """Each member's schedule per dropout position: its own, else the spec's (None: constant)."""
    from droplab.nn.schedule import RateSchedule

    default = [spec.dropout[place].time_schedule for place, _ in positions]
    out = []
    for m in members:
        if m.schedules is None:
            out.append(list(default))
            continue
        if len(m.schedules) != len(positions):
            raise ConfigError(
                f"member {m.key!r} gives {len(m.schedules)} dropout schedules for "
                f"{len(positions)} dropout positions"
            )
        row = [None if s is None else RateSchedule.parse(s) for s in m.schedules]
        out.append([None if s is None or s.kind == "constant" else s for s in row])
    return out


class ModuleNet(_Net):
    """Any ``nn.Module`` stacked with ``torch.func`` (see the module docstring).

    Args:
        build: ``member -> nn.Module``; called once per member with the member's seed
            already applied to torch's RNG (inside ``torch.random.fork_rng``).
        members: the population.

    Raises:
        Unstackable: the members' modules differ in structure, or carry a learned-rate
            regularizer (``regularization()``), which ``functional_call`` cannot reach.
    """

    def __init__(self, build: Callable[[Member], nn.Module], members: Sequence[Member]) -> None:
        modules = []
        for m in members:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(m.seed)
                modules.append(build(m))
        signatures = {module_signature(mod) for mod in modules}
        if len(signatures) > 1:
            raise Unstackable("the configurations build modules of different structure")
        template = modules[0]
        if any(callable(getattr(mod, "regularization", None)) for mod in template.modules()):
            raise Unstackable("a module adds its own regularization() term to the loss")
        from torch.func import stack_module_state

        params, buffers = stack_module_state(modules)
        self._params = {k: v.detach().clone() for k, v in params.items()}
        self._buffers = {k: v.detach().clone() for k, v in buffers.items()}
        self.template = template
        self.names = list(self._params)
        from droplab.regularize import weight_parameters

        ids = {id(p): n for n, p in template.named_parameters()}
        self.weight_names = [ids[id(p)] for p in weight_parameters(template) if id(p) in ids]
        self._module_of = {}
        for mod_name, mod in template.named_modules():
            for pname, _ in mod.named_parameters(recurse=False):
                self._module_of[f"{mod_name}.{pname}" if mod_name else pname] = mod
        if any(
            isinstance(self._module_of.get(n), nn.modules.conv._ConvTransposeNd) for n in self.weight_names
        ):
            self._has_transpose = True
        else:
            self._has_transpose = False
        self._grad_fn = None
        self._pred_fn = None
        from droplab.train.schedules import scheduled_layers

        # Members share the module configuration, so one schedule drives the template's layers.
        self._scheduled = scheduled_layers(template)
        self.per_step_schedule = any(s.unit == "step" for _, _, s in self._scheduled)

    def update_schedule(self, epoch: int, step: int) -> None:
        from droplab.train.schedules import apply_schedules

        apply_schedules(self._scheduled, epoch, step)

    def init_params(self, members):
        return self._params, self._buffers

    def unit_dims(self, name: str, tensor: torch.Tensor) -> tuple[int, ...]:
        if self._has_transpose:
            raise Unstackable("max-norm on a ConvTranspose layer in a population")
        return tuple(range(2, tensor.dim()))

    def _functions(self):
        if self._grad_fn is None:
            from torch.func import functional_call, grad_and_value, vmap

            template = self.template

            def loss(p, b, x, y, task):
                out = functional_call(template, (p, b), (x,))
                if task == "classification":
                    return F.cross_entropy(out, y)
                if task == "gaussian":
                    return gaussian_nll(out, y).mean()
                return F.mse_loss(out, y)

            def grad_cls(p, b, x, y):
                return grad_and_value(loss)(p, b, x, y, "classification")

            def grad_reg(p, b, x, y):
                return grad_and_value(loss)(p, b, x, y, "regression")

            def grad_gauss(p, b, x, y):
                return grad_and_value(loss)(p, b, x, y, "gaussian")

            self._grad_fn = {
                "classification": vmap(grad_cls, randomness="different"),
                "regression": vmap(grad_reg, randomness="different"),
                "gaussian": vmap(grad_gauss, randomness="different"),
            }
            self._pred_fn = vmap(
                lambda p, b, x: functional_call(template, (p, b), (x,)),
                in_dims=(0, 0, None),
                randomness="different",
            )
        return self._grad_fn, self._pred_fn

    def train_step(self, P, buffers, x, y, u, task):
        grad_fn, _ = self._functions()
        self.template.train()
        grads, losses = grad_fn[task](P, buffers, x, y)
        return losses.detach(), grads

    @torch.no_grad()
    def predict(self, P, buffers, x):
        _, pred_fn = self._functions()
        self.template.eval()
        try:
            return pred_fn(P, buffers, x)
        finally:
            self.template.train()


def module_signature(module: nn.Module) -> tuple:
    """A hashable description of a module's structure: types, reprs, parameter/buffer shapes.

    Two modules with equal signatures can be stacked into one population.
    """
    mods = tuple((name, type(m).__name__, m.extra_repr()) for name, m in module.named_modules())
    params = tuple((n, tuple(p.shape), str(p.dtype), p.requires_grad) for n, p in module.named_parameters())
    bufs = tuple((n, tuple(b.shape), str(b.dtype)) for n, b in module.named_buffers())
    return (mods, params, bufs)


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


def _same_hparams(a: TrainConfig, b: TrainConfig) -> bool:
    # What one optimizer instance must share; L1/L2 are applied per row (see _layout).
    return (a.lr, a.weight_decay, a.max_norm) == (b.lr, b.weight_decay, b.max_norm)


class Population:
    """Train the members of one population together, epoch by epoch.

    Args:
        net: an :class:`MLPNet` or :class:`ModuleNet` for these members.
        members: the members (configuration, seed, training configuration).
        data: ``(x_train, y_train, x_val, y_val)`` tensors.
        task: ``"classification"``, ``"regression"`` (mean squared error) or ``"gaussian"``
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
        groups: per-member data sets (an :class:`MLPNet` population only): member ``i`` trains
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
            t = m.train.replace(
                lr=self.cfg.lr, weight_decay=self.cfg.weight_decay, l1=self.cfg.l1, l2=self.cfg.l2,
                max_norm=self.cfg.max_norm, seed=self.cfg.seed,
            )
            if t != self.cfg:
                raise ConfigError(
                    f"member {m.key!r} differs from the population in more than lr, weight_decay, "
                    f"l1, l2 and max_norm"
                )
        x, y, xv, yv = data
        self.groups = None if groups is None else [int(g) for g in groups]
        if self.groups is not None:
            if not isinstance(net, MLPNet):
                raise ConfigError("per-member data sets (groups) need an MLPNet population")
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
            if run.scheduler is not None and old_runs[first].scheduler is not None:
                run.scheduler.load_state_dict(old_runs[first].scheduler.state_dict())

    def _build_optimizers(self) -> None:
        for run in self.runs:
            views = {n: self.params[n][run.start : run.stop] for n in self.net.names}
            weights = [views[n] for n in self.net.names if n in self.net.weight_names]
            others = [views[n] for n in self.net.names if n not in self.net.weight_names]
            run.views = views  # type: ignore[attr-defined]
            run.optimizer = _make_optimizer(run.train, weights, others, self.device)
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
        metric = "acc" if self.task == "classification" else "rmse"
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

    def _uniforms(self, batch: int) -> torch.Tensor | None:
        width = self.net.uniform_width
        if width == 0 or not getattr(self.net, "draws", True):
            return None
        u = torch.empty(len(self.seeds), batch, width, device=self.device)
        for s, g in enumerate(self.mask_gens):
            u[s].uniform_(generator=g)
        return u if self._identity else u.index_select(0, self.seed_index)

    def _train_epoch(self) -> torch.Tensor:
        cfg = self.cfg
        net, P = self.net, self.params
        running = torch.zeros(len(self.rows), device=self.device, dtype=torch.float64)
        per_batch_schedule = cfg.lr_schedule in SCHEDULE_STEPS_PER_BATCH
        sample_steps = 2
        first_step = self.epoch * self.steps_per_epoch
        net.update_schedule(self.epoch, first_step)
        for b, idx in enumerate(self._batches()):
            if b and net.per_step_schedule:
                net.update_schedule(self.epoch, first_step + b)
            bsz = idx.shape[1]
            if not self._identity:
                idx = idx.index_select(0, self.seed_index)
            if self.group_index is None:
                xb, yb = self.x[idx], self.y[idx]
            else:
                gi = self.group_index.unsqueeze(1)
                xb, yb = self.x[gi, idx], self.y[gi, idx]
            u = self._uniforms(bsz)
            losses, grads = net.train_step(P, self.buffers, xb, yb, u, self.task)
            if b < sample_steps:
                self._sample_memory()
            self._apply_regularizers(grads)
            if cfg.grad_clip is not None:
                _clip_per_member(grads, cfg.grad_clip)
            for run in self.runs:
                for n, view in run.views.items():
                    view.grad = grads[n][run.start : run.stop]
                run.optimizer.step()
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
        step = self.cfg.eval_batch_size
        if isinstance(self.net, MLPNet) and self.device.type == "cpu":
            # A chunk's activations (k, rows, widest) beyond a few MiB are fresh pages at every
            # allocation; measured at k=30, width 256: 1000 rows 268-361 ms an epoch's
            # evaluation, 250 rows 215-252 ms.
            step = max(1, min(step, _EVAL_CHUNK_BYTES // (k * max(self.net.widths) * 4)))
        for start in range(0, n_items, step):
            if self.groups is None:
                xb, yb = x[start : start + step], y[start : start + step]
            else:
                xb, yb = x[:, start : start + step], y[:, start : start + step]
            out = self.net.predict(P, B, xb)
            if self.task == "classification":
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
        if self.task == "classification":
            return {"loss": loss, "acc": (correct.double() / n_items).tolist()}
        if self.task == "gaussian":
            return {"loss": loss, "rmse": (sq / n_items).sqrt().tolist()}
        return {"loss": loss, "rmse": [math.sqrt(v) if v >= 0 else math.nan for v in loss]}

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
            metric = "acc" if self.task == "classification" else "rmse"
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


def _make_optimizer(cfg: TrainConfig, weights: list[torch.Tensor], others: list[torch.Tensor], device: torch.device):
    """torch's optimizer for one run of members, as droplab.train.build_optimizer builds it."""
    wd = cfg.weight_decay
    params = weights + others
    fused = {"fused": True} if device.type in ("cpu", "cuda") else {}
    if wd > 0:
        groups: Any = [{"params": weights, "weight_decay": wd}]
        if others:
            groups.append({"params": others, "weight_decay": 0.0})
    else:
        groups = params
    if cfg.optimizer == "sgd":
        if wd > 0:
            from droplab.regularize import SGDW

            return SGDW(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, **fused)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, **fused)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=0.0, **fused)
    return torch.optim.RMSprop(groups, lr=cfg.lr, momentum=cfg.momentum, foreach=True)


def _max_norm_(w: torch.Tensor, c: float, dims: tuple[int, ...]) -> None:
    """Max-norm per unit on a stacked weight (droplab.regularize's rule, member axis kept)."""
    from droplab.regularize.constraints import _clip_

    _clip_(w, c, dims)


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
