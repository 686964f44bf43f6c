"""Model specifications: what to build and where each dropout layer goes.

A :class:`ModelSpec` names an architecture (``kind``), its sizes, and a mapping from *places*
to :class:`DropoutSpec` s. Places are fixed positions in every architecture:

==========  ===============================================================================
place       where the layer goes
==========  ===============================================================================
input       on the model input (CNN: the (N, C, ...) map; RNN/transformer: the embedded or
            raw (N, L, F) sequence, after the positional embedding for the transformer)
hidden      after each hidden activation (MLP, CNN; ``dropconnect`` wraps the hidden
            Linear/conv layers instead); on each RNN layer's output sequence with a fresh mask
            per time step (Zaremba et al. 2014); on each transformer sublayer's output before
            the residual add (Vaswani et al. 2017; ``droppath`` there is stochastic depth).
            ``p`` may be a tuple of per-layer rates
recurrent   RNN only: ``locked`` reuses one mask over time on each layer's output (variational
            dropout, Gal & Ghahramani 2016), ``weight`` drops hidden-to-hidden weights
            (WeightDrop, Merity et al. 2017)
attention   transformer only: on the attention weights after the softmax
embedding   RNN/transformer with ``vocab_size``: drops whole word types (Gal & Ghahramani 2016)
block       transformer only: ``layerdrop`` skips a whole encoder block for the batch in
            training (LayerDrop, Fan, Grave, Joulin 2020); see :func:`droplab.models.prune`
==========  ===============================================================================

Both dataclasses are frozen and validate themselves on construction; ``to_dict`` /
``from_dict`` round-trip exactly through TOML/JSON-friendly dictionaries.

Example::

    spec = ModelSpec(kind="cnn1d", hidden=(25, 25, 25), kernel_size=(5, 3, 3), stride=2,
                     padding=1, dropout=parse_dropout("input=0.1,hidden=0.3:spatial"))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from droplab._checks import (
    check_bool,
    check_choice,
    check_keys,
    check_nonneg_float,
    check_nonneg_int,
    check_positive_float,
    check_positive_int,
    check_probability,
    did_you_mean,
)
from droplab.errors import ConfigError
from droplab.nn.schedule import (
    RateSchedule,
    canonical_setting,
    depth_rates,
    is_schedule_text,
    parse_schedule_setting,
)

__all__ = [
    "KINDS",
    "PLACES",
    "LAYERS",
    "ACTIVATIONS",
    "DropoutSpec",
    "ModelSpec",
    "parse_dropout",
]

#: Architectures :func:`droplab.models.build_model` builds.
KINDS = ("mlp", "cnn1d", "cnn2d", "gru", "lstm", "transformer")
#: Where a dropout layer can go (the table above; not every kind has every place).
PLACES = ("input", "hidden", "recurrent", "attention", "embedding", "block")
#: Activation names a spec accepts.
ACTIVATIONS = ("relu", "tanh", "gelu", "selu", "sigmoid", "elu")
#: Dropout layers a place can hold (``DropoutSpec.layer``).
LAYERS = (
    "dropout",      # droplab.nn.Dropout, inverted
    "classic",      # droplab.nn.Dropout(mode="classic")
    "gaussian",     # GaussianDropout
    "alpha",        # AlphaDropout
    "spatial",      # SpatialDropout (CNN)
    "dropblock",    # DropBlock1d / DropBlock2d (CNN)
    "locked",       # LockedDropout (RNN / transformer sequences)
    "weight",       # WeightDrop on hidden-to-hidden weights (RNN)
    "dropconnect",  # DropConnect around hidden Linear/conv layers (MLP, CNN)
    "concrete",     # ConcreteDropout, learned rate (MLP, CNN)
    "droppath",     # DropPath on residual branches (transformer)
    "embedding",    # EmbeddingDropout (word types)
    "layerdrop",    # LayerDrop around each encoder block (transformer)
)

_CNN = ("cnn1d", "cnn2d")
_RNN = ("gru", "lstm")
_SEQ = _RNN + ("transformer",)

# The Bernoulli dropout layers and their droplab.functional.dropout mode.
_BERNOULLI_MODES = {"dropout": "inverted", "classic": "classic"}

# Which places each kind has. "embedding" additionally needs vocab_size.
_PLACES_BY_KIND = {
    "mlp": ("input", "hidden"),
    "cnn1d": ("input", "hidden"),
    "cnn2d": ("input", "hidden"),
    "gru": ("input", "hidden", "recurrent", "embedding"),
    "lstm": ("input", "hidden", "recurrent", "embedding"),
    "transformer": ("input", "hidden", "attention", "embedding", "block"),
}

# The layer a place gets when DropoutSpec.layer is None.
_DEFAULT_LAYER = {
    "input": "dropout",
    "hidden": "dropout",
    "recurrent": "locked",
    "attention": "dropout",
    "embedding": "embedding",
    "block": "layerdrop",
}

# layer -> (places it may go, kinds it may go in)
_ALL = KINDS
_LAYER_RULES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "dropout": (("input", "hidden", "attention"), _ALL),
    "classic": (("input", "hidden", "attention"), _ALL),
    "gaussian": (("input", "hidden", "attention"), _ALL),
    "alpha": (("input", "hidden"), _ALL),
    "concrete": (("input", "hidden"), ("mlp",) + _CNN),
    "spatial": (("input", "hidden"), _CNN),
    "dropblock": (("input", "hidden"), _CNN),
    "locked": (("input", "recurrent"), _SEQ),
    "weight": (("recurrent",), _RNN),
    "dropconnect": (("hidden",), ("mlp",) + _CNN),
    "droppath": (("hidden",), ("transformer",)),
    "embedding": (("embedding",), _SEQ),
    "layerdrop": (("block",), ("transformer",)),
}


def _check_names(name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, (tuple, list)) or not value:
        raise ConfigError(f"{name} must be a non-empty list of parameter names, got {value!r}")
    if not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{name} must be a list of strings, got {value!r}")
    return tuple(value)


def _check_axes(name: str, value: Any) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,)
    if not isinstance(value, (tuple, list)) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        raise ConfigError(f"{name} must be a list of integer axes, got {value!r}")
    return tuple(value)


# layer -> {option: validator}; options are passed to the droplab.nn constructor as keywords.
_OPTIONS: dict[str, dict[str, Any]] = {
    "dropout": {"shared_axes": _check_axes},
    "classic": {"shared_axes": _check_axes},
    "gaussian": {},
    "alpha": {},
    "spatial": {},
    "dropblock": {
        "block_size": check_positive_int,
        "shared_channels": check_bool,
        "schedule_steps": check_nonneg_int,
    },
    "locked": {},
    "weight": {
        "weights": _check_names,
        "mode": lambda n, v: check_choice(n, v, ("inverted", "classic")),
    },
    "dropconnect": {
        "inference": lambda n, v: check_choice(n, v, ("mean", "moment")),
        "samples": check_positive_int,
    },
    "concrete": {
        "temperature": check_positive_float,
        "weight_regularizer": check_nonneg_float,
        "dropout_regularizer": check_nonneg_float,
    },
    "droppath": {"scale_by_keep": check_bool},
    "embedding": {},
    "layerdrop": {},
}


def _plain(value: Any) -> Any:
    """Tuples to lists, recursively: the form TOML and JSON writers accept."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _tupled(value: Any) -> Any:
    """Lists to tuples, recursively: the canonical in-memory form (hashable, compares equal)."""
    if isinstance(value, (tuple, list)):
        return tuple(_tupled(v) for v in value)
    return value


