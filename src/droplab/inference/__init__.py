"""Inference with dropout networks: MC dropout, a stochasticity audit, calibration, robustness.

- :func:`mc_predict`, :func:`mc_mode`, :class:`MCResult`, :func:`predict`,
  :func:`mc_vs_weight_scaling` -- Monte Carlo dropout and its comparison with weight scaling.
- :func:`audit`, :class:`AuditReport` -- every stochastic operation of a forward pass, and
  what is wrong with it.
- :func:`ece`, :func:`nll`, :func:`brier`, :func:`fit_temperature`, :func:`calibration_report`
  -- calibration before and after temperature scaling.
- :func:`accuracy_under_noise`, :func:`corrupt_inputs` -- robustness to input noise.
- :func:`member_outputs`, :func:`member_count` -- the members of ensembles by construction (deep
  ensembles, Masksembles, BatchEnsemble), which :func:`mc_predict` also accepts.
"""

from droplab.inference.audit import (
    HIGH_RATE,
    INPUT_RATE_LIMIT,
    WARNING_CODES,
    AuditEntry,
    AuditReport,
    AuditWarning,
    audit,
)
from droplab.inference.calibration import (
    CalibrationReport,
    brier,
    calibration_metrics,
    calibration_report,
    ece,
    fit_temperature,
    nll,
    reliability_bins,
)
from droplab.inference.mc import MCResult, mc_mode, mc_predict, mc_vs_weight_scaling, predict
from droplab.inference.robustness import NOISE_KINDS, accuracy_under_noise, corrupt_inputs
from droplab.inference.members import member_count, member_outputs

__all__ = [
    "mc_predict",
    "mc_mode",
    "MCResult",
    "predict",
    "mc_vs_weight_scaling",
    "audit",
    "AuditReport",
    "AuditEntry",
    "AuditWarning",
    "WARNING_CODES",
    "INPUT_RATE_LIMIT",
    "HIGH_RATE",
    "ece",
    "nll",
    "brier",
    "reliability_bins",
    "calibration_metrics",
    "fit_temperature",
    "calibration_report",
    "CalibrationReport",
    "accuracy_under_noise",
    "corrupt_inputs",
    "NOISE_KINDS",
    "member_outputs",
    "member_count",
]
