"""1-d and 2-d convolutional networks built from a :class:`~droplab.models.spec.ModelSpec`."""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn

from droplab.errors import ConfigError
from droplab.models._dropout import (
    SpecModel,
    activation,
    lecun_normal_,
    wrap_weights,
)
from droplab.models.spec import DropoutSpec, ModelSpec, _per_layer, _readout

__all__ = ["CNN"]


class CNN(SpecModel):
    """Convolutional network: [conv, BatchNorm?, activation, pool?, dropout?] x n, readout, Linear.

    ``hidden`` lists the channels of each conv layer; ``kernel_size``, ``stride`` and ``padding``
    are one int for all layers or one per layer; ``padding=None`` means ``kernel_size // 2``.
    ``input`` dropout acts on the input map, ``hidden`` dropout after each block (after the
    pooling); both accept element-wise layers, ``spatial`` (whole channels, Tompson et al. 2015,
    arXiv:1411.4280) and ``dropblock`` (contiguous regions, Ghiasi et al. 2018,
    arXiv:1810.12890; option ``block_size``, the layer's default 7 unless given, checked against
    the map size at build time). ``dropconnect`` at ``hidden`` wraps each conv instead (Wan et
    al. 2013); ``concrete`` layers are linked to the conv/Linear consuming them. The readout
    flattens the last map (``flatten``, default) or averages it over space (``mean``) before the
    output Linear; no dropout follows the output layer. ``selu`` gets LeCun-normal weights.

    The MNIST-1D reference CNN (Greydanus 2020, arXiv:2011.14439; 94% test accuracy) is
    ``ModelSpec(kind="cnn1d", hidden=(25, 25, 25), kernel_size=(5, 3, 3), stride=2, padding=1)``
    (40 -> 19 -> 10 -> 5 positions, 125 features into the Linear head).

    Args:
        spec: a ``ModelSpec`` with ``kind`` ``cnn1d`` or ``cnn2d``.
        input_shape: one example: cnn1d ``(C, L)`` or ``(L,)`` (a channel axis is added);
            cnn2d ``(C, H, W)`` or ``(H, W)``.
        n_outputs: output width.
        generator: optional ``torch.Generator`` for every dropout mask.

    Shape:
        input ``(N, *input_shape)``; output ``(N, n_outputs)``.

    Example::

        spec = ModelSpec(kind="cnn1d", hidden=(25, 25, 25), kernel_size=5, stride=2)
        CNN(spec, (40,), 10)(torch.randn(8, 40)).shape  # (8, 10)
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
        dims = 1 if spec.kind == "cnn1d" else 2
        shape = self.input_shape
        if len(shape) == dims:
            shape = (1,) + shape  # add the channel axis
        elif len(shape) != dims + 1:
            want = "(C, L) or (L,)" if dims == 1 else "(C, H, W) or (H, W)"
            raise ConfigError(f"{spec.kind} input_shape must be {want}, got {self.input_shape}")
        self._add_channel = len(shape) != len(self.input_shape)
        Conv = nn.Conv1d if dims == 1 else nn.Conv2d
        Norm = nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d
        Pool = nn.MaxPool1d if dims == 1 else nn.MaxPool2d

        drop = spec.dropout
        n = len(spec.hidden)
        kernels = _per_layer(spec.kernel_size, n)
        strides = _per_layer(spec.stride, n)
        pads = _per_layer(spec.padding, n)
        channels, size = shape[0], shape[1:]
        dropouts: list[nn.Module | None] = [None]
        consumers: list[nn.Module] = []
        features = [math.prod(shape)]
        self.input_dropout = None
        if "input" in drop:
            d = drop["input"]
            self._check_block(d, size, "the input")
            self.input_dropout = self._dropout("input", d, generator=generator)
            dropouts[0] = self.input_dropout
        hid = drop.get("hidden")
        connect = hid is not None and hid.layer == "dropconnect"
        act_inside = connect and hid.options.get("inference") == "moment"
        blocks = []
        for i, c in enumerate(spec.hidden):
            k, s = kernels[i], strides[i]
            pad = k // 2 if pads[i] is None else pads[i]
            parts: OrderedDict[str, nn.Module] = OrderedDict()
            conv: nn.Module = Conv(channels, c, k, stride=s, padding=pad)
            if connect:
                opts = {"activation": activation(spec.activation)} if act_inside else {}
                conv = wrap_weights(conv, hid, hid.rate(i), generator=generator, **opts)
                self._place(f"hidden[{i}]", conv)
            parts["conv"] = conv
            size = tuple((d + 2 * pad - k) // s + 1 for d in size)
            if spec.batch_norm:
                parts["norm"] = Norm(c)
            if not act_inside:
                parts["act"] = activation(spec.activation)
            if spec.pool > 1:
                parts["pool"] = Pool(spec.pool)
                size = tuple(d // spec.pool for d in size)
            if min(size) < 1:
                shown = tuple(max(d, 0) for d in size)
                raise ConfigError(
                    f"{spec.kind}: input of spatial size {shape[1:]} shrinks to {shown} after "
                    f"conv layer {i} (kernel {k}, stride {s}, padding {pad}, pool {spec.pool}); "
                    f"use fewer layers, a smaller stride or less pooling"
                )
            hidden_drop = None
            if hid is not None and not connect:
                self._check_block(hid, size, f"the output of conv layer {i}")
                hidden_drop = self._dropout(f"hidden[{i}]", hid, i, generator)
                parts["dropout"] = hidden_drop
            blocks.append(nn.Sequential(parts))
            consumers.append(conv)
            dropouts.append(hidden_drop)
            features.append(c * math.prod(size))
            channels = c
        self.blocks = nn.Sequential(*blocks)
        self.readout = _readout(spec)
        width = channels * math.prod(size) if self.readout == "flatten" else channels
        self.head = nn.Linear(width, n_outputs)
        consumers.append(self.head)
        self._link_concrete(dropouts, consumers, features)
        if spec.activation == "selu":
            lecun_normal_(self)

    def _check_block(self, d: DropoutSpec, size: tuple[int, ...], where: str) -> None:
        """DropBlock needs whole blocks to fit; say where one does not, before training starts."""
        if d.layer != "dropblock":
            return
        import inspect

        from droplab.nn import DropBlock1d

        default = inspect.signature(DropBlock1d).parameters["block_size"].default
        block = d.options.get("block_size", default)
        if block > min(size):
            raise ConfigError(
                f"dropblock block_size={block} does not fit {where} of spatial size {size}; "
                f"set the dropblock option block_size <= {min(size)}"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_exact(x, self.input_shape)
        if self._add_channel:
            x = x.unsqueeze(1)
        if self.input_dropout is not None:
            x = self.input_dropout(x)
        x = self.blocks(x)
        x = x.flatten(1) if self.readout == "flatten" else x.flatten(2).mean(-1)
        return self.head(x)
