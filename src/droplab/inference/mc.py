"""Monte Carlo dropout: average stochastic passes, with uncertainty, and compare to weight scaling.

A network trained with dropout is an ensemble of sub-networks that share weights. Srivastava et
al. (2014, JMLR 15, section 7.5 and Fig. 11) predict with one deterministic pass whose weights
are scaled by the keep probability ("weight scaling"; with inverted dropout that scaling is
already built into training, so it is the plain eval-mode pass) and show that averaging the
predictions of T sampled sub-networks ("Monte Carlo model averaging") matches it at about
T = 50. Gal & Ghahramani (2016, "Dropout as a Bayesian Approximation", ICML,
arXiv:1506.02142) read the same average as approximate Bayesian inference and the spread of the
T predictions as model uncertainty.

* :func:`mc_mode` -- context manager: eval mode everywhere except the dropout family.
* :func:`mc_predict` -- mean prediction and uncertainty over T passes (:class:`MCResult`).
* :func:`predict` -- the deterministic eval-mode ("weight scaling") outputs.
* :func:`mc_vs_weight_scaling` -- accuracy and NLL of MC averaging against weight scaling as T
  grows, with confidence intervals over sampling seeds.

What :func:`mc_mode` switches to training mode (and nothing else; batch norm and every other
module stay in eval mode, so running statistics are neither used from the batch nor updated):

1. droplab's dropout-family layers (:class:`droplab.nn.StochasticLayer`) and torch's
   ``Dropout``, ``Dropout1d/2d/3d``, ``AlphaDropout``, ``FeatureAlphaDropout``;
2. torch's ``RNN``/``GRU``/``LSTM`` with dropout between layers and ``MultiheadAttention`` with
   attention dropout (their flag only switches that dropout), and ``TransformerEncoderLayer``/
   ``TransformerDecoderLayer`` (their flag only disables the eval "fast path", which would
   otherwise skip their dropout submodules);
3. parameter-free leaf modules named like a dropout layer (timm's ``DropPath``/``DropBlock2d``,
   torchvision's ``StochasticDepth``);
4. modules whose ``forward`` calls a functional dropout guarded by their own flag, e.g.
   ``F.dropout(x, self.p, self.training)``: found by a probe pass when an example input is
   available (:func:`mc_predict` always probes its first batch), or named in ``include=``. Only
   the flag of that module is set, not of its children; a module whose training mode would
   change a buffer is refused (see :func:`droplab.inference.audit.find_guarded_functional`).

Functional dropout that ignores ``training`` (``F.dropout(x, p)``, default ``training=True``) is
always active and needs nothing; :func:`droplab.inference.audit` flags it.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from droplab._checks import check_choice, check_positive_int, check_probability, did_you_mean
from droplab.errors import ConfigError, DataError, DroplabWarning
from droplab.functional.counter import draw_seed
from droplab.inference.audit import _cuda_devices, find_guarded_functional, stochastic_kind
from droplab.nn import StochasticLayer
from droplab.stats import mean_ci

__all__ = ["MCResult", "mc_mode", "mc_predict", "predict", "mc_vs_weight_scaling", "TASKS", "MODES"]

#: What the model's output means: logits of classes, or real-valued predictions.
TASKS: tuple[str, ...] = ("classification", "regression")

# Flag only selects torch's fused inference path, which ignores the dropout children.
_FASTPATH: tuple[type[nn.Module], ...] = (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)
_NORM = nn.modules.batchnorm._NormBase
_ROOT = "<root>"


# --------------------------------------------------------------------------------------------
# mc_mode
# --------------------------------------------------------------------------------------------


def _resolve_include(model: nn.Module, include: Iterable[Any]) -> list[nn.Module]:
    if isinstance(include, (str, nn.Module)):
        include = [include]
    named = dict(model.named_modules())
    ids = {id(m) for m in named.values()}
    out = []
    for item in include:
        if isinstance(item, str):
            key = "" if item == _ROOT else item
            if key not in named:
                raise ConfigError(
                    f"include names no submodule {item!r} of the model"
                    f"{did_you_mean(item, [n for n in named if n])}"
                )
            module = named[key]
        elif isinstance(item, nn.Module):
            if id(item) not in ids:
                raise ConfigError(
                    f"include holds a {type(item).__name__} that is not a submodule of the model"
                )
            module = item
        else:
            raise ConfigError(
                f"include must hold submodules or their names, got {type(item).__name__}"
            )
        if isinstance(module, _NORM):
            raise ConfigError(
                f"include names {item if isinstance(item, str) else type(item).__name__!r}, a "
                f"normalization layer with running statistics; mc_mode keeps these in eval mode"
            )
        out.append(module)
    return out


@contextmanager
def _mc_context(
    model: nn.Module, include: Iterable[Any], example_input: Any, info: dict | None = None
) -> Iterator[tuple[tuple[str, ...], bool]]:
    """:func:`mc_mode`'s body; also yields whether anything stochastic runs at all.

    ``info``, if given, receives ``"stochastic"`` (the modules whose own draws make a pass
    random) and ``"random_anyway"`` (a random operation that follows no flag was met).
    """
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    flags = {m: m.training for m in model.modules()}
    try:
        extra = _resolve_include(model, include)
        model.eval()
        chosen = [m for m in model.modules() if stochastic_kind(m) is not None]
        stochastic = bool(chosen) or bool(extra)
        chosen += [m for m in model.modules() if isinstance(m, _FASTPATH)]
        random_anyway = False
        if example_input is not None:
            found, notes, random_anyway = find_guarded_functional(model, example_input)
            for note in notes:
                warnings.warn(note, DroplabWarning, stacklevel=4)
            chosen += found
            stochastic = stochastic or bool(found) or random_anyway
        else:
            stochastic = True  # unknown without a probe: do not claim otherwise
        if info is not None:
            seen: set[int] = set()
            info["stochastic"] = [
                m for m in chosen + extra
                if not isinstance(m, _FASTPATH) and not (id(m) in seen or seen.add(id(m)))
            ]
            info["random_anyway"] = example_input is None or random_anyway
        yield _apply(model, chosen + extra), stochastic
    finally:
        for module, flag in flags.items():
            module.training = flag


@contextmanager
def mc_mode(
    model: nn.Module, *, include: Iterable[Any] = (), example_input: Any = None
) -> Iterator[tuple[str, ...]]:
    """Context manager: eval mode everywhere except the dropout family (for MC dropout).

    Puts ``model`` in eval mode, then sets ``training = True`` on the stochastic modules only
    (see the module docstring for the list), never recursively: batch norm stays in eval mode
    and its running statistics are neither used from the batch nor updated. On exit every
    module's previous ``training`` flag is restored, also when the body raises.

    Gal & Ghahramani, "Dropout as a Bayesian Approximation", ICML 2016, arXiv:1506.02142.

    Args:
        model: the network.
        include: extra submodules (objects or ``named_modules`` names) whose own flag to set,
            for a ``forward`` that calls ``F.dropout(x, p, self.training)``. Default ``()``.
            Normalization layers with running statistics are refused.
        example_input: if given (a tensor, tuple of arguments or dict of keywords), a probe pass
            finds such modules automatically (see :func:`droplab.inference.audit
            .find_guarded_functional`); calls it cannot switch on are reported as
            :class:`~droplab.errors.DroplabWarning`. Default ``None``: no probe.

    Yields:
        The names of the modules switched to training mode (``"<root>"`` for the model).

    Example:
        >>> model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Dropout(0.5))
        >>> with mc_mode(model) as switched:
        ...     model[1].training, model[2].training, switched
        (False, True, ('2',))
    """
    with _mc_context(model, include, example_input) as (names, _):
        yield names


def _apply(model: nn.Module, chosen: Sequence[nn.Module]) -> tuple[str, ...]:
    ids = {id(m) for m in chosen}
    for m in chosen:
        m.training = True
    return tuple(name or _ROOT for name, m in model.named_modules() if id(m) in ids)


# --------------------------------------------------------------------------------------------
# Shared plumbing
# --------------------------------------------------------------------------------------------


def _check_inputs(inputs: Any) -> Tensor:
    if not isinstance(inputs, Tensor):
        raise DataError(f"inputs must be a tensor of shape (N, ...), got {type(inputs).__name__}")
    if inputs.dim() == 0 or inputs.shape[0] == 0:
        raise DataError(f"inputs must hold at least one example, got shape {tuple(inputs.shape)}")
    return inputs


def _device(model: nn.Module, inputs: Tensor) -> torch.device:
    first = next(model.parameters(), None)
    if first is None:
        first = next(model.buffers(), None)
    return first.device if first is not None else inputs.device


def _resolve_seed(seed: int | None, generator: torch.Generator | None) -> int | None:
    if seed is not None and generator is not None:
        raise ConfigError("give seed or generator, not both")
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise ConfigError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        return draw_seed(generator)
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    return seed


@contextmanager
def _seeded(model: nn.Module, seed: int | None) -> Iterator[None]:
    """With a seed: every draw of the block comes from it, and no RNG state leaks out.

    The global generators are forked (``torch.random.fork_rng``) and seeded inside; droplab
    layers that carry their own generator get a temporary one seeded with ``seed`` (per device),
    then their own back. Without a seed nothing changes: the draws advance the usual generators.
    """
    if seed is None:
        yield
        return
    layers = [m for m in model.modules() if isinstance(m, StochasticLayer) and m.generator is not None]
    saved = [(m, m.generator) for m in layers]
    temps: dict[str, torch.Generator] = {}
    with torch.random.fork_rng(devices=_cuda_devices()):
        torch.manual_seed(seed)
        try:
            for m in layers:
                device = str(m.generator.device)
                if device not in temps:
                    temps[device] = torch.Generator(device=m.generator.device).manual_seed(seed)
                m.generator = temps[device]
            yield
        finally:
            for m, g in saved:
                m.generator = g


def _forward(model: nn.Module, xb: Tensor, task: str, rows: int | None = None) -> Tensor:
    out = model(xb)
    rows = xb.shape[0] if rows is None else rows  # stacked passes: passes x batch rows
    if not isinstance(out, Tensor):
        raise DataError(
            f"the model must return one tensor of predictions, got {type(out).__name__}"
        )
    if out.shape[:1] != (rows,):
        raise DataError(
            f"the model's output must start with the batch axis ({rows}), "
            f"got shape {tuple(out.shape)}"
        )
    if task == "classification" and out.dim() != 2:
        raise DataError(
            f"classification expects logits of shape (N, C), got shape {tuple(out.shape)}"
        )
    return out


def _chunks(inputs: Tensor, batch_size: int, device: torch.device) -> Iterator[Tensor]:
    for start in range(0, inputs.shape[0], batch_size):
        yield inputs[start : start + batch_size].to(device)


def _probe_input(inputs: Tensor, batch_size: int, device: torch.device) -> Tensor:
    return inputs[: min(batch_size, inputs.shape[0])].to(device)


# --------------------------------------------------------------------------------------------
# mc_predict
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class MCResult:
    """Moments of ``samples`` stochastic predictions per example (what :func:`mc_predict` returns).

    Attributes:
        task: ``"classification"`` or ``"regression"``.
        samples: number of stochastic passes T.
        mean: classification: mean class probabilities ``(N, C)`` (the MC-averaged
            prediction); regression: mean output, the shape of the model's output.
        variance: variance across the T passes (divided by T) of each class probability
            ``(N, C)``, or of each regression output.
        predictive_entropy: ``H[mean]`` in nats, ``(N,)`` (total uncertainty); ``None`` for
            regression.
        expected_entropy: mean over passes of ``H[p_t]`` (aleatoric part), ``(N,)``; ``None`` for
            regression.
        mutual_information: ``predictive_entropy - expected_entropy`` (epistemic part; BALD,
            Houlsby et al. 2011, arXiv:1112.5745), ``(N,)``; ``None`` for regression.
        switched: the modules that were in training mode during the passes.
        draws: with ``draws=True``, every pass's prediction ``(T, N, C)`` (class probabilities)
            or ``(T, *output)`` (regression); else ``None``.
        cached: the submodules computed once per chunk instead of once per pass (the
            deterministic prefix); empty when the passes ran in full.
        mode: ``"example"`` (a mask per example and pass) or ``"function"`` (a mask per pass).

    Tensors are float32 on the CPU (accumulated in float64).
    """

    task: str
    samples: int
    mean: Tensor
    variance: Tensor
    predictive_entropy: Tensor | None
    expected_entropy: Tensor | None
    mutual_information: Tensor | None
    switched: tuple[str, ...] = ()
    draws: Tensor | None = None
    cached: tuple[str, ...] = ()
    mode: str = "example"

    @property
    def probs(self) -> Tensor:
        """The mean class probabilities ``(N, C)`` (classification only)."""
        if self.task != "classification":
            raise ConfigError("probs exist for task='classification' only; use mean")
        return self.mean

    def predictions(self) -> Tensor:
        """Predicted classes ``(N,)`` (argmax of the mean probabilities); regression: ``mean``."""
        return self.mean.argmax(dim=-1) if self.task == "classification" else self.mean


def _entropy(p: Tensor) -> Tensor:
    return -torch.special.xlogy(p, p).sum(dim=-1)


#: How masks are shared in :func:`mc_predict`: one per example and pass, or one per pass.
MODES: tuple[str, ...] = ("example", "function")
_DEFAULT_BUDGET = 256 << 20


def mc_predict(
    model: nn.Module,
    inputs: Tensor,
    samples: int = 50,
    *,
    batch_size: int = 1024,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    task: str = "classification",
    include: Iterable[Any] = (),
    detect: bool = True,
    mode: str = "example",
    cache: bool = True,
    memory_budget: int = _DEFAULT_BUDGET,
    draws: bool = False,
) -> MCResult:
    """Monte Carlo dropout: average ``samples`` stochastic passes, with their uncertainty.

    Srivastava et al., "Dropout: A Simple Way to Prevent Neural Networks from Overfitting",
    JMLR 15, 2014 (MC model averaging, section 7.5); Gal & Ghahramani, "Dropout as a Bayesian
    Approximation", ICML 2016, arXiv:1506.02142 (MC dropout). The passes run under
    :func:`mc_mode` (only the dropout family is stochastic; batch norm stays in eval mode with
    its running statistics untouched) and ``torch.no_grad``; all modes are restored afterwards.

    Inputs are processed ``batch_size`` examples at a time, each chunk through all ``samples``
    passes, with running moments (Welford) in float64. With ``cache=True`` (default) the
    deterministic part of the network before its first stochastic operation runs once per
    chunk, not once per pass (as in baal, PR #254), and the remaining passes run stacked,
    ``Tc`` at a time, ``Tc`` chosen so that one stacked pass stays within ``memory_budget``
    bytes (measured on the first pass). With a seed, every pass draws from its own random
    streams, so the result is bitwise identical to ``cache=False`` (the plain loop of T
    forward passes); where stacking would change a bit (checked once per call) the passes run
    one at a time. See :mod:`droplab.inference._passes` for the rules.

    Models that are ensembles by construction take another route through the same result:
    see :func:`droplab.inference.members.member_outputs` (a deep ensemble from
    :func:`droplab.ensemble`, a model with Masksembles or BatchEnsemble layers); there the
    "passes" are the M members and ``samples`` is ignored.

    Args:
        model: the trained network; for classification it returns logits ``(N, C)``.
        inputs: the examples, ``(N, ...)``; moved chunk by chunk to the model's device.
        samples: number of stochastic passes T (default 50, the paper's Fig. 11 figure).
        batch_size: examples per forward pass (default 1024).
        seed: if given, every draw comes from this seed, inside ``torch.random.fork_rng``: the
            caller's global RNG state is the same afterwards, and the same seed (with the same
            ``batch_size``) gives bitwise identical results, with or without ``cache``. Pass
            ``t`` draws from streams seeded from ``(seed, t)``; droplab layers with their own
            generator use a per-pass one. Default ``None``: the usual generators, advanced as
            training passes would.
        generator: alternatively, a ``torch.Generator`` to draw that seed from (it advances
            once). Give at most one of ``seed`` and ``generator``.
        task: ``"classification"`` (default; softmax of the outputs) or ``"regression"``.
        include: extra modules whose ``training`` flag to set (see :func:`mc_mode`).
        detect: probe the first chunk for modules whose functional dropout follows their own
            ``training`` flag and switch those on too (default True; see :func:`mc_mode`).
            Without the probe, ``cache`` is not used (an unguarded random call could hide in
            the prefix).
        mode: ``"example"`` (default: each example gets its own mask in each pass) or
            ``"function"`` (one mask per pass, shared by every input: each pass is one sampled
            network evaluated on the whole set; keras#14172). Element-wise layers and
            DropConnect/WeightDrop support it; others raise :class:`ConfigError`.
        cache: compute the deterministic prefix once and stack the passes (default True).
        memory_budget: bytes one stacked group of passes may use (default 256 MiB).
        draws: keep every pass's prediction in :attr:`MCResult.draws` (default False).

    Returns:
        An :class:`MCResult`.

    Shape:
        inputs ``(N, *)``; classification ``mean``/``variance`` ``(N, C)`` and entropies
        ``(N,)``; regression ``mean``/``variance`` shaped like the model's output.

    Example:
        >>> model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 3))
        >>> result = mc_predict(model, torch.randn(16, 8), samples=20, seed=0)
        >>> result.probs.shape, result.mutual_information.shape
        (torch.Size([16, 3]), torch.Size([16]))
        >>> result.cached
        ('0', '1')
    """
    from droplab.inference import _passes

    if not isinstance(model, nn.Module):
        raise ConfigError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    inputs = _check_inputs(inputs)
    samples = check_positive_int("samples", samples)
    batch_size = check_positive_int("batch_size", batch_size)
    memory_budget = check_positive_int("memory_budget", memory_budget)
    check_choice("task", task, TASKS)
    check_choice("mode", mode, MODES)
    seed = _resolve_seed(seed, generator)
    from droplab.inference.members import member_outputs, _is_member_model

    if _is_member_model(model):
        return _member_result(model, inputs, batch_size, task, draws, member_outputs)
    device = _device(model, inputs)
    example = _probe_input(inputs, batch_size, device) if detect else None
    classify = task == "classification"
    parts: dict[str, list[Tensor]] = {"mean": [], "var": [], "pe": [], "ee": [], "draws": []}
    info: dict[str, Any] = {}
    with torch.no_grad(), _mc_context(model, include, example, info) as (switched, stochastic):
        if not stochastic:
            warnings.warn(
                "mc_predict found nothing stochastic it could switch on (no dropout-family "
                "layer, no functional dropout that follows a training flag): all samples are "
                "identical",
                DroplabWarning,
                stacklevel=2,
            )
        rng = _passes.PassRNG(model, seed, samples, device)
        runner = _passes.Executor(
            model, info["stochastic"], rng, mode=mode,
            cache=cache and not info["random_anyway"], budget=memory_budget,
            forward=lambda xb, rows: _forward(model, xb, task, rows),
        )
        with rng.session(), runner.installed():
            for xb in _chunks(inputs, batch_size, device):
                mean = m2 = ent = None
                kept = []
                for t, out in enumerate(runner.passes(xb, samples)):
                    value = out.double()
                    if classify:
                        value = torch.softmax(value, dim=-1)
                    if draws:
                        kept.append(value.float().cpu())
                    if mean is None:
                        mean, m2 = value.clone(), torch.zeros_like(value)
                        ent = _entropy(value) if classify else None
                        continue
                    delta = value - mean  # Welford's running mean and sum of squares
                    mean += delta / (t + 1)
                    m2 += delta * (value - mean)
                    if ent is not None:
                        ent += _entropy(value)
                parts["mean"].append(mean.cpu())
                parts["var"].append((m2 / samples).clamp_min_(0.0).cpu())
                if draws:
                    parts["draws"].append(torch.stack(kept))
                if ent is not None:
                    parts["pe"].append(_entropy(mean).cpu())
                    parts["ee"].append((ent / samples).cpu())
    return _result(
        task, samples, parts, switched=switched, cached=runner.cached_names, mode=mode
    )


def _result(task: str, samples: int, parts: dict[str, list[Tensor]], **extra: Any) -> MCResult:
    mean, var = torch.cat(parts["mean"]), torch.cat(parts["var"])
    pe = ee = mi = None
    if task == "classification":
        pe64, ee64 = torch.cat(parts["pe"]), torch.cat(parts["ee"])
        # Jensen: H[mean] >= mean H, so MI >= 0 up to rounding; clamp the rounding away.
        mi = (pe64 - ee64).clamp_min(0.0).float()
        pe, ee = pe64.float(), ee64.float()
    kept = torch.cat(parts["draws"], dim=1) if parts.get("draws") else None
    return MCResult(
        task=task, samples=samples, mean=mean.float(), variance=var.float(),
        predictive_entropy=pe, expected_entropy=ee, mutual_information=mi, draws=kept, **extra,
    )


def _member_result(
    model: nn.Module, inputs: Tensor, batch_size: int, task: str, draws: bool, member_outputs: Any
) -> MCResult:
    """The moments of an ensemble's M member predictions (see :func:`mc_predict`)."""
    classify = task == "classification"
    parts: dict[str, list[Tensor]] = {"mean": [], "var": [], "pe": [], "ee": [], "draws": []}
    members = 0
    for start in range(0, inputs.shape[0], batch_size):
        out = member_outputs(model, inputs[start : start + batch_size]).double()  # (M, B, ...)
        members = out.shape[0]
        if classify:
            if out.dim() != 3:
                raise DataError(
                    f"classification expects member logits of shape (M, N, C), got {tuple(out.shape)}"
                )
            out = torch.softmax(out, dim=-1)
        mean = out.mean(0)
        parts["mean"].append(mean.cpu())
        parts["var"].append(out.var(0, unbiased=False).cpu())
        if draws:
            parts["draws"].append(out.float().cpu())
        if classify:
            parts["pe"].append(_entropy(mean).cpu())
            parts["ee"].append(_entropy(out).mean(0).cpu())
    return _result(task, members, parts, mode="members")


