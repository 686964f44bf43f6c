"""GRU/LSTM sequence models built from a :class:`~droplab.models.spec.ModelSpec`."""

from __future__ import annotations

import torch
from torch import nn

from droplab.models._dropout import SpecModel, wrap_weights
from droplab.models.spec import ModelSpec, _readout

__all__ = ["RNN"]


class RNN(SpecModel):
    """Stacked GRU or LSTM reading a sequence, with one output vector per sequence.

    Each entry of ``hidden`` is one recurrent layer (sizes may differ); layers are separate
    ``nn.GRU``/``nn.LSTM`` modules so dropout can sit between them. Dropout places:

    - ``embedding``: drops whole word types of the token embedding (Gal & Ghahramani 2016,
      "A Theoretically Grounded Application of Dropout in Recurrent Neural Networks",
      arXiv:1512.05287). Needs ``vocab_size``.
    - ``input``: on the (embedded or raw) input sequence; ``locked`` reuses one mask over time.
    - ``hidden``: on each layer's output sequence with a fresh mask at every time step, i.e. on
      the non-recurrent connections only (Zaremba, Sutskever, Vinyals 2014, arXiv:1409.2329).
    - ``recurrent``: ``locked`` (default) puts LockedDropout on each layer's output, one mask per
      sequence reused at every step (variational dropout, Gal & Ghahramani 2016). Note that
      with cuDNN-style fused layers the recurrent state h_{t-1} itself is not masked; to
      regularise the hidden-to-hidden connections use ``weight``, which wraps every layer in
      WeightDrop on ``weight_hh_l0`` (Merity, Keskar, Socher 2017, arXiv:1708.02182).

    The readout is the last time step (``last``, default) or the mean over time (``mean``).
    ``batch_norm=True`` adds one BatchNorm1d on that readout vector before the output Linear;
    nothing inside the recurrence is normalised. No dropout follows the output layer.

    Args:
        spec: a ``ModelSpec`` with ``kind`` ``gru`` or ``lstm``.
        input_shape: one example: ``(L,)`` (a sequence of L scalars, e.g. MNIST-1D as 40 steps
            of 1 feature; or L token ids when ``vocab_size`` is set) or ``(L, F)``. L only
            documents the data; any length is accepted at run time.
        n_outputs: output width (classes, or regression targets).
        generator: optional ``torch.Generator`` for every dropout mask.

    Shape:
        input ``(N, L)``, ``(N, L, F)`` or token ids ``(N, L)``; output ``(N, n_outputs)``.

    Example::

        spec = ModelSpec(kind="gru", hidden=(64, 64), dropout={"recurrent": 0.25})
        RNN(spec, (40,), 10)(torch.randn(8, 40)).shape  # (8, 10)
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
        drop = spec.dropout

        self.embedding = None
        self.embedding_dropout = None
        if spec.vocab_size is not None:
            features = spec.embed_dim or spec.hidden[0]
            self.embedding = nn.Embedding(spec.vocab_size, features)
            if "embedding" in drop:
                d = drop["embedding"]
                self.embedding_dropout = self._dropout("embedding", d, generator=generator)
        else:
            features = 1 if len(shape) == 1 else shape[1]
        self._features = features

        self.input_dropout = None
        if "input" in drop:
            d = drop["input"]
            self.input_dropout = self._dropout("input", d, generator=generator)

        Cell = nn.GRU if spec.kind == "gru" else nn.LSTM
        hid, rec = drop.get("hidden"), drop.get("recurrent")
        self.rnns = nn.ModuleList()
        self.hidden_dropout = nn.ModuleList()
        self.recurrent_dropout = nn.ModuleList()
        width = features
        for i, h in enumerate(spec.hidden):
            rnn: nn.Module = Cell(width, h, batch_first=True)
            if rec is not None and rec.layer == "weight":
                rnn = wrap_weights(rnn, rec, rec.rate(), generator=generator)
                self._place(f"recurrent[{i}]", rnn)
            self.rnns.append(rnn)
            if hid is not None:
                self.hidden_dropout.append(self._dropout(f"hidden[{i}]", hid, i, generator))
            if rec is not None and rec.layer != "weight":
                self.recurrent_dropout.append(self._dropout(f"recurrent[{i}]", rec, 0, generator))
            width = h
        self.readout = _readout(spec)
        self.norm = nn.BatchNorm1d(width) if spec.batch_norm else None
        self.head = nn.Linear(width, n_outputs)

    def _check_input(self, x: torch.Tensor) -> None:
        if self.embedding is not None:
            self._check_tokens(x, self.spec.vocab_size)
        elif len(self.input_shape) == 1:
            if x.dim() != 2:
                raise self._shape_error(x, "(N, L)")
        elif x.dim() != 3 or x.shape[-1] != self._features:
            raise self._shape_error(x, f"(N, L, {self._features})")
        if x.shape[1] == 0:
            raise self._shape_error(x, "(N, L) with L >= 1")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        if self.embedding is not None:
            ids = x
            x = self.embedding(ids)
            if self.embedding_dropout is not None:
                x = self.embedding_dropout(x, ids)
        elif x.dim() == 2:
            x = x.unsqueeze(-1)
        if self.input_dropout is not None:
            x = self.input_dropout(x)
        for i, rnn in enumerate(self.rnns):
            x, _ = rnn(x)
            if len(self.hidden_dropout):
                x = self.hidden_dropout[i](x)
            if len(self.recurrent_dropout):
                x = self.recurrent_dropout[i](x)
        x = x[:, -1] if self.readout == "last" else x.mean(1)
        if self.norm is not None:
            x = self.norm(x)
        return self.head(x)
