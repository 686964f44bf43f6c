"""Diagnostics: each sentence's numbers against hand computation from scripted curves."""

import math

import pytest
import scipy.stats as sps

from droplab.report import diagnose, load_study
from droplab.report import diagnostics as dg
from droplab.stats import mean_ci

# The scripted curves of tests/report/conftest.py (copied: conftest is not importable).
V0 = [1.00, 0.80, 0.66, 0.60, 0.62, 0.65, 0.68, 0.70, 0.72, 0.75]  # no dropout: overfits
T0 = [0.90, 0.60, 0.40, 0.28, 0.20, 0.15, 0.11, 0.08, 0.06, 0.05]
OFFSETS = (-0.01, 0.0, 0.01)


def _t_interval(values):
    n = len(values)
    m = sum(values) / n
    return sps.t.interval(0.95, n - 1, loc=m, scale=sps.sem(values))


# --- overfitting -----------------------------------------------------------------------------------
def test_overfitting_numbers_match_the_curve():
    f = dg.overfitting(list(range(1, 11)), V0, T0, label="no dropout")
    assert f is not None and f.kind == "overfitting" and f.level == "warning"
    assert f.numbers["best_epoch"] == 4  # V0 is lowest (0.60) at epoch 4
    assert f.numbers["rise"] == pytest.approx(0.75 / 0.60 - 1)  # 25%
    assert f.numbers["train_fall"] == pytest.approx(1 - 0.05 / 0.28)
    assert f.sentence.startswith("overfitting (no dropout): validation loss is lowest at epoch 4")
    assert "rises 25% while training loss keeps falling" in f.sentence


def test_overfitting_thresholds_are_the_documented_ones():
    after = dg.OVERFIT_MIN_EPOCHS_AFTER
    epochs = list(range(1, 3 + after))
    train = [1.0 - 0.1 * i for i in range(len(epochs))]

    def val(rise):
        return [1.0, 0.5] + [0.5] * (after - 1) + [0.5 * (1 + rise)]

    assert dg.overfitting(epochs, val(dg.OVERFIT_MIN_RISE * 1.01), train) is not None
    assert dg.overfitting(epochs, val(dg.OVERFIT_MIN_RISE * 0.99), train) is None
    # the minimum one epoch too close to the end is not a trend
    short = [1.0, 0.5] + [0.6] * (after - 1)
    assert dg.overfitting(list(range(1, len(short) + 1)), short, train[: len(short)]) is None
    # validation rises but training loss rises too: not the overfitting signature
    assert dg.overfitting(list(range(1, 11)), V0, list(reversed(T0))) is None
    # the selected rate's curve ends 2% above its minimum: below the threshold
    v02 = [1.00, 0.78, 0.64, 0.56, 0.52, 0.50, 0.49, 0.48, 0.485, 0.49]
    assert dg.overfitting(list(range(1, 11)), v02, T0) is None
    assert dg.overfitting([1, 2], [1.0], [1.0, 0.5]) is None  # misaligned
    assert dg.overfitting([1, 2, 3], [1.0, math.nan, 2.0], [1, 1, 1]) is None