def predict(model: nn.Module, inputs: Tensor, *, batch_size: int = 1024) -> Tensor:
    """The deterministic eval-mode outputs ("weight scaling" inference), in chunks.

    With inverted dropout the scaling by the keep probability happens in training, so the plain
    eval pass is the weight-scaling rule of Srivastava et al. (2014); droplab's classic mode
    scales at eval time itself. The model's modes are restored afterwards.

    Args:
        model: the network.
        inputs: ``(N, ...)``, moved chunk by chunk to the model's device.
        batch_size: examples per forward pass (default 1024).

    Returns:
        The raw outputs (logits for a classifier) concatenated on the CPU.

    Example:
        >>> logits = predict(nn.Linear(8, 3), torch.randn(10, 8))
    """
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    inputs = _check_inputs(inputs)
    batch_size = check_positive_int("batch_size", batch_size)
    device = _device(model, inputs)
    flags = {m: m.training for m in model.modules()}
    outs = []
    try:
        model.eval()
        with torch.no_grad():
            for xb in _chunks(inputs, batch_size, device):
                out = model(xb)
                if not isinstance(out, Tensor):
                    raise DataError(
                        f"the model must return one tensor of predictions, got {type(out).__name__}"
                    )
                outs.append(out.cpu())
    finally:
        for module, flag in flags.items():
            module.training = flag
    return torch.cat(outs)


