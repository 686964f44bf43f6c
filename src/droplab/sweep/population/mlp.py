"""The batched MLP path: droplab's MLP specs trained as stacked ``(K, in, out)`` weights.

For ``kind="mlp"`` specs without batch norm whose dropout is Bernoulli (``dropout``/``classic``,
no options): weights multiplied with ``torch.baddbmm`` (narrow products transposed on the CPU),
a hand-written backward for ReLU, autograd otherwise. Rates are per member: the uniforms are
drawn once per seed and each member keeps ``u >= p`` by
:func:`droplab.functional.batched_dropout_mask`, so masks nest across rates. Which engine trains
a set of members is decided here, once: :func:`population_net`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from droplab.errors import ConfigError
from droplab.functional import batched_dropout_mask, batched_dropout_params
from droplab.sweep.population.base import Member, Unstackable, _derive_seed, _Net
from droplab.sweep.population.losses import _loss_and_grad_out, _loss_per_member
from droplab.sweep.population.module import ModuleNet

__all__ = ["MLPNet", "mlp_fast_path", "mlp_positions", "mlp_rates", "population_net"]


# --- which MLP specs the fast path runs ---------------------------------------------------------
def mlp_fast_path(spec: Any) -> str | None:
    """Why ``spec`` cannot use :class:`MLPNet` (a sentence), or ``None`` if it can."""
    if spec.kind != "mlp":
        return f"kind {spec.kind!r} is not an MLP"
    if spec.batch_norm:
        return "batch norm is trained through vmap"
    for place, d in spec.dropout.items():
        if d.bernoulli_mode is None:
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


def mlp_rates(spec: Any) -> tuple[float, ...] | None:
    """``spec``'s rate at each position of :func:`mlp_positions` (a :class:`Member`'s ``rates``),
    or ``None`` when :class:`MLPNet` cannot train ``spec`` (see :func:`mlp_fast_path`)."""
    if mlp_fast_path(spec) is not None:
        return None
    return tuple(float(spec.dropout[place].rate(i)) for place, i in mlp_positions(spec))


def population_net(
    spec: Any,
    input_shape: Sequence[int],
    n_outputs: int,
    members: Sequence[Member],
    build: Callable[[Member], nn.Module] | None = None,
) -> Callable[[], _Net]:
    """The network maker of ``members`` for :func:`make_population`: the batched MLP if it can.

    The one place that chooses the engine: :class:`MLPNet` when every member brings its
    ``rates`` and MLPNet takes ``spec`` (it raises :class:`Unstackable` with the reason of
    :func:`mlp_fast_path` otherwise), else a :class:`ModuleNet` over ``build`` (default
    ``build_model(spec, input_shape, n_outputs)``, seeded per member by ModuleNet).

    Example::

        pop, why = make_population(population_net(spec, (40,), 10, members), members, data, task)
    """

    def make() -> _Net:
        if all(m.rates is not None for m in members):
            try:
                return MLPNet(spec, input_shape, n_outputs, members)
            except Unstackable:
                pass
        if build is None:
            from droplab.models import build_model

            return ModuleNet(lambda m: build_model(spec, input_shape, n_outputs), members)
        return ModuleNet(build, members)

    return make


_ACTS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu,
    "tanh": torch.tanh,
    "gelu": F.gelu,
    "selu": F.selu,
    "sigmoid": torch.sigmoid,
    "elu": F.elu,
}


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
        # Each position's dropout mode, "inverted" or "classic" (its layer's, see DropoutSpec).
        self.modes = [spec.dropout[place].bernoulli_mode for place, _ in self.positions]
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
        p_cols = torch.zeros(k, 1, max(self.uniform_width, 1))
        s_cols = torch.ones(k, 1, max(self.uniform_width, 1))
        self.eval_scale: dict[int, torch.Tensor] = {}
        self.active: set[int] = set()
        for col, pos in enumerate(self.positions):
            layer_input = 0 if pos[0] == "input" else pos[1] + 1
            a, b = self.columns[layer_input]
            p = rates[:, col]
            threshold, scale, eval_scale = batched_dropout_params(p, mode=self.modes[col])
            p_cols[:, 0, a:b] = threshold.unsqueeze(1)
            s_cols[:, 0, a:b] = scale.unsqueeze(1)
            if self.modes[col] == "classic":  # the others' eval scales are ones: skip them
                self.eval_scale[layer_input] = eval_scale.view(k, 1, 1)
            if bool((p > 0).any()):
                self.active.add(layer_input)
        self.p_cols, self.s_cols = p_cols.to(self._device), s_cols.to(self._device)
        self.eval_scale = {i: v.to(self._device) for i, v in self.eval_scale.items()}
        self.rates = rates  # (K, positions) float64: the exact rates now, for MC passes

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

    def activation_width(self, x: torch.Tensor) -> int:
        return max(self.widths)

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
        m = batched_dropout_mask(u, self.p_cols, self.s_cols, out=u)
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

    def counter_draws(self, task: str, device: torch.device) -> bool:
        # The fused step's nets (below): their uniforms come from the counter stream, 0.05 ms
        # per step in C++ for 20 seeds x 128 x 58 against 0.47 ms for 20 mt19937 generators
        # (a third of a retraining step of the UCI protocol). Decided by the net, task and
        # device alone, not by whether the C++ kernel built: the torch path draws the same bits.
        return self.manual and self.depth == 2 and task == "regression" and torch.device(device).type == "cpu"

    def _fusable(self, x: torch.Tensor, task: str) -> bool:
        # One hidden ReLU layer on the squared error, float32 on the CPU: one C++ call per step
        # (droplab.sweep.fused_step; about 3x faster for the UCI nets). Checked per step: cheap.
        if not (self.manual and self.depth == 2 and task == "regression"):
            return False
        if x.device.type != "cpu" or x.dtype != torch.float32:
            return False
        from droplab.sweep.fused_step import available

        return available()

    def _mc_fusable(self, x: torch.Tensor, P: dict[str, torch.Tensor]) -> bool:
        # One hidden ReLU layer, one output, float32 on the CPU: fused_step.mc_passes.
        if not (self.depth == 2 and self.activation == "relu" and self.widths[-1] == 1):
            return False
        if x.device.type != "cpu" or x.dtype != torch.float32 or P["W0"].dtype != torch.float32:
            return False
        from droplab.sweep.fused_step import available

        return available()

    # Population may hand train_step the uniforms once per seed, (S, B, width), after setting
    # uniform_rows (K,) (member k's row; reset to None after the step): the fused step reads
    # each member's row in place, with no (K, B, width) copy.
    # Likewise the batches once per distinct data stream (split and seed), (X, B, ...), after
    # setting data_rows (K,): members of one split and seed (a grid over rates and tau) share
    # their rows, gathered once instead of once per member.
    takes_seed_uniforms = True
    takes_data_rows = True
    uniform_rows: torch.Tensor | None = None
    data_rows: torch.Tensor | None = None

    def train_step(self, P, buffers, x, y, u, task):
        seed_index, data_index = self.uniform_rows, self.data_rows
        if self._fusable(x, task):
            from droplab.sweep.fused_step import mlp1_step

            cols = tuple(self.columns[i][0] if i in self.active else None for i in (0, 1))
            return mlp1_step(x.flatten(2), u if self.active else None, self.p_cols, self.s_cols,
                             cols, P["W0"], P["b0"], P["W1"], P["b1"], y, seed_index, data_index)
        if data_index is not None:
            x, y = x.index_select(0, data_index), y.index_select(0, data_index)
        if u is not None and seed_index is not None:
            u = u.index_select(0, seed_index)
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
        counter-based draws (``droplab.functional.counter.counter_dropout``): the mask of pass
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
        from droplab.functional.counter import counter_dropout, counter_threshold, counter_uniform

        check_positive_int("passes", passes)
        k = P["W0"].shape[0]
        if len(seeds) != k:
            raise ConfigError(f"mc_passes needs one seed per member: {k} members, got {len(seeds)} seeds")
        per_member = x.dim() == len(self.input_shape) + 2
        x = (x.flatten(2) if per_member else x.flatten(1).unsqueeze(0)).to(P["W0"].dtype)
        n = x.shape[1]
        example_bytes = 4 * k * (sum(self.widths) + max(self.widths))  # one example, one pass
        chunk = max(1, min(passes, budget_bytes // max(example_bytes * n, 1)))
        # A pass that does not fit the budget runs in blocks of examples: fresh multi-MiB
        # buffers per op would fault in every page (most of the time went to the kernel).
        block = n if chunk > 1 else max(1, min(n, budget_bytes // max(example_bytes, 1)))
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
            thr = torch.tensor([counter_threshold(r) for r in rates.tolist()], dtype=torch.float32)
            _, scale, _ = batched_dropout_params(rates, mode=self.modes[col])
            dev = P["W0"].device
            positions[layer_input] = (col, stream, thr.view(k, 1, 1).to(dev), scale.view(k, 1, 1).to(dev))
        if self._mc_fusable(x, P):
            # one C++ loop per chunk of passes (droplab.sweep.fused_step.mc_passes): the same
            # draws and masks, no per-pass activations; chunks bound only the outputs
            from droplab.sweep.fused_step import mc_passes as fused_mc

            owner = seed_index if shared else torch.arange(k)
            streams: list[torch.Tensor | None] = [None, None]
            thr2, scale2 = torch.zeros(k, 2), torch.ones(k, 2)
            for layer_input, (col, stream, thr, scale) in positions.items():
                streams[layer_input] = stream
                thr2[:, layer_input], scale2[:, layer_input] = thr.view(k), scale.view(k).float()
            chunk = max(1, min(passes, budget_bytes // max(4 * k * n, 1)))
            for t0 in range(0, passes, chunk):
                t = min(chunk, passes - t0)
                out = fused_mc(x, P, owner, (streams[0], streams[1]), thr2, scale2, t0, t,
                               data_index=None if per_member else torch.zeros(k, dtype=torch.int64))
                yield t0, out.unsqueeze(-1)
            return
        # One buffer per layer input, reused by every chunk and block (written with out=):
        # no allocation, hence no page faults, in the loop. Only the yielded outputs are new.
        rows_max = min(chunk, passes) * block
        bufs = [torch.empty(k * rows_max * w, dtype=x.dtype, device=x.device) for w in self.widths[:-1]]
        u_buf = torch.empty(k * rows_max * max(self.widths[:-1]), dtype=x.dtype, device=x.device)
        for t0 in range(0, passes, chunk):
            t = min(chunk, passes - t0)
            outs = []
            for n0 in range(0, n, block):
                nb = min(block, n - n0)
                rows = t * nb
                # (t passes x all examples) or (one pass x a block): either way the block's
                # draws are consecutive counters, from the first element's index on
                h = bufs[0][: k * rows * x.shape[-1]].view(k, t, nb, x.shape[-1])
                h = h.copy_(x[:, n0 : n0 + nb].unsqueeze(1).expand(k, t, nb, x.shape[-1])).view(k, rows, -1)
                for i in range(self.depth):
                    if i in positions:
                        col, stream, thr, scale = positions[i]
                        width = h.shape[-1]
                        offset = (t0 * n + n0) * width
                        if not shared:
                            h = counter_dropout(
                                h, self.rates[:, col], stream, scale=self.modes[col] == "inverted", offset=offset
                            )
                        elif bool((self.rates[:, col] > 0).any()):
                            u = counter_uniform((len(distinct), rows, width), stream, offset=offset, device=h.device)
                            mask = u_buf[: k * rows * width].view(k, rows, width)
                            torch.index_select(u, 0, seed_index, out=mask)
                            h.mul_(batched_dropout_mask(mask, thr, scale, out=mask))
                    W = P[f"W{i}"]
                    if i < self.depth - 1 and not _narrow(h, W):
                        out = bufs[i + 1][: k * rows * W.shape[2]].view(k, rows, W.shape[2])
                        h = torch.baddbmm(P[f"b{i}"], h, W, out=out)
                    else:
                        h = _baddbmm(P[f"b{i}"], h, W)
                    if i < self.depth - 1:
                        h = h.relu_() if self.activation == "relu" else act(h)
                outs.append(h.view(k, t, nb, -1))
            yield t0, outs[0] if len(outs) == 1 else torch.cat(outs, 2)


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
