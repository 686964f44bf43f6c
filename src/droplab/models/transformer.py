"""A small pre-LayerNorm Transformer encoder built from a :class:`~droplab.models.ModelSpec`."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from droplab.errors import ConfigError
from droplab.models._dropout import SpecModel, activation
from droplab.models.spec import ModelSpec, _readout

__all__ = ["SelfAttention", "EncoderBlock", "Transformer"]


class SelfAttention(nn.Module):
    """Multi-head self-attention whose attention weights pass through a given dropout layer.

    Written out (rather than ``nn.MultiheadAttention``) so that any droplab layer, not only
    torch's own dropout, can act on the attention probabilities (and so that MC-dropout tools
    find that layer as a droplab layer). softmax(Q K^T / sqrt(d_head)) is computed in full:
    O(L^2) memory, which is fine for the short sequences droplab studies.

    Args:
        d_model: model width; ``heads`` must divide it.
        heads: number of heads.
        attn_dropout: a module applied to the (N, heads, L, L) attention weights, or ``None``.

    Shape:
        input and output ``(N, L, d_model)``.

    Example::

        SelfAttention(64, 4)(torch.randn(2, 10, 64)).shape  # (2, 10, 64)
    """

    def __init__(self, d_model: int, heads: int, attn_dropout: nn.Module | None = None) -> None:
        super().__init__()
        if d_model % heads:
            raise ConfigError(f"d_model={d_model} must be divisible by heads={heads}")
        self.heads = heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.attn_dropout = attn_dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, length, d = x.shape
        q, k, v = self.qkv(x).view(n, length, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d // self.heads), dim=-1)
        if self.attn_dropout is not None:
            weights = self.attn_dropout(weights)
        out = (weights @ v).transpose(1, 2).reshape(n, length, d)
        return self.proj(out)

    def extra_repr(self) -> str:
        return f"heads={self.heads}"


class EncoderBlock(nn.Module):
    """Pre-LN encoder block: x + drop(attn(LN(x))), then x + drop(ffn(LN(x))).

    ``branch_dropout`` (the ``hidden`` place) acts on each sublayer's output before the residual
    add: "residual dropout" (Vaswani et al. 2017, arXiv:1706.03762) with element-wise layers,
    stochastic depth with ``droppath`` (Huang et al. 2016, arXiv:1603.09382). One module serves
    both branches; each call draws its own mask.

    Shape:
        input and output ``(N, L, d_model)``.
    """

    def __init__(
        self,
        d_model: int,
        heads: int,
        ff_dim: int,
        act: str,
        attn_dropout: nn.Module | None = None,
        branch_dropout: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.attn = SelfAttention(d_model, heads, attn_dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.ffn = nn.Sequential(
            nn.Linear(d_model, ff_dim), activation(act), nn.Linear(ff_dim, d_model)
        )
        self.branch_dropout = branch_dropout

    def _branch(self, y: torch.Tensor) -> torch.Tensor:
        return y if self.branch_dropout is None else self.branch_dropout(y)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self._branch(self.attn(self.norm1(x)))
        return x + self._branch(self.ffn(self.norm2(x)))


class Transformer(SpecModel):
    """Small Transformer encoder for sequence classification/regression.

    Tokens (``vocab_size`` set) go through an ``nn.Embedding``; real inputs ``(L,)``/``(L, F)``
    through a Linear input projection to ``d_model = hidden[0]``. A learned positional embedding
    is added (plus a learned class token with ``readout="cls"``), then ``layers`` pre-LN
    encoder blocks, a final LayerNorm, the readout (mean over positions, default, or the class
    token), and the output Linear. Dropout places:

    - ``embedding``: word-type dropout on the token embedding (Gal & Ghahramani 2016).
    - ``input``: on embedding + position, as Vaswani et al. 2017 (arXiv:1706.03762) do.
    - ``attention``: on the attention weights after the softmax, in droplab's own attention
      block (:class:`SelfAttention`), so any element-wise droplab layer works there.
    - ``hidden``: on each sublayer output before the residual add (per-layer rates over the
      ``layers`` blocks); ``droppath`` gives stochastic depth.
    - ``block``: :class:`~droplab.nn.LayerDrop` around each encoder block (Fan, Grave, Joulin
      2020, arXiv:1909.11556); prune the trained model with :func:`droplab.models.prune`.

    ``batch_norm=True`` adds one BatchNorm1d on the pooled vector before the output Linear; the
    LayerNorms stay in every case. No dropout follows the output layer.

    Args:
        spec: a ``ModelSpec`` with ``kind="transformer"``.
        input_shape: ``(L,)`` or ``(L, F)``; L is the longest sequence the positional embedding
            covers (shorter ones are accepted).
        n_outputs: output width.
        generator: optional ``torch.Generator`` for every dropout mask.

    Shape:
        input ``(N, L)``, ``(N, L, F)`` or token ids ``(N, L)``; output ``(N, n_outputs)``.

    Example::

        spec = ModelSpec(kind="transformer", hidden=(32,), heads=4, layers=2,
                         dropout={"attention": 0.1, "hidden": 0.1})
        Transformer(spec, (40,), 10)(torch.randn(8, 40)).shape  # (8, 10)
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
        shape = self._sequence_shape()
        d_model = spec.hidden[0]
        drop = spec.dropout
        self.max_len = shape[0]

        def layer(place: str, label: str, index: int = 0) -> nn.Module | None:
            return self._dropout(label, drop[place], index, generator) if place in drop else None

        self.embedding = self.input_proj = None
        self.embedding_dropout = None
        if spec.vocab_size is not None:
            self.embedding = nn.Embedding(spec.vocab_size, d_model)
            self.embedding_dropout = layer("embedding", "embedding")
            self._features = None
        else:
            self._features = 1 if len(shape) == 1 else shape[1]
            self.input_proj = nn.Linear(self._features, d_model)
        self.readout = _readout(spec)
        self.cls = nn.Parameter(torch.zeros(1, 1, d_model)) if self.readout == "cls" else None
        extra = 1 if self.cls is not None else 0
        self.pos = nn.Parameter(torch.randn(1, self.max_len + extra, d_model) * 0.02)
        self.input_dropout = layer("input", "input")

        ff_dim = spec.ff_dim or 4 * d_model
        blocks = []
        for i in range(spec.layers):
            attn = layer("attention", f"attention[{i}]")
            branch = layer("hidden", f"hidden[{i}]", i)
            block: nn.Module = EncoderBlock(d_model, spec.heads, ff_dim, spec.activation, attn, branch)
            if "block" in drop:
                block = self._place(f"block[{i}]", _layer_drop(block, drop["block"], generator))
            blocks.append(block)
        self.blocks = nn.Sequential(*blocks)
        self.final_norm = nn.LayerNorm(d_model)
        self.norm = nn.BatchNorm1d(d_model) if spec.batch_norm else None
        self.head = nn.Linear(d_model, n_outputs)

    def _check_input(self, x: torch.Tensor) -> None:
        if self.embedding is not None:
            self._check_tokens(x, self.spec.vocab_size)
        elif len(self.input_shape) == 1:
            if x.dim() != 2:
                raise self._shape_error(x, f"(N, L) with L <= {self.max_len}")
        elif x.dim() != 3 or x.shape[-1] != self._features:
            raise self._shape_error(x, f"(N, L, {self._features}) with L <= {self.max_len}")
        if not 1 <= x.shape[1] <= self.max_len:
            raise self._shape_error(x, f"(N, L, ...) with 1 <= L <= {self.max_len}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        if self.embedding is not None:
            ids = x
            x = self.embedding(ids)
            if self.embedding_dropout is not None:
                x = self.embedding_dropout(x, ids)
        else:
            x = self.input_proj(x.unsqueeze(-1) if x.dim() == 2 else x)
        if self.cls is not None:
            x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1)
        x = x + self.pos[:, : x.shape[1]]
        if self.input_dropout is not None:
            x = self.input_dropout(x)
        x = self.final_norm(self.blocks(x))
        x = x[:, 0] if self.cls is not None else x.mean(1)
        if self.norm is not None:
            x = self.norm(x)
        return self.head(x)


def _layer_drop(block: nn.Module, d: Any, generator: torch.Generator | None) -> nn.Module:
    from droplab.nn import LayerDrop

    return LayerDrop(block, d.rate(), generator=generator)
