"""Models built from a spec, with dropout placed per place (input, hidden, recurrent, ...).

    from droplab.models import ModelSpec, build_model, parse_dropout
    spec = ModelSpec(kind="mlp", hidden=(256, 256), dropout=parse_dropout("input=0.2,hidden=0.5"))
    model = build_model(spec, input_shape=(40,), n_outputs=10, seed=0)
    model.describe()  # [('input', 'Dropout(p=0.2, ...)'), ('hidden[0]', ...), ...]

Every built model is an ``nn.Module`` with ``spec``, ``input_shape``, ``n_outputs`` and
``describe()``; its dropout layers come from :mod:`droplab.nn`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from droplab._checks import check_positive_int
from droplab.errors import ConfigError
from droplab.models._dropout import SpecModel
from droplab.models.cnn import CNN
from droplab.models.grammar import DropoutEntry, parse_dropout_entries
from droplab.models.mlp import MLP
from droplab.models.prune import prune
from droplab.models.rnn import RNN
from droplab.models.spec import (
    ACTIVATIONS,
    KINDS,
    LAYERS,
    PLACES,
    DropoutSpec,
    ModelSpec,
    parse_dropout,
)
from droplab.models.transformer import Transformer

__all__ = [
    "ModelSpec",
    "DropoutSpec",
    "parse_dropout",
    "parse_dropout_entries",
    "DropoutEntry",
    "build_model",
    "count_parameters",
    "prune",
    "SpecModel",
    "MLP",
    "CNN",
    "RNN",
    "Transformer",
    "KINDS",
    "PLACES",
    "LAYERS",
    "ACTIVATIONS",
]

_BUILDERS = {
    "mlp": MLP,
    "cnn1d": CNN,
    "cnn2d": CNN,
    "gru": RNN,
    "lstm": RNN,
    "transformer": Transformer,
}


def build_model(
    spec: ModelSpec,
    input_shape: Sequence[int],
    n_outputs: int,
    *,
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> SpecModel:
    """Build the model a :class:`ModelSpec` describes.

    Args:
        spec: the specification (a ``dict`` is accepted and read with ``ModelSpec.from_dict``).
        input_shape: shape of one example, without the batch axis: MLP any; cnn1d ``(C, L)`` or
            ``(L,)``; cnn2d ``(C, H, W)`` or ``(H, W)``; gru/lstm/transformer ``(L,)`` or
            ``(L, F)`` (``(L,)`` of token ids with ``vocab_size``).
        n_outputs: width of the output layer: classes for classification, targets for
            regression (the loss decides which; the model ends in a plain Linear).
        seed: if given, the weights are initialised from this seed inside
            ``torch.random.fork_rng``, so the global RNG state is left as it was; ``None``
            (default) draws from the global RNG.
        generator: optional ``torch.Generator`` for every dropout mask; ``None`` uses torch's
            global generator.

    Returns:
        An ``nn.Module`` (a :class:`SpecModel`) with ``spec`` and ``describe()``.

    Example::

        model = build_model(ModelSpec(kind="gru", hidden=(64,)), (40,), 10, seed=0)
        model(torch.randn(8, 40)).shape  # (8, 10)
    """
    if isinstance(spec, dict):
        spec = ModelSpec.from_dict(spec)
    if not isinstance(spec, ModelSpec):
        raise ConfigError(f"spec must be a ModelSpec or a dict, got {type(spec).__name__}")
    if isinstance(input_shape, int) or not isinstance(input_shape, Sequence) or not input_shape:
        raise ConfigError(f"input_shape must be a non-empty tuple of sizes, got {input_shape!r}")
    input_shape = tuple(
        check_positive_int(f"input_shape[{i}]", d) for i, d in enumerate(input_shape)
    )
    check_positive_int("n_outputs", n_outputs)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ConfigError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    builder = _BUILDERS[spec.kind]
    if seed is None:
        return builder(spec, input_shape, n_outputs, generator=generator)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"seed must be an integer, got {seed!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return builder(spec, input_shape, n_outputs, generator=generator)


def count_parameters(model: nn.Module, *, trainable_only: bool = True) -> int:
    """Number of scalar parameters in ``model`` (only those with ``requires_grad`` by default).

    Example::

        count_parameters(nn.Linear(40, 10))  # 410
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