# --- underfitting ----------------------------------------------------------------------------------
def test_underfitting_numbers_and_conditions():
    # rate 0.6 of the scripted study: train-eval 0.62, best rate (0.2) 0.27, no dropout 0.28
    f = dg.underfitting("rate 0.6", 0.6, 0.2, 0.62, 0.27, 0.28, 0.70, 0.48)
    assert f is not None and f.kind == "underfitting"
    assert f.numbers["ratio"] == pytest.approx(0.62 / 0.28)
    assert f.numbers["ratio_best"] == pytest.approx(0.62 / 0.27)
    assert f.numbers["val_above_best"] == pytest.approx(0.70 / 0.48 - 1)
    assert f.sentence == (
        "rate 0.6 underfits: train-eval loss is 2.2x the baseline's (0.62 vs 0.28) and 2.3x the best "
        "rate's, and validation loss is 46% above the best"
    )
    # a rate below the best one is never called underfitting (memorizing baselines make any
    # dropout look like a large train-loss ratio)
    assert dg.underfitting("rate 0.1", 0.1, 0.2, 0.62, 0.27, 0.01, 0.70, 0.48) is None
    ratio = dg.UNDERFIT_RATIO
    assert dg.underfitting("r", 0.6, 0.2, 0.27 * ratio * 0.99, 0.27, 0.01, 0.70, 0.48) is None
    assert dg.underfitting("r", 0.6, 0.2, 0.27 * ratio * 1.01, 0.27, 0.01, 0.70, 0.48) is not None
    margin = dg.UNDERFIT_VAL_MARGIN
    assert dg.underfitting("r", 0.6, 0.2, 0.62, 0.27, 0.28, 0.48 * (1 + margin * 0.9), 0.48) is None
    assert dg.underfitting("r", 0.6, 0.2, 0.62, 0.27, 0.28, 0.48 * (1 + margin * 1.1), 0.48) is not None
    assert dg.underfitting("r", 0.6, 0.2, math.nan, 0.27, 0.28, 0.7, 0.48) is None
    # no usable baseline: the comparison with the best rate alone
    f = dg.underfitting("r", 0.6, 0.2, 0.62, 0.27, math.nan, 0.70, 0.48)
    assert "ratio" not in f.numbers and "2.3x the best rate's (0.62 vs 0.27)" in f.sentence


# --- did dropout help? -----------------------------------------------------------------------------
def test_dropout_effect_helped_in_accuracy_points():
    diffs = [0.0625, 0.06, 0.0575]
    f = dg.dropout_effect("rate 0.2", mean_ci(diffs), mean_ci([0.705, 0.70, 0.695]),
                          metric="val_acc", maximize=True, extra="validation loss 0.6 -> 0.48")
    lo, hi = _t_interval(diffs)
    assert f.kind == "helped" and f.level == "good"
    assert f.numbers["diff"] == pytest.approx(0.06) and f.numbers["lo"] == pytest.approx(lo)
    assert f.sentence == (
        f"dropout helped: rate 0.2 raises validation accuracy by 6.0 points (95% CI {lo * 100:.1f} "
        f"to {hi * 100:.1f}); validation loss 0.6 -> 0.48"
    )


def test_dropout_effect_helped_in_loss_reports_the_relative_gain():
    f = dg.dropout_effect("rate 0.3", mean_ci([-0.05, -0.04, -0.06]), mean_ci([0.6, 0.62, 0.58]))
    assert f.kind == "helped"
    assert f.numbers["relative"] == pytest.approx(0.05 / 0.6)
    assert "lowers validation loss by 0.05" in f.sentence and "8% of the no-dropout value" in f.sentence


def test_dropout_effect_no_help_cases():
    straddle = [0.01, -0.012, 0.003]
    f = dg.dropout_effect("rate 0.3", mean_ci(straddle), mean_ci([0.6, 0.6, 0.6]), data_size=500)
    assert f.kind == "no_help"
    assert f.sentence.startswith("dropout did not help at this data size (500 training examples)")
    assert "an interval that includes zero" in f.sentence
    f = dg.dropout_effect("no dropout", None, mean_ci([0.70, 0.71]), metric="val_acc", maximize=True,
                          is_baseline=True)
    assert f.sentence.endswith("no dropout has the highest validation accuracy (70.5%)")
    f = dg.dropout_effect("rate 0.3", mean_ci([-0.05]), mean_ci([0.6]))
    assert f.kind == "no_help" and f.sentence.startswith("cannot tell whether dropout helped")
    assert "1 paired seed(s)" in f.sentence


def test_format_change_has_no_negative_zero():
    assert dg.format_change("val_acc", -0.0001) == "+0.0 points"
    assert dg.format_change("val_acc", 0.021, unit=False) == "+2.1"
    assert dg.format_metric("val_acc", 0.7612) == "76.1%"
    assert dg.metric_name("val_rmse") == "validation RMSE"


# --- gap, early stopping, one SE, diverged ---------------------------------------------------------
def test_gap_change():
    f = dg.gap_change("rate 0.2", 0.21, 0.32)
    assert f.numbers["change"] == pytest.approx((0.21 - 0.32) / 0.32)
    assert f.sentence == "dropout narrows the generalization gap from 0.32 (no dropout) to 0.21 (rate 0.2)"
    assert dg.gap_change("r", 0.40, 0.32).sentence.startswith("dropout widens")
    assert dg.gap_change("r", 0.32 * (1 + dg.GAP_MIN_CHANGE / 2), 0.32) is None


