"""The report's decision: the study's rule, accuracy against NLL, seeds needed, and measured cost."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
from rich.console import Console

from droplab.models import ModelSpec
from droplab.report import diagnose, load_study, print_summary
from droplab.report import diagnostics as dg
from droplab.report.html import render_html
from droplab.report.study import Run
from droplab.stats import compare
from droplab.sweep import run_sweep
from droplab.train import TrainConfig

sys.path.insert(0, str(Path(__file__).parents[1] / "sweep"))
from _toy import toy_tensors  # noqa: E402


def _cmp(base, other, maximize, stat="t"):
    return compare({"none": dict(enumerate(base)), "x": dict(enumerate(other))}, "none", maximize=maximize,
                   stat=stat)["x"]


def test_metrics_disagree_says_both_and_which_decided():
    acc = _cmp([0.70, 0.72, 0.71, 0.69, 0.73], [0.71, 0.71, 0.72, 0.70, 0.72], True)  # undecided
    loss = _cmp([1.11, 1.10, 1.12, 1.09, 1.13], [0.94, 0.95, 0.93, 0.94, 0.96], False)  # decided lower
    assert not acc.decided and loss.better
    f = dg.metrics_disagree("val_acc", "rate 0.1", acc, "rate 0.3", loss, 1.11, 0.944)
    assert f.kind == "metrics_disagree" and f.level == "warning"
    assert "rate 0.3 is better than no dropout (1.11 -> 0.944" in f.sentence
    assert "by validation accuracy rate 0.1 is undecided" in f.sentence
    assert "The decision used validation accuracy, the study's selection metric" in f.sentence
    assert f.numbers == {"selection": "val_acc", "selection_verdict": "undecided", "loss_verdict": "better"}
    # agreeing verdicts, nothing decided, or a study that selects by the loss: nothing to say
    assert dg.metrics_disagree("val_acc", "a", loss, "b", loss, 1.0, 0.9) is None
    assert dg.metrics_disagree("val_acc", "a", acc, "b", acc, 1.0, 0.9) is None
    assert dg.metrics_disagree("val_loss", "a", acc, "b", loss, 1.0, 0.9) is None
    # no dropout best by accuracy while the loss prefers dropout
    g = dg.metrics_disagree("val_acc", "no dropout", None, "rate 0.3", loss, 1.11, 0.944)
    assert "by validation accuracy no dropout is best" in g.sentence


def test_seeds_sentence_uses_seeds_needed():
    c = _cmp([0.70, 0.72, 0.71, 0.69, 0.73], [0.715, 0.715, 0.72, 0.695, 0.73], True)
    assert not c.decided and c.seeds_needed is not None
    f = dg.seeds_sentence("rate 0.1", c, "val_acc")
    assert f.numbers == {"seeds": c.seeds_needed, "now": 5}
    assert f"distinguishing rate 0.1 from no dropout at this effect (+0.5 points validation accuracy) " \
           f"needs about {c.seeds_needed} seeds (now 5" in f.sentence
    decided = _cmp([1.0, 1.1, 1.2], [0.5, 0.6, 0.7], False)
    assert dg.seeds_sentence("x", decided, "val_loss") is None
    same = _cmp([1.0, 1.1, 1.2], [1.0, 1.1, 1.2], False)
    assert "too small an effect" in dg.seeds_sentence("x", same, "val_loss").sentence


def test_measured_cost_sentence():
    f = dg.measured_cost("rate 0.5", {"ratio": 1.31, "ratio_lo": 1.12, "ratio_hi": 1.5, "memory_ratio": 1.25},
                         None)
    assert f.sentence == ("cost: trained alone, rate 0.5 takes 1.31x the time per step of no dropout "
                          "(95% CI 1.12 to 1.50) and 1.25x the memory")
    assert dg.measured_cost("x", {}, None) is None


def test_epochs_to_within_one_percent():
    hist = [{"epoch": e, "val_loss": v} for e, v in enumerate([1.0, 0.8, 0.705, 0.70, 0.71], start=1)]
    run = Run(1, 0, "completed", {}, {}, hist)
    assert run.epochs_to_within(0.01) == 3 and run.best_epoch == 4
    assert Run(2, 0, "completed", {}, {}, []).epochs_to_within() is None


def test_sweep_report_shows_rule_measured_cost_and_convergence(tmp_path):
    path = tmp_path / "s.db"
    run_sweep(ModelSpec(hidden=(64,), dropout={"hidden": 0.0}), data=toy_tensors(),
              space={"dropout.hidden": [0.0, 0.5]}, seeds=3, train=TrainConfig(epochs=4, batch_size=50),
              store=path, progress=False)
    study = load_study(path)
    assert study.stat == "t" and study.stat_requested is None
    cost = study.step_cost
    drop = next(c for c in study.configurations if not c.is_baseline)
    assert set(cost) == {c.key for c in study.configurations}
    info = cost[drop.key]
    assert info["step_ms"] > 0 and info["ratio_lo"] <= info["ratio"] <= info["ratio_hi"]
    assert info["rounds"] == 9 and info["steps"] == 10
    # dropout keeps its mask for backward: more memory per step than no dropout, measured
    assert info["memory_ratio"] > 1.0
    d = diagnose(study)
    f = d.of_kind("cost")[0]
    assert f.numbers["time_ratio"] == info["ratio"]
    epochs = study.convergence_ratio(drop, "best")
    assert f.numbers["epochs_ratio"] == epochs.mean
    page = render_html(study, figures_b64={})
    assert "Cost, measured" in page and "epochs to within 1%" in page
    assert "decision rule: t" in page
    buf = io.StringIO()
    print_summary(study, Console(file=buf, width=200), diagnosis=d)
    assert "decision rule: t (95% Student-t intervals, paired t-test" in buf.getvalue()


def test_bootstrap_study_reports_bootstrap_intervals(tmp_path):
    path = tmp_path / "b.db"
    run_sweep(ModelSpec(hidden=(16,), dropout={"hidden": 0.0}), data=toy_tensors(),
              space={"dropout.hidden": [0.0, 0.3]}, seeds=2, train=TrainConfig(epochs=2, batch_size=50),
              store=path, progress=False, stat="bootstrap")
    study = load_study(path)
    assert study.stat == "bootstrap" and study.stat_requested == "bootstrap"
    assert study.configurations[0].estimate("val_loss").method == "studentized"
    assert "the default" not in study.rule_text()
    cmp = study.comparison(study.configurations[1])
    assert cmp.stat == "bootstrap" and cmp.p >= 0.5  # 2 seeds: the sign-flip test cannot reject


@pytest.mark.parametrize("name", ["cost"])
def test_cost_figure_draws_measured_panels(tmp_path, name):
    from droplab.report.figures import make_figures

    path = tmp_path / "f.db"
    run_sweep(ModelSpec(hidden=(16,), dropout={"hidden": 0.0}), data=toy_tensors(),
              space={"dropout.hidden": [0.0, 0.3]}, seeds=2, train=TrainConfig(epochs=2, batch_size=50),
              store=path, progress=False)
    fig = make_figures(load_study(path))[name]
    assert len(fig.axes) == 3
    assert "trained alone" in fig.axes[0].get_xlabel()
