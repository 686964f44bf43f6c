"""Shared pieces of the model builders: the DropoutSpec -> droplab.nn factory and the base class.

The factory imports :mod:`droplab.nn` lazily so that :mod:`droplab.models` imports (and specs
validate) without building anything.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from droplab.errors import ConfigError, DataError
from droplab.models.spec import DropoutSpec, ModelSpec

__all__: list[str] = []  # private module; the public names live in droplab.models

_ACTIVATIONS = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "selu": nn.SELU,
    "sigmoid": nn.Sigmoid,
    "elu": nn.ELU,
}


def activation(name: str) -> nn.Module:
    """A fresh activation module for a validated activation name."""
    return _ACTIVATIONS[name]()


def make_dropout(
    spec: DropoutSpec, p: float, *, kind: str, generator: torch.Generator | None = None
) -> nn.Module:
    """The droplab.nn layer for one place (not the wrapping layers ``weight``/``dropconnect``).

    ``spec`` is already resolved and validated by :class:`ModelSpec` (layer set, place and kind
    allowed); ``p`` is this position's rate (one entry of a per-layer tuple).
    """
    import droplab.nn as dn

    opts: dict[str, Any] = dict(spec.options)
    layer = spec.layer
    if spec.bernoulli_mode is not None:
        return dn.Dropout(p, mode=spec.bernoulli_mode, generator=generator, **opts)
    if layer == "gaussian":
        return dn.GaussianDropout(p, generator=generator)
    if layer == "alpha":
        return dn.AlphaDropout(p, generator=generator)
    if layer == "spatial":
        return dn.SpatialDropout(p, generator=generator)
    if layer == "dropblock":
        cls = dn.DropBlock1d if kind == "cnn1d" else dn.DropBlock2d
        return cls(p, generator=generator, **opts)
    if layer == "locked":
        return dn.LockedDropout(p, batch_first=True, generator=generator)
    if layer == "concrete":
        return dn.ConcreteDropout(init_p=p, generator=generator, **opts)
    if layer == "droppath":
        return dn.DropPath(p, generator=generator, **opts)
    if layer == "embedding":
        return dn.EmbeddingDropout(p, generator=generator)
    raise AssertionError(f"make_dropout cannot build wrapping layer {layer!r}")  # a bug


def wrap_weights(
    module: nn.Module,
    spec: DropoutSpec,
    p: float,
    *,
    generator: torch.Generator | None = None,
    **extra: Any,
) -> nn.Module:
    """Wrap ``module`` for weight-level dropout: ``weight`` (RNN) or ``dropconnect`` (Linear/conv).

    ``extra`` keywords go to the wrapper as well (the activation for moment-matching DropConnect).
    """
    import droplab.nn as dn

    opts: dict[str, Any] = {**spec.options, **extra}
    if spec.layer == "weight":
        return dn.WeightDrop(module, p, generator=generator, **opts)
    if spec.layer == "dropconnect":
        return dn.DropConnect(module, p, generator=generator, **opts)
    raise AssertionError(f"wrap_weights cannot build layer {spec.layer!r}")  # a bug


def _one_line(module: nn.Module) -> str:
    """``Name(extra_repr)`` without the children: one line for wrappers such as WeightDrop."""
    return f"{type(module).__name__}({module.extra_repr()})"


def lecun_normal_(model: nn.Module) -> None:
    """LeCun-normal weights, zero biases for Linear/conv layers: what SELU networks need.

    Klambauer, Unterthiner, Mayr, Hochreiter 2017, "Self-Normalizing Neural Networks",
    arXiv:1706.02515 (weights N(0, 1/fan_in)).
    """
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="linear")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class SpecModel(nn.Module):
    """Base of the built models: keeps the spec, checks inputs, lists the dropout placement.

    Attributes:
        spec: the :class:`ModelSpec` the model was built from.
        input_shape: the shape of one example, as given to ``build_model``.
        n_outputs: width of the output layer.
    """

    def __init__(self, spec: ModelSpec, input_shape: tuple[int, ...], n_outputs: int) -> None:
        super().__init__()
        self.spec = spec
        self.input_shape = tuple(input_shape)
        self.n_outputs = n_outputs
        # (place label, module) in forward order; the modules are also registered children.
        self._placements: list[tuple[str, nn.Module]] = []
        # The rate each placed layer was built with: what a rate schedule scales.
        self._base_rates: list[float | None] = []
        # (ConcreteDropout, the module consuming its output, features per example entering it)
        self._concrete: list[tuple[nn.Module, nn.Module, int]] = []

    def _sequence_shape(self) -> tuple[int, ...]:
        """The per-example shape of a sequence model: ``(L,)`` or ``(L, F)``; ``(L,)`` for tokens."""
        shape = self.input_shape
        if self.spec.vocab_size is not None and len(shape) != 1:
            raise ConfigError(f"token input_shape must be (L,), got {shape}")
        if len(shape) not in (1, 2):
            raise ConfigError(f"{self.spec.kind} input_shape must be (L,) or (L, F), got {shape}")
        return shape

    def _place(self, label: str, module: nn.Module) -> nn.Module:
        self._placements.append((label, module))
        self._base_rates.append(getattr(module, "p", None))
        return module

    def _dropout(
        self, label: str, d: DropoutSpec, index: int = 0, generator: torch.Generator | None = None
    ) -> nn.Module:
        """Build the layer of ``d`` for hidden layer ``index`` and record it under ``label``."""
        layer = make_dropout(d, d.rate(index), kind=self.spec.kind, generator=generator)
        return self._place(label, layer)

    def _link_concrete(
        self, dropouts: list[nn.Module | None], consumers: list[nn.Module], features: list[int]
    ) -> None:
        """Record which module consumes each ConcreteDropout's output (position i -> i)."""
        from droplab.nn import ConcreteDropout

        for drop, consumer, k in zip(dropouts, consumers, features):
            if isinstance(drop, ConcreteDropout):
                self._concrete.append((drop, consumer, k))

    def concrete_regularization(self) -> torch.Tensor:
        """Sum of the Concrete-dropout regularizers of the model, to add to the training loss.

        Gal, Hron, Kendall 2017, arXiv:1705.07832: for each ConcreteDropout layer,
        ``wr * ||W||^2 / (1 - p) + dr * K * (p log p + (1 - p) log(1 - p))`` where ``W`` are the
        parameters of the layer that consumes its output and ``K`` the features per example
        entering it. A zero tensor when the model has no ConcreteDropout.

        Example::

            loss = criterion(model(x), y) + model.concrete_regularization()
        """
        first = next(self.parameters(), None)
        total = torch.zeros(()) if first is None else first.new_zeros(())
        for drop, consumer, k in self._concrete:
            total = total + drop.regularization(consumer, k)
        return total

    def describe(self) -> list[tuple[str, str]]:
        """Where each dropout layer sits: ``[(place, one-line layer repr), ...]`` in forward order.

        Labels are ``input``, ``embedding``, ``hidden[i]``, ``recurrent[i]``, ``attention[i]``
        (``i`` counts layers from 0). An empty list means the model has no dropout.
        """
        return [(label, _one_line(m)) for label, m in self._placements]

    def _shape_error(self, x: torch.Tensor, expected: str) -> DataError:
        return DataError(
            f"{self.spec.kind} model expects input of shape {expected}, got {tuple(x.shape)}"
        )

    def _check_exact(self, x: torch.Tensor, shape: tuple[int, ...]) -> None:
        if tuple(x.shape[1:]) != shape:
            raise self._shape_error(x, str(("N",) + shape).replace("'", ""))

    def _check_tokens(self, x: torch.Tensor, vocab_size: int) -> None:
        if x.dim() != 2:
            raise self._shape_error(x, "(N, L) of token ids")
        if x.dtype.is_floating_point or x.dtype.is_complex or x.dtype == torch.bool:
            raise DataError(f"token input must be an integer tensor, got dtype {x.dtype}")
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= vocab_size):
            raise DataError(
                f"token ids must be in [0, {vocab_size}), got ids in "
                f"[{int(x.min())}, {int(x.max())}]"
            )