@dataclasses.dataclass(frozen=True)
class DropoutSpec:
    """The dropout layer at one place of a model: its rate, its type and its options.

    Args:
        p: drop probability in [0, 1), default 0.0. At place ``"hidden"`` a tuple gives one rate
            per hidden layer (its length must match the model). For ``"concrete"`` it is the
            initial rate of the learned one.
        layer: one of :data:`LAYERS`, or ``None`` (default) for the place's usual layer:
            ``dropout`` at input/hidden/attention, ``locked`` at recurrent, ``embedding`` at
            embedding. :class:`ModelSpec` fills it in, so a stored spec always names it.
        options: extra keyword arguments for the layer, checked per layer, e.g.
            ``{"block_size": 5}`` for ``dropblock``, ``{"weights": ["weight_hh_l0"]}`` for
            ``weight``, ``{"inference": "moment"}`` for ``dropconnect``.
        schedule: how the rate changes over training and depth, default ``None`` (constant):
            a :class:`~droplab.nn.schedule.RateSchedule` text such as ``"early@5"``,
            ``"late@300step"``, ``"cosine@10"``, ``"curriculum@0.5"``, the word ``"depth"``
            (stochastic-depth rule over the hidden layers, Huang et al. 2016) or both joined
            by ``+`` (``"depth+early@5"``). :class:`ModelSpec` turns ``depth`` into per-layer
            rates; the trainer and the sweep engine apply the time schedule.

    Example::

        DropoutSpec(0.3, "dropblock", {"block_size": 3})
        DropoutSpec((0.5, 0.3))  # per-layer hidden rates
        DropoutSpec(0.1, schedule="early@5")  # dropout in the first 5 epochs only
    """

    p: float | tuple[float, ...] = 0.0
    layer: str | None = None
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    schedule: str | None = None

    def __post_init__(self) -> None:
        p = self.p
        if isinstance(p, (tuple, list)):
            if not p:
                raise ConfigError(
                    "p must be a number or a non-empty list of per-layer rates, got []"
                )
            p = tuple(check_probability(f"p[{i}]", v) for i, v in enumerate(p))
        else:
            p = check_probability("p", p)
        object.__setattr__(self, "p", p)
        if self.layer is not None:
            check_choice("layer", self.layer, LAYERS)
        if not isinstance(self.options, Mapping):
            raise ConfigError(f"options must be a table of layer options, got {self.options!r}")
        options = dict(self.options)
        if options:
            if self.layer is None:
                raise ConfigError(
                    f"options {sorted(options)} need an explicit layer (layer is None)"
                )
            allowed = _OPTIONS[self.layer]
            if not allowed:
                raise ConfigError(f"layer {self.layer!r} takes no options, got {sorted(options)}")
            check_keys(f"options of layer {self.layer!r}", options, allowed)
            options = {k: allowed[k](f"{self.layer} option {k}", v) for k, v in options.items()}
        object.__setattr__(self, "options", {k: _tupled(v) for k, v in options.items()})
        if self.schedule is not None:
            depth, time = parse_schedule_setting(self.schedule)
            if depth and isinstance(p, tuple):
                raise ConfigError(
                    f"schedule 'depth' derives per-layer rates from one rate; got the rates "
                    f"{list(p)} already"
                )
            object.__setattr__(self, "schedule", canonical_setting(depth, time))

    @property
    def bernoulli_mode(self) -> str | None:
        """``"inverted"`` or ``"classic"`` for the Bernoulli dropout layers, else ``None``.

        The one place a layer name becomes a :func:`droplab.functional.dropout` mode: the model
        builders and the sweep's batched MLP both read it.
        """
        return _BERNOULLI_MODES.get(self.layer)

    @property
    def time_schedule(self) -> RateSchedule | None:
        """The rate's schedule over training (``None`` when the rate is constant)."""
        if self.schedule is None:
            return None
        return parse_schedule_setting(self.schedule)[1]

    def rate(self, index: int = 0) -> float:
        """The rate of hidden layer ``index`` (the scalar rate when ``p`` is a number)."""
        return self.p[index] if isinstance(self.p, tuple) else self.p

    def to_dict(self) -> dict[str, Any]:
        """A plain dictionary (lists, no tuples, no ``None``) that :meth:`from_dict` turns back."""
        out = {"p": _plain(self.p), "layer": self.layer, "options": _plain(dict(self.options))}
        out["schedule"] = self.schedule
        return {k: v for k, v in out.items() if v is not None}

    @classmethod
    def from_dict(cls, d: Any) -> DropoutSpec:
        """Build from a dictionary ``{"p", "layer", "options"}``; a bare number means ``p``."""
        if isinstance(d, cls):
            return d
        if isinstance(d, (int, float, list, tuple)) and not isinstance(d, bool):
            return cls(p=d)
        if not isinstance(d, Mapping):
            raise ConfigError(f"a dropout entry must be a number or a table, got {d!r}")
        check_keys("dropout entry", d, ("p", "layer", "options", "schedule"))
        return cls(**dict(d))


