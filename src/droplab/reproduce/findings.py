"""The published findings on dropout, rerun offline at a small scale: the registry.

:data:`FINDINGS` maps each number to its :class:`Spec` (citation, published figures, the
criterion fixed before anything runs, the measure). The measures live one family per module:

- :mod:`~droplab.reproduce.findings_srivastava` -- 1-6, Srivastava et al. (2014)'s tables and
  figures;
- :mod:`~droplab.reproduce.findings_variants` -- 7-9, DropConnect / spatial / DropBlock,
  variational RNN dropout, concrete dropout;
- :mod:`~droplab.reproduce.findings_training` -- 10-12, early stopping, robustness to noise,
  decoupled weight decay;
- :mod:`~droplab.reproduce.findings_time` -- 13-16, early and late dropout, R-Drop, LayerDrop.

Each finding also has a function of its own (``dropout_vs_none(ctx)`` ...), made from its spec
by :func:`~droplab.reproduce.registry.finding_function`.

Example::

    from droplab.reproduce.findings import FINDINGS, Context
    finding = FINDINGS[1].run(Context(size="smoke", seeds=[0, 1]))
    finding.agrees, finding.measured["text"]
"""

from __future__ import annotations

from droplab.reproduce import findings_srivastava, findings_time, findings_training, findings_variants
from droplab.reproduce.registry import SIZES, Context, Finding, Spec, finding_function

__all__ = [
    "SIZES",
    "Finding",
    "Spec",
    "Context",
    "FINDINGS",
    "dropout_vs_none",
    "regularizer_ladder",
    "rate_curve",
    "data_size",
    "mc_vs_weight_scaling",
    "bernoulli_vs_gaussian",
    "structured_dropout",
    "variational_rnn",
    "concrete_rate",
    "early_stopping",
    "robustness",
    "weight_decay",
    "early_dropout_underfitting",
    "late_dropout_overfitting",
    "rdrop_text",
    "layerdrop_pruning",
]

#: The findings by number, 1-16.
FINDINGS: dict[int, Spec] = {
    spec.number: spec
    for module in (findings_srivastava, findings_variants, findings_training, findings_time)
    for spec in module.SPECS
}

dropout_vs_none = finding_function(
    FINDINGS[1], "dropout_vs_none",
    "Finding 1: dropout vs none on over-parameterized MLPs (Srivastava et al. 2014, Table 2).")
regularizer_ladder = finding_function(
    FINDINGS[2], "regularizer_ladder",
    "Finding 2: the regularizer ladder (Srivastava et al. 2014, Table 9).")
rate_curve = finding_function(
    FINDINGS[3], "rate_curve",
    "Finding 3: the dropout-rate curve, n fixed vs p*n fixed (Srivastava et al. 2014, Fig. 9).")
data_size = finding_function(
    FINDINGS[4], "data_size",
    "Finding 4: dropout's gain against the data set size (Srivastava et al. 2014, Fig. 10).")
mc_vs_weight_scaling = finding_function(
    FINDINGS[5], "mc_vs_weight_scaling",
    "Finding 5: MC averaging vs weight scaling as T grows (Srivastava et al. 2014, Fig. 11).")
bernoulli_vs_gaussian = finding_function(
    FINDINGS[6], "bernoulli_vs_gaussian",
    "Finding 6: Bernoulli vs Gaussian dropout (Srivastava et al. 2014, Table 10).")
structured_dropout = finding_function(
    FINDINGS[7], "structured_dropout",
    "Finding 7: DropConnect vs dropout; spatial dropout and DropBlock vs dropout in CNNs.")
variational_rnn = finding_function(
    FINDINGS[8], "variational_rnn",
    "Finding 8: variational vs per-step dropout in a GRU (Gal & Ghahramani 2016).")
concrete_rate = finding_function(
    FINDINGS[9], "concrete_rate",
    "Finding 9: the learned concrete-dropout rate against N (Gal, Hron & Kendall 2017).")
early_stopping = finding_function(
    FINDINGS[10], "early_stopping",
    "Finding 10: Prechelt's GL/PQ/UP early stopping vs patience (Prechelt 1998).")
robustness = finding_function(
    FINDINGS[11], "robustness",
    "Finding 11: robustness to input noise and label noise, with and without dropout.")
weight_decay = finding_function(
    FINDINGS[12], "weight_decay",
    "Finding 12: AdamW vs Adam + L2 over lr x decay (Loshchilov & Hutter 2019).")
early_dropout_underfitting = finding_function(
    FINDINGS[13], "early_dropout_underfitting",
    "Finding 13: early dropout on an underfitting MLP (Liu et al. 2023).")
late_dropout_overfitting = finding_function(
    FINDINGS[14], "late_dropout_overfitting",
    "Finding 14: standard/late vs early dropout on an overfitting MLP (Liu et al. 2023).")
rdrop_text = finding_function(
    FINDINGS[15], "rdrop_text",
    "Finding 15: R-Drop vs plain dropout on the text transformer (Liang et al. 2021).")
layerdrop_pruning = finding_function(
    FINDINGS[16], "layerdrop_pruning",
    "Finding 16: LayerDrop, pruned to half the blocks (Fan et al. 2020).")
