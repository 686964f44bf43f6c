"""How :func:`droplab.inference.mc_predict` runs its T stochastic passes, fast and reproducibly.

Three ideas, each checked against the plain loop of T full forward passes (``cache=False``):

1. **Per-pass random streams.** With a seed, pass ``t`` draws from its own streams (torch's
   global generators and, for droplab layers with their own generator, a per-pass generator),
   derived from ``(seed, t)``. A pass's masks then do not depend on how passes are grouped, so
   batching passes cannot change them.
2. **Cached deterministic prefix.** Everything a forward pass computes before its first
   stochastic operation is the same in every pass (baal, PR #254: cache the layers before the
   first dropout layer). The maximal submodules that contain no stochastic layer are memoized
   during pass 0 while no stochastic layer has run yet; later passes get the stored outputs
   back without running them.
3. **Batched passes.** The remaining passes run ``Tc`` at a time (``Tc`` set by a memory
   budget measured in pass 0). The part before the first stochastic layer runs on the chunk's
   B rows once (cached modules give their stored output back); a stochastic layer that gets
   those B rows runs them once per pass, each from that pass's streams, and returns ``Tc x B``
   rows; one that gets ``Tc x B`` rows splits them into the passes. What follows the first
   stochastic layer (the Linear head of a CNN) runs once on the stacked rows.

Whether the stacked run gives exactly what separate passes give is checked once per call and
chunk size (two passes stacked against the same two passes run apart, bitwise, under a
throw-away seed); if an earlier cached output is used after the stochastic layer (a skip
connection), the cached outputs are stacked ``Tc`` times instead and checked again. If neither
matches (a layer whose batch axis is not the first, a kernel whose rows depend on the batch
size), the passes run one at a time, still with the cached prefix, else without.
Unguarded functional dropout (random whatever the flags) and stochastic code in the model's
own ``forward`` switch both off: where it runs is unknown.

``mode="function"`` ("sample one function", keras#14172, baal PR #49) draws one mask per pass
for all test points: an elementwise layer ``f`` is probed once per pass on ``(1, *features)``
inputs of zeros and ones under the same random state, giving ``f(x) = b + a * x`` (checked on a
random probe: dropout, Gaussian, alpha, spatial, DropBlock, DropPath, concrete dropout are all
of this form), then applied to every row and every chunk; a weight-mask layer (DropConnect,
WeightDrop) replays the random state of its first chunk in every later chunk.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Callable

import torch
from torch import Tensor, nn

from droplab.errors import ConfigError, DataError
from droplab.nn import StochasticLayer

__all__: list[str] = []

_OWN_SALT = 0x5DEECE66D  # layer generators of a pass: a stream apart from the global one
_CHECK_SEED = 0x2545F491  # the throw-away seed of the stacking check


class _Fallback(Exception):
    """The stacked run cannot reproduce separate passes; run them one at a time."""


def _layers_with_generators(model: nn.Module) -> list[StochasticLayer]:
    return [m for m in model.modules() if isinstance(m, StochasticLayer) and m.generator is not None]


class PassRNG:
    """Random streams per pass (seeded), or the live generators (unseeded)."""

    def __init__(self, model: nn.Module, seed: int | None, samples: int, device: torch.device):
        self.seed = seed
        self.layers = _layers_with_generators(model)
        self.cuda = device if device.type == "cuda" else None
        self.cpu: list[Tensor] = []
        self.gpu: list[Tensor] = []
        self.own: list[dict[str, torch.Generator]] = []
        if seed is None:
            return
        g = torch.Generator().manual_seed(seed)
        seeds = torch.randint(0, 2**62, (samples,), generator=g).tolist()
        devices = {str(m.generator.device): m.generator.device for m in self.layers}
        for s in seeds:
            self.cpu.append(torch.Generator().manual_seed(s).get_state())
            if self.cuda is not None:
                self.gpu.append(torch.Generator(device=self.cuda).manual_seed(s).get_state())
            self.own.append(
                {k: torch.Generator(device=d).manual_seed(s ^ _OWN_SALT) for k, d in devices.items()}
            )

    @contextmanager
    def session(self) -> Iterator[None]:
        """Around the whole run: with a seed, no state leaks out (global RNG, layer generators)."""
        if self.seed is None:
            yield
            return
        saved = [(m, m.generator) for m in self.layers]
        devices = [self.cuda.index or 0] if self.cuda is not None else []
        with torch.random.fork_rng(devices=devices):
            try:
                yield
            finally:
                for m, g in saved:
                    m.generator = g

    @contextmanager
    def use(self, t: int) -> Iterator[None]:
        """Draws inside come from pass ``t``'s streams, which advance (no-op unseeded)."""
        if self.seed is None:
            yield
            return
        torch.set_rng_state(self.cpu[t])
        if self.cuda is not None:
            torch.cuda.set_rng_state(self.gpu[t], self.cuda)
        own = self.own[t]
        for m in self.layers:
            m.generator = own[str(m.generator.device)]
        try:
            yield
        finally:
            self.cpu[t] = torch.get_rng_state()
            if self.cuda is not None:
                self.gpu[t] = torch.cuda.get_rng_state(self.cuda)

    def snapshot(self) -> list[Any]:
        """The current state of every stream a stochastic layer may draw from."""
        out: list[Any] = [torch.get_rng_state()]
        out.append(torch.cuda.get_rng_state(self.cuda) if self.cuda is not None else None)
        out.extend((m.generator, m.generator.get_state()) for m in self.layers)
        return out

    def restore(self, snap: list[Any]) -> None:
        torch.set_rng_state(snap[0])
        if snap[1] is not None:
            torch.cuda.set_rng_state(snap[1], self.cuda)
        for g, state in snap[2:]:
            g.set_state(state)