def parse_dropout(text: str) -> dict[str, DropoutSpec]:
    """Parse a compact dropout string, as given on the command line.

    Grammar: comma-separated ``place=rate[:layer[:option=value...]]``; a rate may be several
    per-layer rates separated by ``/``. A field that names a schedule (``early@5``,
    ``late@300step``, ``linear@10``, ``cosine@10``, ``curriculum@0.5``, ``depth``; see
    :mod:`droplab.nn.schedule`) may stand anywhere after the rate and sets
    :attr:`DropoutSpec.schedule`; two such fields combine (``depth`` with one time schedule).

    Example::

        parse_dropout("input=0.1,hidden=0.5/0.3:gaussian")
        parse_dropout("hidden=0.1:early@5")          # early dropout (Liu et al. 2023)
        parse_dropout("hidden=0.2:droppath:depth")   # stochastic-depth rule
        parse_dropout("hidden=0.2:dropblock:block_size=5")
        parse_dropout("recurrent=0.25:weight")
    """
    if not isinstance(text, str):
        raise ConfigError(f"dropout must be a string like 'hidden=0.3,input=0.1', got {text!r}")
    out: dict[str, DropoutSpec] = {}
    for item in (s.strip() for s in text.split(",")):
        if not item:
            continue
        place, eq, rest = item.partition("=")
        place = place.strip()
        if not eq or not rest.strip():
            raise ConfigError(
                f"cannot parse dropout entry {item!r}; expected place=rate[:layer], "
                f"e.g. 'hidden=0.3:gaussian'"
            )
        check_choice("dropout place", place, PLACES)
        if place in out:
            raise ConfigError(f"dropout place {place!r} is given twice in {text!r}")
        fields = [f.strip() for f in rest.split(":")]
        scheduled = [f for f in fields[1:] if f and is_schedule_text(f)]
        fields = fields[:1] + [f for f in fields[1:] if not (f and is_schedule_text(f))]
        schedule = "+".join(scheduled) or None
        rates = []
        for r in fields[0].split("/"):
            try:
                rates.append(float(r))
            except ValueError:
                raise ConfigError(
                    f"cannot parse rate {r!r} for place {place!r} in {item!r}; "
                    f"expected a number like 0.3 (per-layer: 0.5/0.3)"
                ) from None
        layer = fields[1] if len(fields) > 1 and fields[1] else None
        options = {}
        for opt in fields[2:]:
            key, eq, value = opt.partition("=")
            if not eq:
                raise ConfigError(
                    f"cannot parse option {opt!r} in {item!r}; expected name=value"
                )
            options[key.strip()] = _parse_scalar(value.strip())
        p = rates[0] if len(rates) == 1 else tuple(rates)
        out[place] = _in_place(place, lambda: DropoutSpec(p, layer, options, schedule))
    return out


