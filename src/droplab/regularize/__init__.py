"""Regularizers that act on weights: L1/L2 penalties, decoupled weight decay, max-norm.

- :func:`weight_parameters` -- which parameters are weights (not biases, not norm layers);
  the one rule the penalties, the decay groups and the constraint share.
- :func:`l1_penalty`, :func:`l2_penalty` -- terms to add to the loss (``strength * sum w**2``,
  no 1/2).
- :func:`param_groups`, :class:`SGDW` -- decoupled weight decay (Loshchilov & Hutter, ICLR 2019,
  arXiv:1711.05101) in torch's ``AdamW`` convention ``theta -= lr * weight_decay * theta``.
- :func:`max_norm_`, :class:`MaxNorm`, :func:`clip_unit_norms_` -- max-norm constraint (Srivastava et al., JMLR 2014).

Early stopping is a trainer callback and lives in :mod:`droplab.train`.
"""

from droplab.regularize.constraints import MaxNorm, clip_unit_norms_, max_norm_
from droplab.regularize.decay import SGDW, param_groups
from droplab.regularize.penalties import (
    PARAMETER_KINDS,
    l1_penalty,
    l2_penalty,
    parameter_kind,
    weight_parameters,
)

__all__ = [
    "PARAMETER_KINDS",
    "parameter_kind",
    "weight_parameters",
    "l1_penalty",
    "l2_penalty",
    "param_groups",
    "SGDW",
    "max_norm_",
    "MaxNorm",
    "clip_unit_norms_",
]
