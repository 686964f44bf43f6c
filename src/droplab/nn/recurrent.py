"""Recurrent dropout layers: locked (variational), embedding (word type) and weight drop.

Together they are the dropout part of AWD-LSTM (Merity, Keskar, Socher 2017, arXiv:1708.02182).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from droplab._checks import check_choice, did_you_mean
from droplab.errors import ConfigError
from droplab.functional.unit import DROPOUT_MODES, dropout
from droplab.functional.recurrent import embedding_dropout, locked_dropout
from droplab.nn._base import StochasticLayer

__all__ = ["LockedDropout", "EmbeddingDropout", "WeightDrop"]


class LockedDropout(StochasticLayer):
    """Variational RNN dropout: one mask per sequence, reused at every time step.

    Gal & Ghahramani, NeurIPS 2016, arXiv:1512.05287. Apply it to the inputs and outputs of
    recurrent layers; for the recurrent connections use :class:`WeightDrop`. Inverted scaling.
    See :func:`droplab.functional.locked_dropout`.

    Args:
        p: probability of dropping a unit for a whole sequence, in [0, 1). Default 0.5.
        batch_first: input is ``(N, T, F)`` instead of ``(T, N, F)`` (default ``False``).
        generator: optional ``torch.Generator`` the masks are drawn from.

    Shape:
        Input ``(T, N, F)`` (``(N, T, F)`` with ``batch_first``), output the same.

    Example:
        >>> drop = LockedDropout(0.4)
        >>> out, _ = torch.nn.LSTM(8, 16)(drop(torch.randn(20, 4, 8)))
    """

    def __init__(
        self,
        p: float = 0.5,
        batch_first: bool = False,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(p, generator=generator)
        self.batch_first = bool(batch_first)

    def forward(self, x: Tensor) -> Tensor:
        return locked_dropout(
            x,
            self.p,
            batch_first=self.batch_first,
            training=self.training,
            generator=self.generator,
        )

    def extra_repr(self) -> str:
        return f"p={self.p}, batch_first={self.batch_first}"


class EmbeddingDropout(StochasticLayer):
    """Drop whole word types: all occurrences of an id in the batch share one mask value.

    Gal & Ghahramani, NeurIPS 2016, arXiv:1512.05287, section 4 (as used in AWD-LSTM). The
    layer works on the embedded batch and needs the ids that produced it::

        emb, drop = nn.Embedding(vocab, dim), EmbeddingDropout(0.1)
        e = emb(ids)
        e = drop(e, ids)

    Kept vectors are scaled by ``1 / (1 - p)``. See :func:`droplab.functional.embedding_dropout`.

    Args:
        p: probability of dropping a word type, in [0, 1). Default 0.5 (AWD-LSTM uses 0.1).
        generator: optional ``torch.Generator`` the masks are drawn from.

    Shape:
        ``x``: ``(*, D)``; ``ids``: ``(*)`` integer; output ``(*, D)``.

    Example:
        >>> ids = torch.randint(0, 50, (7, 3))
        >>> e = EmbeddingDropout(0.1)(torch.nn.Embedding(50, 8)(ids), ids)
    """

    def forward(self, x: Tensor, ids: Tensor) -> Tensor:
        return embedding_dropout(
            x, ids, self.p, training=self.training, generator=self.generator
        )


class WeightDrop(StochasticLayer):
    """DropConnect on the weights of a wrapped module, typically an RNN's hidden-to-hidden matrix.

    Merity, Keskar, Socher, "Regularizing and Optimizing LSTM Language Models", ICLR 2018,
    arXiv:1708.02182 (AWD-LSTM), using DropConnect (Wan, Zeiler, Zhang, LeCun, Fergus, ICML
    2013) on ``weight_hh``: one Bernoulli mask per weight element is drawn per forward call, so
    the same dropped recurrent connections are used at every time step of the batch, and the
    fast cuDNN/fused kernels still run.

    The wrapped module keeps its parameters (``weight_drop.rnn.weight_hh_l0`` is the raw weight
    the optimizer updates, and the state dict is the module's under ``rnn.``). Each forward
    builds the masked weight and runs the module with it through
    :func:`torch.func.functional_call`, which never writes into the stored parameters; torch's
    RNN modules notice the swapped weights and re-flatten them, so there is no warning about
    non-contiguous weights.

    Not mean preserving: the masked weight is unbiased, but the recurrence is nonlinear in it.

    Args:
        rnn: the module to wrap, usually ``nn.LSTM``, ``nn.GRU`` or ``nn.RNN`` (any module works).
        p: probability of dropping a weight element, in [0, 1). Default 0.5 (AWD-LSTM uses 0.5).
        weights: names of the parameters of ``rnn`` to drop, default ``("weight_hh_l0",)``.
        mode: ``"inverted"`` (default; kept weights scaled by ``1 / (1 - p)``, eval uses the raw
            weights) or ``"classic"`` (training masks only, eval uses ``(1 - p) * W``).
        generator: optional ``torch.Generator`` the masks are drawn from.

    Shape:
        That of the wrapped module; ``forward(*args, **kwargs)`` passes everything through.

    Example:
        >>> lstm = WeightDrop(torch.nn.LSTM(8, 16, num_layers=2), 0.5,
        ...                   weights=("weight_hh_l0", "weight_hh_l1"))
        >>> out, (h, c) = lstm(torch.randn(20, 4, 8))
    """

    mean_preserving = False

    def __init__(
        self,
        rnn: nn.Module,
        p: float = 0.5,
        weights: str | Sequence[str] = ("weight_hh_l0",),
        mode: str = "inverted",
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(p, generator=generator)
        if not isinstance(rnn, nn.Module):
            raise ConfigError(f"rnn must be a torch.nn.Module, got {type(rnn).__name__}")
        names = (weights,) if isinstance(weights, str) else tuple(weights)
        if not names:
            raise ConfigError("weights must name at least one parameter, got ()")
        valid = [name for name, _ in rnn.named_parameters()]
        for name in names:
            if not isinstance(name, str) or name not in valid:
                hint = did_you_mean(name, valid) if isinstance(name, str) else ""
                raise ConfigError(
                    f"unknown weight {name!r} for {type(rnn).__name__}{hint}; "
                    f"valid weights: {', '.join(valid)}"
                )
        if len(set(names)) != len(names):
            raise ConfigError(f"weights must not repeat a name, got {names!r}")
        self.rnn = rnn
        self.weights = names
        self.mode = check_choice("mode", mode, DROPOUT_MODES)

    def _dropped_weights(self) -> dict[str, Tensor]:
        params = dict(self.rnn.named_parameters())
        return {
            name: dropout(
                params[name],
                self.p,
                mode=self.mode,
                training=self.training,
                generator=self.generator,
            )
            for name in self.weights
        }

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self.p == 0.0 or (not self.training and self.mode == "inverted"):
            return self.rnn(*args, **kwargs)
        # The stored parameters stay the leaves the optimizer sees; functional_call swaps the
        # masked tensors in for this call only. torch's RNNs then rebuild their flat weight list
        # (RNNBase._weights_have_changed), which is what keeps cuDNN from warning about
        # non-contiguous weights, and rebuild it again on the next plain call.
        return functional_call(self.rnn, self._dropped_weights(), args, kwargs)

    def extra_repr(self) -> str:
        return f"p={self.p}, weights={self.weights}, mode={self.mode!r}"