def _resolve_schedule(place: str, spec: DropoutSpec, n_hidden: int) -> DropoutSpec:
    """Check a spec's schedule at its place; turn ``depth`` into per-layer rates."""
    if spec.schedule is None:
        return spec
    if spec.layer == "concrete":
        raise ConfigError(
            f"concrete dropout at place {place!r} learns its rate; it takes no schedule, "
            f"got {spec.schedule!r}"
        )
    depth, time = parse_schedule_setting(spec.schedule)
    if not depth:
        return spec
    if place != "hidden":
        raise ConfigError(
            f"schedule 'depth' grows the rate with the hidden layer's depth; it applies at "
            f"place 'hidden', not {place!r}"
        )
    return dataclasses.replace(
        spec, p=depth_rates(spec.p, n_hidden), schedule=canonical_setting(False, time)
    )


def _in_place(place: str, make: Any) -> DropoutSpec:
    """Run ``make()``; prefix any ConfigError with the place it is about."""
    try:
        return make()
    except ConfigError as err:
        raise ConfigError(f"dropout at place {place!r}: {err}") from None


def _parse_scalar(text: str) -> Any:
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What to build: an architecture, its sizes and its dropout placement.

    Args:
        kind: one of ``mlp``, ``cnn1d``, ``cnn2d``, ``gru``, ``lstm``, ``transformer``
            (default ``mlp``).
        hidden: sizes, default ``(128,)``. MLP: hidden widths (``()`` gives logistic
            regression); CNN: channels per conv layer; RNN: hidden size per recurrent layer;
            transformer: ``(d_model,)``.
        activation: one of ``relu`` (default), ``tanh``, ``gelu``, ``selu``, ``sigmoid``,
            ``elu``. RNN cells keep their own nonlinearities; there it is unused.
        batch_norm: default False. MLP/CNN: BatchNorm after each Linear/conv, before the
            activation (Ioffe & Szegedy 2015). RNN/transformer: one BatchNorm1d on the pooled
            representation before the output layer only (no normalisation inside the recurrence;
            the transformer keeps its LayerNorms either way).
        kernel_size, stride: CNN, an int or one per conv layer (defaults 5 and 1).
        padding: CNN, an int, one per layer, or ``None`` (default) for ``kernel_size // 2``.
        pool: CNN, max-pool window after each conv block, default 1 (no pooling).
        readout: how a CNN/sequence model reduces to one vector: CNN ``flatten`` (default) or
            ``mean`` (global average pool); RNN ``last`` (default) or ``mean`` over time;
            transformer ``mean`` (default) or ``cls`` (a learned class token). ``None`` picks the
            default; MLP ignores it.
        heads: transformer attention heads, default 4 (must divide ``d_model``).
        layers: transformer blocks, default 2.
        ff_dim: transformer feed-forward width, default ``None`` (= 4 * d_model).
        vocab_size: RNN/transformer only: inputs are token ids in [0, vocab_size) read through
            an ``nn.Embedding``; default ``None`` (real-valued inputs).
        embed_dim: RNN token embedding width, default ``None`` (= ``hidden[0]``); the
            transformer always embeds to ``d_model``.
        dropout: place -> :class:`DropoutSpec` (a bare number is taken as ``p``); see the
            module docstring for the places.

    Fields that do not apply to ``kind`` are ignored, except ``vocab_size`` (it changes what the
    input means, so it raises outside RNN/transformer).

    Example::

        ModelSpec(kind="mlp", hidden=(256, 256), dropout={"input": 0.2, "hidden": 0.5})
        ModelSpec(kind="cnn1d", hidden=(25, 25, 25), kernel_size=(5, 3, 3), stride=2, padding=1)
    """

    kind: str = "mlp"
    hidden: tuple[int, ...] = (128,)
    activation: str = "relu"
    batch_norm: bool = False
    kernel_size: int | tuple[int, ...] = 5
    stride: int | tuple[int, ...] = 1
    padding: int | tuple[int, ...] | None = None
    pool: int = 1
    readout: str | None = None
    heads: int = 4
    layers: int = 2
    ff_dim: int | None = None
    vocab_size: int | None = None
    embed_dim: int | None = None
    dropout: Mapping[str, DropoutSpec] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        check_choice("kind", self.kind, KINDS)
        check_choice("activation", self.activation, ACTIVATIONS)
        check_bool("batch_norm", self.batch_norm)
        if isinstance(self.hidden, int) or not isinstance(self.hidden, (tuple, list)):
            raise ConfigError(f"hidden must be a list of sizes, got {self.hidden!r}")
        hidden = tuple(check_positive_int(f"hidden[{i}]", h) for i, h in enumerate(self.hidden))
        object.__setattr__(self, "hidden", hidden)
        if not hidden and self.kind != "mlp":
            raise ConfigError(f"hidden must list at least one size for kind {self.kind!r}, got ()")
        for name in ("kernel_size", "stride", "padding"):
            object.__setattr__(self, name, _tupled(getattr(self, name)))
        check_positive_int("pool", self.pool)
        check_positive_int("heads", self.heads)
        check_positive_int("layers", self.layers)
        for name in ("ff_dim", "vocab_size", "embed_dim"):
            if getattr(self, name) is not None:
                check_positive_int(name, getattr(self, name))
        if self.vocab_size is not None and self.kind not in _SEQ:
            raise ConfigError(
                f"vocab_size (token input) applies to gru, lstm and transformer, "
                f"not to kind {self.kind!r}"
            )
        if self.kind in _CNN:
            self._check_conv()
        if self.kind == "transformer":
            if len(hidden) != 1:
                raise ConfigError(
                    f"transformer hidden must be (d_model,), got {hidden!r}; "
                    f"set the depth with layers"
                )
            if hidden[0] % self.heads:
                raise ConfigError(
                    f"d_model hidden[0]={hidden[0]} must be divisible by heads={self.heads}"
                )
        readouts = _READOUTS.get(self.kind)
        if self.readout is not None:
            if readouts is None:
                raise ConfigError(f"readout does not apply to kind {self.kind!r}; leave it unset")
            check_choice(f"readout for {self.kind}", self.readout, readouts)
        object.__setattr__(self, "dropout", self._resolve_dropout())

    # -- validation helpers --------------------------------------------------------------
    def _check_conv(self) -> None:
        n = len(self.hidden)
        for name, check in (
            ("kernel_size", check_positive_int),
            ("stride", check_positive_int),
            ("padding", check_nonneg_int),
        ):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, tuple):
                if len(value) != n:
                    raise ConfigError(
                        f"{name} lists {len(value)} values but there are {n} conv layers "
                        f"(hidden={self.hidden!r})"
                    )
                for i, v in enumerate(value):
                    check(f"{name}[{i}]", v)
            else:
                check(name, value)

    def _resolve_dropout(self) -> dict[str, DropoutSpec]:
        if not isinstance(self.dropout, Mapping):
            raise ConfigError(
                f"dropout must be a table of place -> dropout spec, got {self.dropout!r}"
            )
        valid = _PLACES_BY_KIND[self.kind]
        resolved = {}
        for place, entry in self.dropout.items():
            if place not in PLACES:
                raise ConfigError(
                    f"unknown dropout place {place!r}{did_you_mean(place, PLACES)}; "
                    f"places for {self.kind}: {', '.join(valid)}"
                )
            if place not in valid:
                raise ConfigError(
                    f"dropout place {place!r} does not exist in a {self.kind} model; "
                    f"{_WHERE[place]}; places for {self.kind}: {', '.join(valid)}"
                )
            if place == "embedding" and self.vocab_size is None:
                raise ConfigError(
                    f"dropout place 'embedding' needs token input: set vocab_size "
                    f"(the {self.kind} model has no embedding otherwise)"
                )
            spec = _in_place(place, lambda: DropoutSpec.from_dict(entry))
            if spec.layer is None:
                spec = dataclasses.replace(spec, layer=_DEFAULT_LAYER[place])
            places, kinds = _LAYER_RULES[spec.layer]
            if place not in places or self.kind not in kinds:
                raise ConfigError(
                    f"dropout layer {spec.layer!r} cannot go at place {place!r} of a "
                    f"{self.kind} model; it goes at {', '.join(places)} in "
                    f"{', '.join(kinds)} models"
                )
            rates = spec.p if isinstance(spec.p, tuple) else (spec.p,)
            if spec.layer == "concrete" and 0.0 in rates:
                raise ConfigError(
                    f"concrete dropout at place {place!r} learns its rate from an initial p in "
                    f"(0, 1); got p={_plain(spec.p)!r}"
                )
            if (
                spec.layer == "dropconnect"
                and spec.options.get("inference") == "moment"
                and self.batch_norm
            ):
                raise ConfigError(
                    "dropconnect with inference='moment' averages the activation of the layer's "
                    "own output, so it cannot run with batch_norm between them; set "
                    "batch_norm=false or inference='mean'"
                )
            if isinstance(spec.p, tuple):
                if place != "hidden":
                    raise ConfigError(
                        f"per-layer rates are accepted at place 'hidden' only, got "
                        f"{list(spec.p)} at place {place!r}"
                    )
                if len(spec.p) != self.n_hidden_positions:
                    raise ConfigError(
                        f"hidden dropout lists {len(spec.p)} rates but the {self.kind} model has "
                        f"{self.n_hidden_positions} hidden layers"
                    )
            if place == "hidden" and self.n_hidden_positions == 0:
                raise ConfigError(
                    "dropout place 'hidden' needs at least one hidden layer, got hidden=()"
                )
            spec = _resolve_schedule(place, spec, self.n_hidden_positions)
            resolved[place] = spec
        return resolved

    @property
    def n_hidden_positions(self) -> int:
        """How many places the ``hidden`` dropout occupies (= rates a per-layer tuple needs)."""
        return self.layers if self.kind == "transformer" else len(self.hidden)

    # -- serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A plain dictionary (lists, no tuples, no ``None`` values) for TOML/JSON/SQLite.

        ``ModelSpec.from_dict(spec.to_dict()) == spec`` always holds.
        """
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "dropout":
                value = {place: d.to_dict() for place, d in value.items()}
            elif value is None:
                continue  # TOML has no null; absence means None
            out[f.name] = _plain(value)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelSpec:
        """Build from a dictionary such as a TOML ``[model]`` table; unknown keys raise."""
        if not isinstance(d, Mapping):
            raise ConfigError(f"a model spec must be a table, got {d!r}")
        names = [f.name for f in dataclasses.fields(cls)]
        check_keys("model spec", d, names)
        return cls(**dict(d))


_READOUTS = {
    "cnn1d": ("flatten", "mean"),
    "cnn2d": ("flatten", "mean"),
    "gru": ("last", "mean"),
    "lstm": ("last", "mean"),
    "transformer": ("mean", "cls"),
}
_DEFAULT_READOUT = {k: v[0] for k, v in _READOUTS.items()}

_WHERE = {
    "input": "input dropout exists in every model",
    "hidden": "hidden dropout exists in every model",
    "recurrent": "recurrent dropout exists only in gru and lstm models",
    "attention": "attention dropout exists only in transformer models",
    "embedding": "embedding dropout exists only in gru, lstm and transformer models "
    "with vocab_size",
    "block": "block dropout (LayerDrop) exists only in transformer models",
}


def _readout(spec: ModelSpec) -> str:
    """The readout a builder uses (the spec's, or the kind's default)."""
    return spec.readout or _DEFAULT_READOUT[spec.kind]


def _per_layer(value: Any, n: int) -> tuple:
    """An int-or-tuple CNN option as one value per layer."""
    return value if isinstance(value, tuple) else (value,) * n