@pytest.mark.parametrize(
    "curve, patience, expected",
    [
        ([1.0, 0.9, 0.95, 0.97, 0.99], 2, 4),  # best at epoch 2, two epochs later: stop after epoch 4
        ([1.0, 0.9, 0.8, 0.7], 2, 4),  # always improving: never stops
        ([1.0] + [1.1] * 9, 5, 6),
        ([math.nan, 1.0, 1.1, 1.2], 2, 4),
        ([1.0, 1.1, 0.9, 1.0, 1.0, 1.0], 3, 6),  # the improvement at epoch 3 restarts the count
    ],
)
def test_early_stop_epoch(curve, patience, expected):
    assert dg.early_stop_epoch(curve, patience) == expected


def test_early_stopping_savings_forty_percent():
    curves = [[1.0] + [1.1] * 9, [1.0] + [1.2] * 9]  # both stop after epoch 6 of 10
    f = dg.early_stopping_savings(curves, patience=5)
    assert f.numbers["saved"] == pytest.approx(0.4)
    assert f.numbers["mean_stop"] == 6 and f.numbers["excess"] == 0
    assert f.sentence == (
        "early stopping (patience 5) would have saved 40% of the epochs (6.0 instead of 10.0 per run "
        "on average), keeping the best validation loss"
    )
    # the minimum after the stop: what stopping costs is reported
    late = [1.0, 1.1, 1.1, 1.1, 1.1, 1.1, 0.9, 0.9, 0.9, 0.9]
    f = dg.early_stopping_savings([late], patience=5)
    assert f.numbers["excess"] == pytest.approx(1.0 / 0.9 - 1)
    # V0 with patience 5 stops after epoch 9 of 10: 10% saved, exactly the threshold
    assert dg.early_stopping_savings([V0], patience=5).numbers["saved"] == pytest.approx(0.1)
    assert dg.early_stopping_savings([[1.0, 0.9, 0.8]], patience=5) is None
    assert dg.early_stopping_savings([]) is None


def test_early_stopping_used_and_diverged_and_one_se():
    f = dg.early_stopping_used([10, 12], budget=20, n_total=4)
    assert f.numbers["saved"] == pytest.approx(1 - 22 / 40)
    assert f.sentence == "early stopping ended 2 of 4 runs early, after 11.0 of 20 epochs on average (45% of their epochs saved)"
    f = dg.diverged_runs({"rate 0.9": 2, "rate 0.1": 0}, 12)
    assert f.sentence == "2 of 12 runs diverged (rate 0.9: 2); their metrics are left out of the means"
    assert dg.diverged_runs({"a": 0}, 3) is None
    best, other = mean_ci([0.76, 0.75, 0.77]), mean_ci([0.758, 0.757, 0.759])
    f = dg.one_se_note("rate 0.2", "rate 0.4", best, other, "val_acc")
    assert f.numbers["se"] == pytest.approx(best.se)
    assert f.sentence.startswith("one-standard-error choice: rate 0.4 (validation accuracy 75.8%)")
    assert dg.one_se_note("a", "a", best, best) is None


def test_recommend_branches():
    assert dg.recommend(has_baseline=False, helped=False, selected="hidden 0.2").startswith(
        "Use hidden 0.2; add a configuration without dropout")
    r = dg.recommend(has_baseline=True, helped=False, selected="no dropout", selected_is_baseline=True)
    assert r.startswith("The model without dropout does not overfit here")
    r = dg.recommend(has_baseline=True, helped=False, selected="no dropout", selected_is_baseline=True,
                     baseline_overfits=True)
    assert r.startswith("Keep the model without dropout") and "early stopping" in r
    r = dg.recommend(has_baseline=True, helped=False, selected="rate 0.3", n_seeds=3)
    assert r == "Rate 0.3 looks best but cannot be told apart from no dropout yet: rerun with more seeds (now 3) before choosing."
    r = dg.recommend(has_baseline=True, helped=True, selected="rate 0.5", edge=("hidden rate", "largest", "0.5"),
                     early_saving=0.4)
    assert r == ("Use rate 0.5. The best hidden rate is the largest tried: extend the grid above 0.5. "
                 "Turn on early stopping: it would have saved 40% of the epochs.")


