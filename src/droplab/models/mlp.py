"""Multi-layer perceptron built from a :class:`~droplab.models.spec.ModelSpec`."""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn

from droplab.models._dropout import SpecModel, activation, lecun_normal_, wrap_weights
from droplab.models.spec import ModelSpec

__all__ = ["MLP"]


class MLP(SpecModel):
    """Fully connected network: flatten, [Linear, BatchNorm?, activation, dropout?] x n, Linear.

    The arrangement of Srivastava et al. 2014 ("Dropout: a simple way to prevent neural
    networks from overfitting", JMLR 15): ``input`` dropout on the flattened input, ``hidden``
    dropout after each hidden activation (per-layer rates when ``p`` is a tuple); no dropout
    follows the output layer. ``layer="dropconnect"`` at ``hidden`` instead wraps each hidden
    Linear in DropConnect (Wan et al. 2013); with ``inference="moment"`` the activation moves
    inside the wrapper, which needs it for moment matching. ``concrete`` layers are linked to the
    Linear that consumes them (see :meth:`concrete_regularization`). With ``activation="selu"``
    the weights are LeCun-normal (Klambauer et al. 2017, arXiv:1706.02515), as self-normalizing
    networks require.

    Args:
        spec: a ``ModelSpec`` with ``kind="mlp"``; ``hidden=()`` gives a linear model.
        input_shape: shape of one example; any shape, it is flattened.
        n_outputs: output width (classes for classification, targets for regression).
        generator: optional ``torch.Generator`` for every dropout mask.

    Shape:
        input ``(N, *input_shape)``; output ``(N, n_outputs)``.

    Example::

        model = MLP(ModelSpec(hidden=(256, 256), dropout={"hidden": 0.5}), (40,), 10)
        model(torch.randn(8, 40)).shape  # (8, 10)
    """

    def __init__(
        self,
        spec: ModelSpec,
        input_shape: tuple[int, ...],
        n_outputs: int,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(spec, input_shape, n_outputs)
        drop = spec.dropout
        width = math.prod(self.input_shape)
        dropouts: list[nn.Module | None] = [None]
        consumers: list[nn.Module] = []
        features = [width]
        self.input_dropout = None
        if "input" in drop:
            d = drop["input"]
            self.input_dropout = self._dropout("input", d, generator=generator)
            dropouts[0] = self.input_dropout
        hid = drop.get("hidden")
        connect = hid is not None and hid.layer == "dropconnect"
        act_inside = connect and hid.options.get("inference") == "moment"
        blocks = []
        for i, h in enumerate(spec.hidden):
            parts: OrderedDict[str, nn.Module] = OrderedDict()
            linear: nn.Module = nn.Linear(width, h)
            if connect:
                opts = {"activation": activation(spec.activation)} if act_inside else {}
                linear = wrap_weights(linear, hid, hid.rate(i), generator=generator, **opts)
                self._place(f"hidden[{i}]", linear)
            parts["linear"] = linear
            if spec.batch_norm:
                parts["norm"] = nn.BatchNorm1d(h)
            if not act_inside:
                parts["act"] = activation(spec.activation)
            hidden_drop = None
            if hid is not None and not connect:
                hidden_drop = self._dropout(f"hidden[{i}]", hid, i, generator)
                parts["dropout"] = hidden_drop
            blocks.append(nn.Sequential(parts))
            consumers.append(linear)
            dropouts.append(hidden_drop)
            features.append(h)
            width = h
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(width, n_outputs)
        consumers.append(self.head)
        self._link_concrete(dropouts, consumers, features)
        if spec.activation == "selu":
            lecun_normal_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_exact(x, self.input_shape)
        x = x.flatten(1)
        if self.input_dropout is not None:
            x = self.input_dropout(x)
        return self.head(self.blocks(x))