# --------------------------------------------------------------------------------------------
# MC averaging against weight scaling
# --------------------------------------------------------------------------------------------


def _check_labels(labels: Any, n: int) -> Tensor:
    if not isinstance(labels, Tensor) or labels.dtype.is_floating_point or labels.dim() != 1:
        got = f"dtype {labels.dtype}, shape {tuple(labels.shape)}" if isinstance(labels, Tensor) else type(labels).__name__
        raise DataError(f"labels must be an integer tensor of shape (N,), got {got}")
    if labels.shape[0] != n:
        raise DataError(f"labels must have one entry per input ({n}), got {labels.shape[0]}")
    return labels


def mc_vs_weight_scaling(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    T_values: Sequence[int] = (1, 2, 5, 10, 20, 50, 100),
    seeds: Sequence[int] = (0, 1, 2),
    *,
    batch_size: int = 1024,
    confidence: float = 0.95,
    include: Iterable[Any] = (),
    detect: bool = True,
) -> list[dict[str, Any]]:
    """Accuracy and NLL of MC averaging over T sub-networks against weight scaling.

    Reproduces the shape of Srivastava et al. (2014, JMLR 15, Fig. 11): the test error of
    Monte Carlo model averaging falls as the number of sampled networks T grows and reaches the
    weight-scaling error at about T = 50. For each seed, ``max(T_values)`` passes are drawn
    (seeded as in :func:`mc_predict`) and the running average is read off at every T, so the
    curve for one seed is nested: the first T passes are those of every larger T. The interval
    is a Student-t interval over seeds (sampling noise of the masks only; the model is fixed).

    Args:
        model: a trained classifier returning logits ``(N, C)``.
        x: inputs ``(N, ...)``, usually the validation split.
        y: integer labels ``(N,)``.
        T_values: numbers of passes to report (default ``(1, 2, 5, 10, 20, 50, 100)``).
        seeds: seeds of the mask draws, one replicate each (default ``(0, 1, 2)``).
        batch_size: examples per forward pass (default 1024).
        confidence: level of the intervals (default 0.95).
        include, detect: as in :func:`mc_predict`.

    Returns:
        One dict per T, in increasing T: ``T``, ``acc``, ``acc_lo``, ``acc_hi``, ``nll``,
        ``nll_lo``, ``nll_hi`` (MC averaging; NLL in nats per example, of the averaged
        probabilities), ``ws_acc``, ``ws_nll`` (weight scaling, the same in every row) and
        ``n_seeds``. Bounds are ``nan`` with one seed.

    Example::

        rows = mc_vs_weight_scaling(model, splits.x_val, splits.y_val, T_values=(1, 10, 50))
        [(r["T"], round(r["acc"], 3), round(r["ws_acc"], 3)) for r in rows]
    """
    x = _check_inputs(x)
    y = _check_labels(y, x.shape[0])
    if isinstance(T_values, int) or not T_values:
        raise ConfigError(f"T_values must be a non-empty list of positive integers, got {T_values!r}")
    ts = sorted({check_positive_int("T_values entries", t) for t in T_values})
    if isinstance(seeds, int) or not seeds:
        raise ConfigError(f"seeds must be a non-empty list of integers, got {seeds!r}")
    seeds = [_resolve_seed(s, None) for s in seeds]
    batch_size = check_positive_int("batch_size", batch_size)
    confidence = check_probability("confidence", confidence)
    if confidence == 0:
        raise ConfigError("confidence must be in (0, 1), got 0")

    logits = predict(model, x, batch_size=batch_size).double()
    if logits.dim() != 2:
        raise DataError(f"classification expects logits of shape (N, C), got {tuple(logits.shape)}")
    n = x.shape[0]
    logp_ws = torch.log_softmax(logits, dim=-1)
    ws_acc = float((logits.argmax(-1) == y.cpu()).double().mean())
    ws_nll = float(-logp_ws.gather(1, y.cpu().view(-1, 1)).mean())

    device = _device(model, x)
    per_t: dict[int, tuple[list[float], list[float]]] = {t: ([], []) for t in ts}
    example = _probe_input(x, batch_size, device) if detect else None
    with torch.no_grad(), _mc_context(model, include, example):
        for seed in seeds:
            correct = dict.fromkeys(ts, 0)
            nll = dict.fromkeys(ts, 0.0)
            with _seeded(model, seed):
                for start, xb in zip(range(0, n, batch_size), _chunks(x, batch_size, device)):
                    yb = y[start : start + batch_size].to(device).view(-1, 1)
                    total = lse = None
                    for t in range(1, ts[-1] + 1):
                        logp = torch.log_softmax(_forward(model, xb, "classification").double(), -1)
                        true = logp.gather(1, yb).squeeze(1)
                        total = logp.exp() if total is None else total + logp.exp()
                        lse = true if lse is None else torch.logaddexp(lse, true)
                        if t in correct:
                            correct[t] += int((total.argmax(-1) == yb.squeeze(1)).sum())
                            # log of the mean probability of the true class, from log-probs
                            nll[t] += float(-(lse - math.log(t)).sum())
            for t in ts:
                per_t[t][0].append(correct[t] / n)
                per_t[t][1].append(nll[t] / n)
    rows = []
    for t in ts:
        acc_est, nll_est = mean_ci(per_t[t][0], confidence), mean_ci(per_t[t][1], confidence)
        acc, acc_lo, acc_hi = acc_est.mean, acc_est.lo, acc_est.hi
        nl, nl_lo, nl_hi = nll_est.mean, nll_est.lo, nll_est.hi
        rows.append(
            {
                "T": t, "acc": acc, "acc_lo": acc_lo, "acc_hi": acc_hi, "nll": nl,
                "nll_lo": nl_lo, "nll_hi": nl_hi, "ws_acc": ws_acc, "ws_nll": ws_nll,
                "n_seeds": len(seeds),
            }
        )
    return rows