def _first_tensor(args: tuple, kwargs: dict) -> Tensor | None:
    for a in (*args, *kwargs.values()):
        if isinstance(a, Tensor):
            return a
    return None


def _is_weight_mask(module: nn.Module) -> bool:
    from droplab.inference.audit import stochastic_kind

    return stochastic_kind(module) == "weights"


class Executor:
    """Installs the memo and the per-pass split on a model for the duration of a run."""

    def __init__(
        self,
        model: nn.Module,
        wrapped: list[nn.Module],
        rng: PassRNG,
        *,
        mode: str,
        cache: bool,
        budget: int,
        forward: Callable[[Tensor, int], Tensor],
    ) -> None:
        self.model, self.rng, self.mode, self.budget = model, rng, mode, budget
        self.forward_fn = forward
        ids = {id(m) for m in wrapped}
        self.wrapped = [m for m in wrapped if m is not model]
        self.enabled = cache and len(self.wrapped) == len(wrapped)
        self.candidates: list[nn.Module] = []
        if self.enabled:
            self._find_candidates(model, ids)
        self.names = {id(m): name for name, m in model.named_modules()}
        # per-call state
        self.phase = "off"  # off | record | replay
        self.seen = False
        self.memo: list[tuple[nn.Module, Tensor]] = []
        self.versions: list[int] = []
        self.k = 0
        self.group: list[int] | None = None
        self.current = 0
        self.rows = 0
        self.stack_all = False
        self.calls: dict[int, int] = {}
        self.coef: dict[tuple[int, int, int], Any] = {}
        self.bytes_after = 0
        self.checked: dict[int, bool | str] = {}
        self.verified: bool | str | None = None
        self._saved: list[tuple[nn.Module, Any]] = []

    # -- structure --------------------------------------------------------------------------
    def _find_candidates(self, root: nn.Module, stochastic: set[int]) -> None:
        has: dict[int, bool] = {}

        def subtree(m: nn.Module) -> bool:
            if id(m) not in has:
                has[id(m)] = id(m) in stochastic or any(subtree(c) for c in m.children())
            return has[id(m)]

        def walk(m: nn.Module) -> None:
            for child in m.children():
                if not subtree(child):
                    self.candidates.append(child)
                elif id(child) not in stochastic:
                    walk(child)

        walk(root)

    @property
    def cached_names(self) -> tuple[str, ...]:
        return tuple(self.names.get(id(m), "?") for m, _ in self.memo) if self.verified else ()

    @contextmanager
    def installed(self) -> Iterator[None]:
        for m in self.candidates:
            self._patch(m, self._memo_forward(m))
        for m in self.wrapped:
            self._patch(m, self._split_forward(m))
        try:
            yield
        finally:
            for m, old in reversed(self._saved):
                if old is None:
                    del m.forward
                else:
                    m.forward = old
            self._saved.clear()

    def _patch(self, m: nn.Module, fn: Callable[..., Any]) -> None:
        self._saved.append((m, m.__dict__.get("forward")))
        m.forward = fn

    # -- the memo ---------------------------------------------------------------------------
    def _memo_forward(self, m: nn.Module) -> Callable[..., Any]:
        orig = m.forward

        def forward(*args: Any, **kwargs: Any) -> Any:
            if self.phase == "record" and not self.seen:
                out = orig(*args, **kwargs)
                if isinstance(out, Tensor) and out.dim() > 0 and out.shape[0] == self.rows:
                    self.memo.append((m, out))
                else:
                    self.seen = True  # the prefix ends at an output it cannot replay
                return out
            if self.phase == "replay" and not self.seen and self.k < len(self.memo):
                mod, out = self.memo[self.k]
                if mod is not m:
                    raise _Fallback("the prefix called other modules than in pass 0")
                self.k += 1
                n = len(self.group) if self.group else 1
                if n > 1 and self.stack_all:
                    return out.unsqueeze(0).expand(n, *out.shape).reshape(n * out.shape[0], *out.shape[1:])
                return out  # no copy: writes into it are caught by its version counter
            out = orig(*args, **kwargs)
            if self.phase == "record" and self.seen and isinstance(out, Tensor):
                self.bytes_after += out.numel() * out.element_size()
            return out

        return forward

    # -- the per-pass split -----------------------------------------------------------------
    def _split_forward(self, m: nn.Module) -> Callable[..., Any]:
        orig = m.forward

        def forward(*args: Any, **kwargs: Any) -> Any:
            self.seen = True
            call = self.calls.get(id(m), 0)
            self.calls[id(m)] = call + 1
            if not self.group or len(self.group) == 1:
                t = self.group[0] if self.group else self.current
                out = self._apply(m, orig, t, call, args, kwargs)
            else:
                # Input of n x B rows: one slice per pass. Input of B rows comes from the
                # cached prefix (the same in every pass): every pass gets all of it.
                n = len(self.group)
                total = n * self.rows
                x = _first_tensor(args, kwargs)
                if x is None or x.dim() == 0 or x.shape[0] not in (total, self.rows):
                    raise _Fallback(f"{type(m).__name__} got no batch-first input")

                def part(a: Any, i: int) -> Any:
                    if isinstance(a, Tensor) and a.dim() > 0 and a.shape[0] == total:
                        return a[i * self.rows : (i + 1) * self.rows]
                    return a

                outs = []
                for i, t in enumerate(self.group):
                    a_i = tuple(part(a, i) for a in args)
                    k_i = {k: part(v, i) for k, v in kwargs.items()}
                    with self.rng.use(t):
                        outs.append(self._apply(m, orig, t, call, a_i, k_i))
                if not all(isinstance(o, Tensor) for o in outs):
                    raise _Fallback(f"{type(m).__name__} returns no tensor")
                out = torch.cat(outs)
            if self.phase == "record" and isinstance(out, Tensor):
                self.bytes_after += out.numel() * out.element_size()
            return out

        return forward

    def _apply(self, m: nn.Module, orig: Callable[..., Any], t: int, call: int, args: tuple, kwargs: dict) -> Any:
        if self.mode == "example":
            return orig(*args, **kwargs)
        key = (t, id(m), call)
        if _is_weight_mask(m):
            # one weight mask per pass: every chunk replays the random state of the first
            if key not in self.coef:
                self.coef[key] = self.rng.snapshot()
                return orig(*args, **kwargs)
            now = self.rng.snapshot()
            self.rng.restore(self.coef[key])
            try:
                return orig(*args, **kwargs)
            finally:
                self.rng.restore(now)
        x = _first_tensor(args, kwargs)
        if len(args) != 1 or kwargs or x is None or x.dim() == 0:
            raise ConfigError(
                f"mode='function' shares one mask across examples for element-wise layers of one "
                f"input and for DropConnect/WeightDrop; {self.names.get(id(m), '?')!r} "
                f"({type(m).__name__}) is neither"
            )
        if key not in self.coef:
            self.coef[key] = self._coefficients(m, orig, x)
        a, b = self.coef[key]
        return b + x * a

    def _coefficients(self, m: nn.Module, orig: Callable[..., Any], x: Tensor) -> tuple[Tensor, Tensor]:
        shape = (1, *x.shape[1:])
        snap = self.rng.snapshot()
        probe = torch.rand(shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        probe = probe.to(device=x.device, dtype=x.dtype) * 4 - 2
        y_r = orig(probe.clone())  # the layer may work in place
        self.rng.restore(snap)
        y_0 = orig(torch.zeros(shape, dtype=x.dtype, device=x.device))
        self.rng.restore(snap)
        y_1 = orig(torch.ones(shape, dtype=x.dtype, device=x.device))
        a = y_1 - y_0
        ok = isinstance(y_r, Tensor) and y_r.shape == shape and torch.allclose(
            y_r, y_0 + probe * a, rtol=1e-4, atol=1e-5
        )
        if not ok:
            raise ConfigError(
                f"mode='function' needs layers whose random output is b + a * x element by "
                f"element; {self.names.get(id(m), '?')!r} ({type(m).__name__}) is not"
            )
        return a, y_0

    # -- running the passes -----------------------------------------------------------------
    def _run(self, xb: Tensor, *, phase: str, group: list[int] | None, current: int = 0) -> Tensor:
        self.phase, self.group, self.current = phase, group, current
        self.seen, self.k, self.calls = False, 0, {}
        try:
            return self.forward_fn(xb, (len(group) if group else 1) * self.rows)
        finally:
            self.phase, self.group = "off", None

    def passes(self, xb: Tensor, samples: int) -> Iterator[Tensor]:
        """Outputs of passes 0..samples-1 on the chunk ``xb``, in pass order."""
        self.rows = xb.shape[0]
        if not self.enabled:
            for t in range(samples):
                with self.rng.use(t):
                    yield self._run(xb, phase="off", group=None, current=t)
            return
        self.memo, self.bytes_after = [], 0
        with self.rng.use(0):
            yield self._run(xb, phase="record", group=None, current=0)
        self.versions = [out._version for _, out in self.memo]
        if self.rows not in self.checked:  # once per chunk size: kernels may differ by size
            self.checked[self.rows] = self._verify(xb)
        self.verified = self.checked[self.rows]
        if not self.verified:
            for t in range(1, samples):
                with self.rng.use(t):
                    yield self._run(xb, phase="off", group=None, current=t)
            return
        if self.verified == "loop":
            for t in range(1, samples):
                with self.rng.use(t):
                    yield self._run(xb, phase="replay", group=[t])
                self._check_versions()
            return
        per_pass = self.bytes_after
        if self.stack_all:
            per_pass += sum(out.numel() * out.element_size() for _, out in self.memo)
        size = max(1, min(samples - 1, self.budget // max(1, per_pass)))
        for start in range(1, samples, size):
            group = list(range(start, min(samples, start + size)))
            n = len(group)
            x_in = xb  # the part before the first stochastic layer runs on B rows, once
            if n == 1:  # a group of one draws as a plain pass does
                with self.rng.use(group[0]):
                    out = self._run(x_in, phase="replay", group=group)
            else:
                out = self._run(x_in, phase="replay", group=group)
            if out.shape[0] != n * self.rows:
                raise _Fallback("the stacked output lost its pass axis")  # verified; a bug if met
            self._check_versions()
            yield from out.reshape(n, self.rows, *out.shape[1:]).unbind(0)

    def _verify(self, xb: Tensor) -> bool | str:
        """Two passes stacked give bitwise what they give apart? (throw-away streams)."""
        if not self.wrapped:
            return False
        check = PassRNG(self.model, _CHECK_SEED, 2, _device_of(xb))
        saved_rng, saved_mode, saved_coef = self.rng, self.mode, self.coef
        self.rng, self.mode, self.coef = check, "example", {}
        try:
            with check.session():
                apart = []
                for t in range(2):
                    with check.use(t):
                        apart.append(self._run(xb, phase="replay", group=[t]))
                if not self._intact():
                    return False  # the model writes into cached outputs: cache nothing
                for stack_all in (False, True) if self.memo else (False,):
                    self.stack_all = stack_all
                    self.rng = PassRNG(self.model, _CHECK_SEED, 2, _device_of(xb))
                    try:
                        together = self._run(xb, phase="replay", group=[0, 1])
                    except _Fallback:
                        continue
                    except (RuntimeError, DataError):  # shapes of an unstacked skip connection
                        continue
                    if not self._intact():
                        return False  # the model writes into cached outputs: cache nothing
                    if self._same(together, apart):
                        return True
                self.stack_all = False
                return "loop"
        except _Fallback:
            return False
        finally:
            self.rng, self.mode, self.coef = saved_rng, saved_mode, saved_coef

    def _intact(self) -> bool:
        return [out._version for _, out in self.memo] == self.versions

    def _check_versions(self) -> None:
        if not self._intact():  # the same code wrote into a cached output when checked: a bug
            raise RuntimeError("mc_predict: a cached output was modified in place after the check")

    def _same(self, together: Tensor, apart: list[Tensor]) -> bool:
        if not isinstance(together, Tensor) or together.shape[0] != 2 * self.rows:
            return False
        return torch.equal(together, torch.cat(apart))


def _device_of(x: Tensor) -> torch.device:
    return x.device
