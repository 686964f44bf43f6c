"""What each configuration costs when it trains on its own: wall time per step and memory.

Inside a population every member trains in one vectorized step, so the ``seconds`` a sweep
records for a run are the epoch's time divided by the population's size: by construction every
configuration costs the same. That is what the sweep cost, and the report keeps it as such; it
says nothing about what dropout costs a model trained alone. :func:`measure_step_costs` measures
that:

* **Time.** One copy of each configuration (seed 0) trains on one fixed batch. In each of
  ``rounds`` rounds every configuration runs ``warmup`` untimed steps and then ``steps`` timed
  optimizer steps (forward, loss, backward, update), the configurations in an order rotated
  from round to round, so that a load spike on a shared machine falls on all of them alike
  (interleaving, as in ``benchmarks/``). The per-step time of a configuration is the median
  over rounds; its ratio to the baseline is taken round by round (both timed within seconds of
  each other) and summarized with a t interval over rounds.
* **Memory.** The bytes of the tensors autograd keeps for the backward pass (activations and
  dropout masks; counted once per storage through
  :func:`torch.autograd.graph.saved_tensors_hooks`) plus parameters, gradients and optimizer
  state after a step. On CUDA the peak of ``torch.cuda.max_memory_allocated`` over a step is
  recorded as well. On CPU the process's peak resident set size cannot tell one small model from
  another, which is why the saved-tensor count is the number compared.

Example::

    costs = measure_step_costs({"none": make_a, "p=0.5": make_b}, x, y, loss=F.cross_entropy,
                               baseline={"p=0.5": "none"})
    costs["p=0.5"]["ratio"], costs["p=0.5"]["memory_ratio"]
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from droplab.stats import mean_ci

__all__ = ["measure_step_costs", "sweep_step_costs", "STEPS", "ROUNDS", "WARMUP"]

#: Timed optimizer steps per configuration and round.
STEPS = 10
#: Rounds (each configuration timed once per round, in a rotated order).
ROUNDS = 9
#: Untimed steps before each timed block (caches, allocator, lazy initialization).
WARMUP = 2


def _state_bytes(model: nn.Module, optimizer: torch.optim.Optimizer) -> int:
    seen: set[int] = set()
    total = 0

    def add(t: torch.Tensor) -> None:
        nonlocal total
        if not isinstance(t, torch.Tensor) or t.device.type == "meta":
            return
        key = t.untyped_storage().data_ptr()
        if key in seen:
            return
        seen.add(key)
        total += t.untyped_storage().nbytes()

    for p in model.parameters():
        add(p)
        if p.grad is not None:
            add(p.grad)
    for state in optimizer.state.values():
        for v in state.values():
            if isinstance(v, torch.Tensor):
                add(v)
    return total


def _saved_bytes(step: Callable[[], None]) -> int:
    """Bytes of the tensors autograd saves for backward during one step (each storage once)."""
    seen: set[int] = set()
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        try:
            key = t.untyped_storage().data_ptr()
            if key not in seen:
                seen.add(key)
                total += t.untyped_storage().nbytes()
        except (RuntimeError, NotImplementedError):  # e.g. sparse or wrapper tensors: count the elements
            total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    return total


def measure_step_costs(
    makers: Mapping[str, Callable[[], tuple[nn.Module, torch.optim.Optimizer]]],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    baseline: Mapping[str, str] | None = None,
    steps: int = STEPS,
    rounds: int = ROUNDS,
    warmup: int = WARMUP,
    threads: int | None = 1,
) -> dict[str, dict[str, Any]]:
    """Per-step wall time and memory of each configuration trained alone, interleaved.

    Args:
        makers: configuration key -> a function returning a fresh ``(model, optimizer)``
            (built once per key; the model is put in training mode).
        x, y: one batch (on the device the models should train on).
        loss: ``loss(outputs, y)`` -> scalar tensor.
        baseline: key -> key of its baseline (e.g. the same configuration without dropout);
            ratios are computed for the keys listed. Default none.
        steps, rounds, warmup: see the module docstring. Defaults 10, 9, 2.
        threads: torch CPU threads while timing (restored after). Default 1: on a shared or
            busy machine several threads per step measure the scheduler (a 256-256 MLP step
            measured 10 ms with one thread and 600-1000 ms with two on a loaded 2-core box),
            not the model. None keeps the current setting.

    Returns:
        key -> ``{"step_ms", "step_ms_lo", "step_ms_hi"`` (median over rounds, and the t
        interval of the mean over rounds), ``"rounds"``, ``"steps"``, ``"saved_mb"``,
        ``"state_mb"``, ``"memory_mb"`` (their sum), ``"cuda_peak_mb"`` (CUDA only, else
        nan), and for keys with a baseline ``"baseline"``, ``"ratio"``, ``"ratio_lo"``,
        ``"ratio_hi"`` (per-round time ratio: mean and 95% t interval over rounds) and
        ``"memory_ratio"``}``.
    """
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _measure(makers, x, y, loss, baseline, steps, rounds, warmup)
    finally:
        torch.set_num_threads(previous)


def _measure(makers, x, y, loss, baseline, steps, rounds, warmup) -> dict[str, dict[str, Any]]:
    keys = list(makers)
    built = {}
    for k in keys:
        model, opt = makers[k]()
        model.train()
        built[k] = (model, opt)

    def make_step(k: str) -> Callable[[], None]:
        model, opt = built[k]

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            loss(model(x), y).backward()
            opt.step()

        return step

    step_fns = {k: make_step(k) for k in keys}
    cuda = x.device.type == "cuda"
    out: dict[str, dict[str, Any]] = {}
    for k in keys:
        saved = _saved_bytes(step_fns[k])
        peak = math.nan
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats(x.device)
            step_fns[k]()
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated(x.device) / 2**20
        state = _state_bytes(*built[k])
        out[k] = {"saved_mb": saved / 2**20, "state_mb": state / 2**20,
                  "memory_mb": (saved + state) / 2**20, "cuda_peak_mb": peak}
    per_round: dict[str, list[float]] = {k: [] for k in keys}
    for r in range(rounds):
        shift = r % len(keys)
        for k in keys[shift:] + keys[:shift]:
            fn = step_fns[k]
            for _ in range(warmup):
                fn()
            if cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(steps):
                fn()
            if cuda:
                torch.cuda.synchronize()
            per_round[k].append((time.perf_counter() - t0) / steps * 1e3)
    for k in keys:
        est = mean_ci(per_round[k])
        out[k].update(step_ms=statistics.median(per_round[k]), step_ms_lo=est.lo, step_ms_hi=est.hi,
                      rounds=rounds, steps=steps)
    for k, b in (baseline or {}).items():
        if k not in out or b not in out:
            continue
        ratios = [a / c for a, c in zip(per_round[k], per_round[b]) if c > 0]
        est = mean_ci(ratios)
        mem = out[b]["memory_mb"]
        out[k].update(baseline=b, ratio=est.mean, ratio_lo=est.lo, ratio_hi=est.hi,
                      memory_ratio=out[k]["memory_mb"] / mem if mem > 0 else math.nan)
    return out


def sweep_step_costs(plan: Any, resolved: list[Any], seed: int, baseline: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """:func:`measure_step_costs` of a sweep's configurations (what ``SweepResult.step_cost`` holds).

    Configurations on the same data are timed interleaved on one batch of the first one's
    batch size, each built as the sweep builds it (seed ``seed``); the global RNG is left as it
    was.

    Args:
        plan: the sweep's plan (:mod:`droplab.sweep.plan`): data and model builders.
        resolved: the configurations (``plan.resolve`` results), in sweep order.
        seed: the seed each model is built with.
        baseline: configuration key -> key of its no-dropout baseline.
    """
    import torch.nn.functional as F

    from droplab.sweep.population import Member
    from droplab.train.optim import build_optimizer

    groups: dict[str, list[Any]] = {}
    for r in resolved:
        groups.setdefault(r.data_key, []).append(r)
    out: dict[str, dict[str, Any]] = {}
    for rs in groups.values():
        splits = plan.data(rs[0])
        device = rs[0].train.resolve_device()
        bs = min(rs[0].train.batch_size, len(splits.x_train))
        x, y = splits.x_train[:bs].to(device), splits.y_train[:bs].to(device)
        if splits.task == "classification":
            loss = F.cross_entropy
        else:
            y, loss = y.float().reshape(len(y), -1), F.mse_loss

        def maker(r: Any, splits: Any = splits, device: torch.device = device) -> Callable[[], Any]:
            def make():
                member = Member(r.key, r.params, seed, r.train, r.rates)
                torch.manual_seed(seed)
                model = plan.builder(r, splits)(member).to(device)
                return model, build_optimizer(model, r.train)
            return make

        base = {r.key: baseline[r.key] for r in rs if r.key in baseline}
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(0)
            out.update(measure_step_costs({r.key: maker(r) for r in rs}, x, y, loss=loss, baseline=base))
    return out