# --- whole studies ---------------------------------------------------------------------------------
def test_diagnose_helps_study(study_factory, tmp_path):
    study = load_study(study_factory(tmp_path / "helps.db", "helps").path)
    d = diagnose(study)
    kinds = [f.kind for f in d.findings]
    assert kinds == ["helped", "one_se", "overfitting", "underfitting", "gap"]
    helped = d.of_kind("helped")[0]
    # accuracy = 1 - val/2; per-seed difference of rate 0.2 vs none: 0.06 - 0.25 * offset
    diffs = [0.06 - 0.25 * o for o in OFFSETS]
    lo, hi = _t_interval(diffs)
    assert helped.numbers["diff"] == pytest.approx(0.06)
    assert (helped.numbers["lo"], helped.numbers["hi"]) == pytest.approx((lo, hi))
    over = d.of_kind("overfitting")[0]
    assert "(no dropout)" in over.sentence  # the selected rate does not overfit
    assert over.numbers["best_epoch"] == 4 and over.numbers["rise"] == pytest.approx(0.25)
    under = d.of_kind("underfitting")
    assert len(under) == 1 and under[0].sentence.startswith("rate 0.6 underfits")
    # rate 0.6 is best at epoch 9 (0.70), its train-eval loss there 0.62; the baseline's 0.28 at
    # epoch 4; the best rate's (0.2 by accuracy) 0.27 at epoch 8
    assert under[0].numbers["ratio"] == pytest.approx(0.62 / 0.28)
    assert under[0].numbers["ratio_best"] == pytest.approx(0.62 / 0.27)
    assert under[0].numbers["val_above_best"] == pytest.approx(0.70 / 0.48 - 1)
    gap = d.of_kind("gap")[0]
    assert gap.numbers["gap"] == pytest.approx(0.48 - 0.27) and gap.numbers["baseline_gap"] == pytest.approx(0.32)
    # early stopping would save 1 epoch in 10 for the baseline only: 3 / 120 < threshold
    assert not d.of_kind("early_stopping")
    assert d.recommendation == (
        "Use rate 0.4 (the one-standard-error choice: as good as rate 0.2 within noise and more "
        "regularized). The best hidden dropout rate is the smallest non-zero value tried: add values "
        "between 0 and 0.2."
    )


def test_diagnose_nohelp_study(study_factory, tmp_path):
    study = load_study(study_factory(tmp_path / "nohelp.db", "nohelp").path)
    d = diagnose(study)
    effect = d.findings[0]
    assert effect.kind == "no_help"
    # val(0.3) - val(0) per seed = offset / 2 + delta; accuracy = 1 - val / 2
    delta = (-0.02, 0.015, -0.004)  # NOHELP_DELTA in conftest
    diffs = [-0.5 * (0.5 * o + dd) for o, dd in zip(OFFSETS, delta)]
    lo, hi = _t_interval(diffs)
    assert effect.numbers["diff"] == pytest.approx(sum(diffs) / 3)
    assert (effect.numbers["lo"], effect.numbers["hi"]) == pytest.approx((lo, hi))
    assert lo < 0 < hi and "(500 training examples)" in effect.sentence
    assert not d.of_kind("overfitting") and not d.of_kind("underfitting")
    assert d.recommendation.startswith("Rate 0.3 looks best but cannot be told apart from no dropout yet")


def test_diagnose_messy_study(study_factory, tmp_path):
    study = load_study(study_factory(tmp_path / "messy.db", "messy").path)
    d = diagnose(study)
    assert study.status_counts == {"completed": 8, "early_stopped": 1, "diverged": 1, "failed": 1, "interrupted": 1}
    assert d.of_kind("diverged")[0].numbers == {"diverged": 1, "total": 12}
    used = d.of_kind("early_stopping")[0]
    assert used.numbers["saved"] == pytest.approx(1 - 9 / 10) and used.numbers["runs"] == 1
    # the selected configuration has no no-dropout twin (its activation differs): say so
    assert study.selected.params["model.activation"] == "relu" and study.baseline_for(study.selected) is None
    assert not d.of_kind("helped") and not d.of_kind("no_help")
    assert "add a configuration without dropout" in d.recommendation
