"""Stochasticity audit: every random operation a forward pass reaches, and the known mistakes.

:func:`audit` runs one forward pass in eval mode (modes and RNG states restored afterwards) and
lists, in call order, dropout-family modules (droplab's, torch's, timm's and torchvision's),
functional dropout calls (torch's however imported; droplab's through the
``droplab.functional`` namespace) and raw random draws made outside those layers.
It flags, after Srivastava et al. (2014, JMLR 15) and common practice (:data:`WARNING_CODES`):

* ``active_in_eval`` -- random in eval mode (``F.dropout(x, p)`` defaults to ``training=True``);
* ``spatial_wrong_rank`` -- ``Dropout1d/2d/3d`` given an input of another rank;
* ``dropout_on_output`` -- the model's output comes straight from a dropout;
* ``high_input_rate`` -- input dropout above :data:`INPUT_RATE_LIMIT` (0.2, Appendix A);
* ``rate_ge_0_8`` -- any rate at or above :data:`HIGH_RATE` (0.8, Fig. 9: networks underfit);
* ``batch_stats_in_eval`` -- batch norm without running statistics, batch-dependent in eval.

Not thread-safe: during its one pass the audit swaps ``droplab.functional``'s names for
recording wrappers. How the recording works: docs/architecture.md, "Inference".
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from droplab.errors import ConfigError
from droplab.nn import DropConnect, StochasticLayer, WeightDrop

__all__ = [
    "AuditEntry",
    "AuditWarning",
    "AuditReport",
    "audit",
    "WARNING_CODES",
    "INPUT_RATE_LIMIT",
    "HIGH_RATE",
    "stochastic_kind",
    "default_input",
    "find_guarded_functional",
]

#: Input dropout above this rate is flagged (Srivastava et al. 2014, Appendix A: retain about
#: 80% of real-valued inputs).
INPUT_RATE_LIMIT = 0.2

#: Rates at or above this are flagged (the paper's Fig. 9: the error rises steeply there).
HIGH_RATE = 0.8

#: Every warning code :func:`audit` can emit.
WARNING_CODES: tuple[str, ...] = (
    "active_in_eval",
    "spatial_wrong_rank",
    "dropout_on_output",
    "high_input_rate",
    "rate_ge_0_8",
    "batch_stats_in_eval",
)

_ROOT = "<root>"

# --------------------------------------------------------------------------------------------
# What counts as stochastic
# --------------------------------------------------------------------------------------------

_TORCH_UNIT_MODULES: tuple[type[nn.Module], ...] = (
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.FeatureAlphaDropout,
)
# Channel-wise dropout modules and the rank of their batched input.
_SPATIAL_RANK: tuple[tuple[type[nn.Module], int], ...] = (
    (nn.Dropout1d, 3),
    (nn.Dropout2d, 4),
    (nn.Dropout3d, 5),
)
# Third-party dropout-family layers recognised by class name (timm DropPath/DropBlock2d,
# torchvision StochasticDepth/DropBlock2d), only when they hold no parameters, no buffers and
# no children: switching such a module's flag cannot touch any state.
_NAME_PATTERN = re.compile(r"dropout|droppath|dropblock|stochasticdepth", re.IGNORECASE)


def stochastic_kind(module: nn.Module) -> str | None:
    """What kind of dropout-family layer ``module`` is, or ``None`` if it is not one.

    ``"units"`` (masks activations), ``"weights"`` (masks weights: DropConnect, WeightDrop) or
    ``"internal"`` (dropout inside a torch layer: RNN between layers, attention weights).
    """
    if isinstance(module, StochasticLayer):
        return "weights" if isinstance(module, (DropConnect, WeightDrop)) else "units"
    if isinstance(module, _TORCH_UNIT_MODULES):
        return "units"
    if isinstance(module, nn.RNNBase):
        return "internal" if module.dropout > 0 and module.num_layers > 1 else None
    if isinstance(module, nn.MultiheadAttention):
        return "internal" if module.dropout > 0 else None
    if (
        _NAME_PATTERN.search(type(module).__name__)
        and not any(True for _ in module.children())
        and not any(True for _ in module.parameters(recurse=False))
        and not any(True for _ in module.buffers(recurse=False))
    ):
        return "units"
    return None


def _module_rate(module: nn.Module) -> float | None:
    if isinstance(module, (nn.RNNBase, nn.MultiheadAttention)):
        return float(module.dropout)
    for name in ("p", "drop_prob", "drop_rate"):
        value = getattr(module, name, None)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return None


def _module_mode(module: nn.Module) -> str | None:
    mode = getattr(module, "mode", None)
    if isinstance(mode, str):
        return mode
    if isinstance(module, (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)):
        return "inverted"
    return None


def _module_op(module: nn.Module) -> str:
    cls = type(module)
    if isinstance(module, StochasticLayer) and cls.__module__.startswith("droplab."):
        return f"droplab.nn.{cls.__name__}"
    if cls.__module__.startswith("torch.nn"):
        return f"torch.nn.{cls.__name__}"
    return f"{cls.__module__}.{cls.__name__}"


@dataclasses.dataclass(frozen=True)
class _FuncSpec:
    op: str
    params: tuple[str, ...]  # positional parameter names, in order
    defaults: dict[str, Any]
    rate: str  # name of the rate parameter
    flag: str | None  # name of the training flag (None: active iff rate > 0)
    target: str = "units"
    rank: int | None = None  # batched rank a channel-wise dropout expects


def _torch_functions() -> dict[int, tuple[Callable[..., Any], _FuncSpec]]:
    F = torch.nn.functional
    drop = ("input", "p", "training", "inplace")
    table: list[tuple[Any, _FuncSpec]] = [
        (F.dropout, _FuncSpec("F.dropout", drop, {"p": 0.5, "training": True}, "p", "training")),
        (F.dropout1d, _FuncSpec("F.dropout1d", drop, {"p": 0.5, "training": True}, "p", "training", rank=3)),
        (F.dropout2d, _FuncSpec("F.dropout2d", drop, {"p": 0.5, "training": True}, "p", "training", rank=4)),
        (F.dropout3d, _FuncSpec("F.dropout3d", drop, {"p": 0.5, "training": True}, "p", "training", rank=5)),
        (F.alpha_dropout, _FuncSpec("F.alpha_dropout", drop, {"p": 0.5, "training": False}, "p", "training")),
        (
            F.feature_alpha_dropout,
            _FuncSpec("F.feature_alpha_dropout", drop, {"p": 0.5, "training": False}, "p", "training"),
        ),
        (
            F.scaled_dot_product_attention,
            _FuncSpec(
                "F.scaled_dot_product_attention",
                ("query", "key", "value", "attn_mask", "dropout_p"),
                {"dropout_p": 0.0},
                "dropout_p",
                None,
                target="internal",
            ),
        ),
    ]
    for name in (
        "dropout", "dropout_", "alpha_dropout", "alpha_dropout_", "feature_dropout",
        "feature_dropout_", "feature_alpha_dropout", "feature_alpha_dropout_",
    ):
        func = getattr(torch, name, None)
        if func is not None:
            table.append((func, _FuncSpec(f"torch.{name}", ("input", "p", "train"), {}, "p", "train")))
    return {id(func): (func, spec) for func, spec in table}


# Names of torch functions and Tensor methods that draw random numbers.
_DRAWS = frozenset(
    {
        "rand", "rand_like", "randn", "randn_like", "randint", "randint_like", "randperm",
        "bernoulli", "bernoulli_", "normal", "normal_", "uniform_", "random_", "exponential_",
        "geometric_", "cauchy_", "log_normal_", "poisson", "multinomial",
    }
)
# Ops whose output is a reshaped view/copy of their first argument (output tracking).
_RESHAPES = frozenset(
    {
        "reshape", "view", "squeeze", "unsqueeze", "flatten", "permute", "transpose",
        "contiguous", "clone", "view_as", "reshape_as", "t", "__getitem__", "float", "double",
        "to", "type_as", "detach",
    }
)


def _arg(args: tuple, kwargs: dict, spec: _FuncSpec, name: str) -> Any:
    if name in kwargs:
        return kwargs[name]
    index = spec.params.index(name)
    if index < len(args):
        return args[index]
    return spec.defaults.get(name)


def _as_float(value: Any) -> float | None:
    if isinstance(value, torch.Tensor):
        return float(value.detach().float().reshape(-1)[0]) if value.numel() else None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


# --------------------------------------------------------------------------------------------
# Report types
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class AuditEntry:
    """One stochastic operation reached by the forward pass.

    Attributes:
        index: call order, from 0.
        where: path of the module (``model.named_modules()`` name; ``"<root>"`` for the model
            itself); for functional calls and draws, the module whose ``forward`` made the call.
        op: what ran: ``"droplab.nn.Dropout"``, ``"torch.nn.Dropout2d"``, ``"F.dropout"``,
            ``"droplab.functional.dropout"``, ``"torch.bernoulli"``, ...
        source: ``"module"``, ``"functional"`` or ``"draw"`` (a raw random draw).
        target: ``"units"``, ``"weights"``, ``"internal"`` (inside an RNN/attention) or
            ``"draw"``.
        p: the drop rate (``None`` when unknown, e.g. a raw draw).
        mode: ``"inverted"`` / ``"classic"`` where the op has such a mode, else ``None``.
        training: the module's ``training`` flag, or the call's ``training`` argument.
        active: whether the op was stochastic at this call (in the audit's eval pass).
        input_shape: shape of the input tensor (``None`` when there is none).
    """

    index: int
    where: str
    op: str
    source: str
    target: str
    p: float | None
    mode: str | None
    training: bool
    active: bool
    input_shape: tuple[int, ...] | None


@dataclasses.dataclass(frozen=True)
class AuditWarning:
    """A flagged problem: ``code`` (one of :data:`WARNING_CODES`), where, and a message."""

    code: str
    where: str
    message: str


@dataclasses.dataclass(frozen=True)
class AuditReport:
    """What :func:`audit` found: the stochastic operations, in call order, and the warnings."""

    entries: tuple[AuditEntry, ...]
    warnings: tuple[AuditWarning, ...]
    model: str = ""

    @property
    def codes(self) -> set[str]:
        """The set of warning codes raised."""
        return {w.code for w in self.warnings}

    def to_dict(self) -> dict[str, Any]:
        """Plain dictionary (JSON-ready)."""
        return {
            "model": self.model,
            "entries": [dataclasses.asdict(e) for e in self.entries],
            "warnings": [dataclasses.asdict(w) for w in self.warnings],
        }

    def format(self) -> str:
        """A plain-text table of the entries followed by the warnings."""
        head = ("#", "where", "op", "p", "mode", "active", "input")
        rows = [
            (
                str(e.index),
                e.where,
                e.op,
                "?" if e.p is None else f"{e.p:.3g}",
                e.mode or "-",
                "yes" if e.active else "no",
                "-" if e.input_shape is None else "x".join(map(str, e.input_shape)),
            )
            for e in self.entries
        ]
        widths = [max(len(r[i]) for r in (head, *rows)) for i in range(len(head))]
        lines = [f"stochasticity audit of {self.model or 'the model'} (one forward pass in eval mode)"]
        for r in (head, *rows):
            lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        if not rows:
            lines.append("(no stochastic operation reached)")
        n = len(self.warnings)
        lines.append(f"{len(rows)} stochastic operation{'s' * (len(rows) != 1)}, {n} warning{'s' * (n != 1)}")
        lines.extend(f"[{w.code}] {w.where}: {w.message}" for w in self.warnings)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


# --------------------------------------------------------------------------------------------
# The recording pass
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Call:
    """A recorded op, with the objects the warnings need (not part of the public entry)."""

    where: str
    owner: nn.Module | None  # module object (modules) or innermost calling module (calls)
    op: str
    source: str
    target: str
    p: float | None
    mode: str | None
    training: bool
    active: bool
    input_shape: tuple[int, ...] | None
    rank: int | None = None
    first: bool = False  # no weighted op ran before it: it sees the model's input
    outputs: list[Any] = dataclasses.field(default_factory=list)


class _Recorder(TorchFunctionMode):
    """Records dropout calls, random draws and Parameter use; tracks reshapes of outputs."""

    def __init__(self, probe: _Probe) -> None:
        super().__init__()
        self.probe = probe

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        kwargs = kwargs or {}
        probe = self.probe
        entry = None
        if not probe.inside_call:
            entry = probe.on_torch_call(func, args, kwargs)
        out = func(*args, **kwargs)
        if entry is not None:
            entry.outputs.append(out)
            probe.track(entry, out)
        elif args and isinstance(args[0], torch.Tensor) and getattr(func, "__name__", "") in _RESHAPES:
            probe.propagate(args[0], out)
        return out


class _Probe:
    """One instrumented forward pass: module hooks + a TorchFunctionMode + droplab wrappers."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.names = {id(m): (name or _ROOT) for name, m in model.named_modules()}
        self.calls: list[_Call] = []
        self.stack: list[nn.Module] = []
        self.weights_seen = False
        self.inside_call = 0  # > 0 while a recorded droplab function runs
        self.tracked: dict[int, tuple[_Call, Any]] = {}  # id(tensor) -> (call, tensor)
        self.bn_without_stats: list[str] = []
        self._functions = _torch_functions()

    # -- helpers ----------------------------------------------------------------------------
    def owner(self) -> nn.Module | None:
        return self.stack[-1] if self.stack else None

    def owned_by_stochastic(self) -> bool:
        return any(stochastic_kind(m) is not None for m in self.stack)

    def where(self, module: nn.Module | None) -> str:
        return _ROOT if module is None else self.names.get(id(module), type(module).__name__)

    def track(self, call: _Call, out: Any) -> None:
        for t in _tensors(out):
            self.tracked[id(t)] = (call, t)

    def propagate(self, src: torch.Tensor, out: Any) -> None:
        hit = self.tracked.get(id(src))
        if hit is not None and hit[1] is src:
            self.track(hit[0], out)

    # -- module hooks -----------------------------------------------------------------------
    def pre_hook(self, module: nn.Module, args: tuple) -> None:
        first = not self.weights_seen
        kind = stochastic_kind(module)
        if kind is not None and not self.owned_by_stochastic():
            x = args[0] if args and isinstance(args[0], torch.Tensor) else None
            rank = next((r for cls, r in _SPATIAL_RANK if isinstance(module, cls)), None)
            self.inside_call += 1  # reading a rate (ConcreteDropout's p) is not a weighted op
            try:
                p = _module_rate(module)
            finally:
                self.inside_call -= 1
            self.calls.append(
                _Call(
                    where=self.where(module), owner=module, op=_module_op(module), source="module",
                    target=kind, p=p, mode=_module_mode(module), training=module.training,
                    active=module.training and p != 0,
                    input_shape=None if x is None else tuple(x.shape), rank=rank, first=first,
                )
            )
        if isinstance(module, nn.modules.batchnorm._NormBase) and not module.track_running_stats:
            self.bn_without_stats.append(self.where(module))
        self.stack.append(module)

    def post_hook(self, module: nn.Module, args: tuple, output: Any) -> None:
        if self.stack and self.stack[-1] is module:
            self.stack.pop()
        if any(True for _ in module.parameters()):  # a weighted op ran inside this module
            self.weights_seen = True
        if stochastic_kind(module) is not None and not self.owned_by_stochastic():
            call = next((c for c in reversed(self.calls) if c.owner is module and c.source == "module"), None)
            if call is not None:
                call.outputs.append(output)
                self.track(call, output)

    # -- torch functions --------------------------------------------------------------------
    def on_torch_call(self, func: Any, args: tuple, kwargs: dict) -> _Call | None:
        if _uses_parameter(args, kwargs):
            self.weights_seen = True
        hit = self._functions.get(id(func))
        if hit is not None and hit[0] is func:
            spec = hit[1]
            p = _as_float(_arg(args, kwargs, spec, spec.rate)) or 0.0
            flag = bool(_arg(args, kwargs, spec, spec.flag)) if spec.flag else p > 0
            if spec.flag is None and p == 0:
                return None
            return self._record_call(spec.op, "functional", spec.target, p, flag, args, spec.rank)
        name = getattr(func, "__name__", "")
        if name in _DRAWS:
            return self._record_call(f"torch.{name}", "draw", "draw", None, True, args, None)
        return None

    def _record_call(
        self, op: str, source: str, target: str, p: float | None, training: bool, args: tuple,
        rank: int | None,
    ) -> _Call | None:
        if self.owned_by_stochastic():
            # The op belongs to a dropout-family module: it is that module's entry. A torch
            # functional dropout that runs while its module says eval makes the module active.
            owner = next(
                (c for c in reversed(self.calls) if c.source == "module" and c.owner in self.stack), None
            )
            if owner is not None and source == "functional" and training and (p or 0) > 0:
                owner.active = True
            return None
        x = args[0] if args and isinstance(args[0], torch.Tensor) else None
        module = self.owner()
        call = _Call(
            where=self.where(module), owner=module, op=op, source=source, target=target, p=p,
            mode="inverted" if op in ("F.dropout", "torch.dropout", "torch.dropout_") else None,
            training=training, active=training and (p is None or p > 0),
            input_shape=None if x is None else tuple(x.shape), rank=rank,
            first=not self.weights_seen,
        )
        self.calls.append(call)
        return call

    # -- droplab functional -----------------------------------------------------------------
    def wrap_droplab(self, name: str, func: Callable[..., Any]) -> Callable[..., Any]:
        sig = inspect.signature(func)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if self.inside_call:
                return func(*args, **kwargs)
            try:
                bound = sig.bind(*args, **kwargs)
                bound.apply_defaults()
                values = bound.arguments
            except TypeError:  # let the real function raise its own error
                return func(*args, **kwargs)
            self.inside_call += 1  # reading the rate runs torch ops: not the model's own
            try:
                if "p_logit" in values:
                    logit = _as_float(values["p_logit"])
                    p = None if logit is None else 1.0 / (1.0 + math.exp(-logit))
                else:
                    p = _as_float(values.get("p"))
            finally:
                self.inside_call -= 1
            target = "weights" if name == "drop_connect" else "units"
            call = self._record_call(
                f"droplab.functional.{name}", "functional", target, p,
                bool(values.get("training", True)), args, None,
            )
            if call is not None:
                call.mode = values.get("mode") if isinstance(values.get("mode"), str) else None
                if name == "dropout" and call.mode is None:
                    call.mode = "inverted"
            self.inside_call += 1
            try:
                out = func(*args, **kwargs)
            finally:
                self.inside_call -= 1
            if call is not None:
                call.outputs.append(out)
                self.track(call, out)
            return out

        return wrapper


def _tensors(obj: Any) -> Iterator[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            yield from _tensors(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _tensors(item)


def _uses_parameter(args: tuple, kwargs: dict) -> bool:
    for value in (*args, *kwargs.values()):
        if isinstance(value, nn.Parameter):
            return True
        if isinstance(value, (list, tuple)) and any(isinstance(v, nn.Parameter) for v in value):
            return True
    return False


@contextmanager
def _instrumented(model: nn.Module) -> Iterator[_Probe]:
    """Hooks, the function mode and the droplab wrappers for one pass; all removed on exit."""
    import droplab.functional as dfun

    probe = _Probe(model)
    handles = []
    originals = {name: getattr(dfun, name) for name in dfun.__all__}
    try:
        for module in model.modules():
            handles.append(module.register_forward_pre_hook(probe.pre_hook))
            handles.append(module.register_forward_hook(probe.post_hook))
        for name, func in originals.items():
            setattr(dfun, name, probe.wrap_droplab(name, func))
        with _Recorder(probe), torch.no_grad():
            yield probe
    finally:
        for name, func in originals.items():
            setattr(dfun, name, func)
        for handle in handles:
            handle.remove()


def _run(model: nn.Module, example_input: Any) -> tuple[_Probe, Any]:
    """One instrumented forward pass with the model's modes as they are now."""
    with _instrumented(model) as probe:
        if isinstance(example_input, tuple):
            output = model(*example_input)
        elif isinstance(example_input, dict):
            output = model(**example_input)
        else:
            output = model(example_input)
    return probe, output


def default_input(model: nn.Module, batch: int = 4) -> torch.Tensor:
    """An example input for a model built by :func:`droplab.models.build_model`.

    Standard normal values of shape ``(batch, *model.input_shape)`` (token ids in
    ``[0, vocab_size)`` for token models), drawn from a generator seeded with 0, on the model's
    device. Other models need an explicit ``example_input``.
    """
    shape = getattr(model, "input_shape", None)
    if not isinstance(shape, tuple) or not shape:
        raise ConfigError(
            f"audit needs an example_input for a {type(model).__name__} (only models built by "
            f"droplab.models.build_model know their input shape)"
        )
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    vocab = getattr(getattr(model, "spec", None), "vocab_size", None)
    if vocab:
        return torch.randint(0, vocab, (batch, *shape), generator=g).to(device)
    return torch.randn((batch, *shape), generator=g).to(device)


# --------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------


def audit(model: nn.Module, example_input: Any = None) -> AuditReport:
    """List every stochastic operation one forward pass reaches, and flag known mistakes.

    Runs ``model`` once in eval mode (the previous ``training`` flags are restored, also when
    the forward raises) under ``torch.no_grad``, recording dropout-family modules, functional
    dropout calls and raw random draws in call order; see the module docstring for what is
    recognised and for the warning codes (:data:`WARNING_CODES`). The pass may draw from the
    global RNG (that is what an ``active_in_eval`` op does); its state is restored afterwards.

    Srivastava, Hinton, Krizhevsky, Sutskever, Salakhutdinov, "Dropout: A Simple Way to
    Prevent Neural Networks from Overfitting", JMLR 15, 2014 (rates: Appendix A, Fig. 9).

    Args:
        model: the ``nn.Module`` to audit.
        example_input: what to call the model with: a tensor, a tuple of positional arguments
            or a dict of keyword arguments. Default ``None``: a batch of 4 random examples for a
            model built by :func:`droplab.models.build_model` (see :func:`default_input`).

    Returns:
        An :class:`AuditReport` (``print(report)`` shows a table and the warnings).

    Example:
        >>> class Net(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.fc = nn.Linear(8, 2)
        ...     def forward(self, x):
        ...         return self.fc(torch.nn.functional.dropout(x, 0.5))  # training=True!
        >>> report = audit(Net(), torch.randn(4, 8))
        >>> "active_in_eval" in report.codes
        True
    """
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if example_input is None:
        example_input = default_input(model)
    flags = {m: m.training for m in model.modules()}
    gen_states = _generator_states(model)
    try:
        model.eval()
        with torch.random.fork_rng(devices=_cuda_devices()):
            probe, output = _run(model, example_input)
    finally:
        for module, flag in flags.items():
            module.training = flag
        _restore_generator_states(gen_states)
    calls = probe.calls
    entries = tuple(
        AuditEntry(
            index=i, where=c.where, op=c.op, source=c.source, target=c.target, p=c.p,
            mode=c.mode, training=c.training, active=c.active, input_shape=c.input_shape,
        )
        for i, c in enumerate(calls)
    )
    warnings = _warnings(calls, probe, output)
    return AuditReport(entries=entries, warnings=tuple(warnings), model=type(model).__name__)


def _cuda_devices() -> list[int]:
    return list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []


def _warnings(calls: list[_Call], probe: _Probe, output: Any) -> list[AuditWarning]:
    out: list[AuditWarning] = []
    for c in calls:
        rate = "" if c.p is None else f"p={c.p:.3g}"
        if c.active:
            if c.source == "draw":
                msg = (
                    f"{c.op} draws random numbers in eval mode, so predictions are random; "
                    f"guard it with `if self.training:` unless sampling at inference is intended"
                )
            elif c.op == "F.scaled_dot_product_attention":
                msg = (
                    f"{c.op} with dropout_p={c.p:.3g} in eval mode drops attention weights at "
                    f"inference; pass dropout_p=(p if self.training else 0.0)"
                )
            elif c.source == "functional":
                default = " (F.dropout's training argument defaults to True)" if c.op == "F.dropout" else ""
                msg = (
                    f"{c.op}({rate}) is active in eval mode: its training argument is True"
                    f"{default}; pass training=self.training"
                )
            else:
                msg = f"{c.op}({rate}) is active although the model is in eval mode"
            out.append(AuditWarning("active_in_eval", c.where, msg))
        if c.rank is not None and c.input_shape is not None and len(c.input_shape) != c.rank:
            layout = {3: "(N, C, L)", 4: "(N, C, H, W)", 5: "(N, C, D, H, W)"}[c.rank]
            out.append(
                AuditWarning(
                    "spatial_wrong_rank",
                    c.where,
                    f"{c.op} expects a {c.rank}D input {layout}, got {len(c.input_shape)}D "
                    f"input of shape {c.input_shape}: torch reads another axis as the channels "
                    f"(with a batched 2D/3D input it can drop whole examples); use the "
                    f"channel-wise dropout of the input's rank",
                )
            )
        if c.target == "units" and c.first and c.p is not None and c.p > INPUT_RATE_LIMIT:
            out.append(
                AuditWarning(
                    "high_input_rate",
                    c.where,
                    f"{c.op}({rate}) drops the network's inputs at more than "
                    f"{INPUT_RATE_LIMIT:g}; Srivastava et al. (2014) drop about 20% of "
                    f"real-valued inputs (50% of hidden units)",
                )
            )
        if c.p is not None and c.p >= HIGH_RATE:
            out.append(
                AuditWarning(
                    "rate_ge_0_8",
                    c.where,
                    f"{c.op}({rate}) drops at least {HIGH_RATE:g} of its inputs: networks "
                    f"underfit at such rates (Srivastava et al. 2014, Fig. 9)",
                )
            )
    seen: set[int] = set()
    for t in _tensors(output):
        hit = probe.tracked.get(id(t))
        if hit is None or hit[1] is not t or id(hit[0]) in seen:
            continue
        call = hit[0]
        seen.add(id(call))
        if call.target == "units" and (call.p is None or call.p > 0):
            out.append(
                AuditWarning(
                    "dropout_on_output",
                    call.where,
                    f"the model's output comes straight from {call.op}"
                    f"({'' if call.p is None else f'p={call.p:.3g}'}): dropout after the last "
                    f"layer zeroes outputs at random; apply it before the output layer",
                )
            )
    for where in dict.fromkeys(probe.bn_without_stats):
        out.append(
            AuditWarning(
                "batch_stats_in_eval",
                where,
                "batch norm with track_running_stats=False normalizes with the batch's own "
                "statistics in eval mode: a prediction depends on the rest of its batch",
            )
        )
    return out


# --------------------------------------------------------------------------------------------
# Used by droplab.inference.mc: functional dropout guarded by a module's training flag
# --------------------------------------------------------------------------------------------


def find_guarded_functional(
    model: nn.Module, example_input: Any
) -> tuple[list[nn.Module], list[str], bool]:
    """Modules whose ``forward`` calls a functional dropout that follows their own flag.

    Two instrumented passes in the model's current modes, inside ``torch.random.fork_rng``
    (the global RNG and the generators of droplab layers are left as they were): the first
    finds functional dropout calls that are off, outside any dropout-family module; the
    second turns on the ``training`` flag of just the calling modules (not their children) and
    keeps those whose calls turned on. Buffers are compared bitwise: a module whose training
    mode changes a buffer (running statistics, counters) is refused and its buffers restored.

    Returns:
        ``(modules, notes, random_anyway)``: the modules to switch on, human-readable notes
        about calls that cannot be switched on, and whether the first pass already met an
        active random operation (unguarded functional dropout, a raw draw).
    """
    notes: list[str] = []
    gen_states = _generator_states(model)
    try:
        with torch.random.fork_rng(devices=_cuda_devices()):
            first, _ = _run(model, example_input)
            random_anyway = any(c.active for c in first.calls)
            candidates: dict[int, nn.Module] = {}
            for c in first.calls:
                if (
                    c.source == "functional" and not c.training and c.owner is not None
                    and not isinstance(c.owner, nn.modules.batchnorm._NormBase)
                ):
                    candidates.setdefault(id(c.owner), c.owner)
            if not candidates:
                return [], notes, random_anyway
            buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
            flags = {key: m.training for key, m in candidates.items()}
            try:
                for m in candidates.values():
                    m.training = True
                second, _ = _run(model, example_input)
            finally:
                for key, m in candidates.items():
                    m.training = flags[key]
    finally:
        _restore_generator_states(gen_states)
    names = {id(m): name or _ROOT for name, m in model.named_modules()}
    switched = {
        id(c.owner) for c in second.calls
        if c.source == "functional" and c.active and id(c.owner) in candidates
    }
    changed = [
        name for name, b in model.named_buffers() if name in buffers and not _same(b, buffers[name])
    ]
    refused: set[int] = set()
    if changed:
        with torch.no_grad():
            for name, b in model.named_buffers():
                if name in buffers:
                    b.copy_(buffers[name])
        owners = {name.rpartition(".")[0] or _ROOT for name in changed}
        refused = {k for k in switched if names.get(k) in owners} or set(switched)
        for key in refused:
            notes.append(
                f"functional dropout in {names.get(key)!r} stays off: switching that module to "
                f"training mode changes buffers ({', '.join(changed)})"
            )
    for key in candidates:
        if key not in switched:
            notes.append(
                f"functional dropout in {names.get(key)!r} is off in eval mode and does not "
                f"follow that module's training flag; mc_mode cannot switch it on"
            )
    chosen = [m for k, m in candidates.items() if k in switched and k not in refused]
    return chosen, notes, random_anyway


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bitwise equality (NaN payloads included)."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    return torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8))


def _generator_states(model: nn.Module) -> list[tuple[torch.Generator, torch.Tensor]]:
    gens: dict[int, torch.Generator] = {}
    for m in model.modules():
        g = getattr(m, "generator", None)
        if isinstance(g, torch.Generator):
            gens.setdefault(id(g), g)
    return [(g, g.get_state()) for g in gens.values()]


def _restore_generator_states(states: list[tuple[torch.Generator, torch.Tensor]]) -> None:
    for g, state in states:
        g.set_state(state)

