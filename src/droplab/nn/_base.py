"""The base class every droplab dropout-family layer derives from.

It holds the drop probability ``p`` and an optional ``torch.Generator``, and declares whether
the layer is *mean preserving*: whether the expectation of its training-mode output equals its
eval-mode output for every input. The conformance tests check that declaration, and the
inference tools (MC dropout, the stochasticity audit) find stochastic layers through this class.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from droplab._checks import check_probability

__all__ = ["StochasticLayer"]


class StochasticLayer(nn.Module):
    """Base of droplab's dropout-family layers.

    Args:
        p: probability of dropping (always the drop probability, as in torch), in [0, 1);
            ``None`` for a layer that adds noise and drops nothing (:class:`GaussianNoise`).
        generator: optional ``torch.Generator`` the masks are drawn from; ``None`` uses torch's
            global generator (seed it with ``torch.manual_seed``). droplab never reseeds it.

    Subclasses set ``mean_preserving = False`` when E[train output] != eval output in general
    (alpha dropout, concrete dropout, dropout on recurrent weights behind a nonlinearity).
    """

    mean_preserving: ClassVar[bool] = True

    def __init__(
        self, p: float | None = 0.5, *, generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        self.p = None if p is None else check_probability("p", p)
        self.generator = generator

    def extra_repr(self) -> str:
        return f"p={self.p}"
