"""The selection rules (droplab.sweep.selection): one home for the sweep, SweepConfig and the report."""

from __future__ import annotations

import math

import pytest

from droplab.errors import ConfigError
from droplab.stats import mean_ci
from droplab.sweep import SweepConfig, selection
from droplab.sweep.space import config_key


# --- metrics --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("metric", "up"),
    [("val_acc", True), ("test_acc", True), ("val_accuracy", True), ("val_loss", False),
     ("test_loss", False), ("val_rmse", False), ("test_rmse", False)],
)
def test_maximize_for_each_metric(metric, up):
    assert selection.maximize(metric) is up


@pytest.mark.parametrize("metric", ["val_f2", "seconds", "acc_val"])  # val_f1 is a metric since issue 21
def test_maximize_rejects_an_unknown_metric(metric):
    with pytest.raises(ConfigError, match=r"metric must be val_acc, val_loss or val_rmse, got"):
        selection.maximize(metric)


def test_every_accepted_metric_has_a_direction_and_the_space_follows_it():
    assert [selection.maximize(m) for m in selection.METRICS] == [True, False, False, True, True, False]  # + auroc, f1, mae (issue 21)
    for metric in selection.METRICS:
        cfg = SweepConfig.from_dict({"space": {"train.lr": [1e-3]}, "sampler": "tpe", "trials": 2,
                                     "metric": metric})
        assert cfg.make_space().maximize is selection.maximize(metric)


def test_sweep_config_builds_its_space_once_and_hands_out_fresh_copies():
    cfg = SweepConfig.from_dict({"space": {"dropout.hidden": [0.0, 0.5]}})
    a, b = cfg.make_space(), cfg.make_space()
    assert a is not b
    assert a.ask() == [{"dropout.hidden": 0.0}, {"dropout.hidden": 0.5}]
    assert a.ask() == []
    assert len(b.ask()) == 2  # a copy that asked nothing yet


def test_default_metric_score_and_task_checks():
    assert selection.default_metric("classification") == "val_acc"
    assert selection.default_metric("regression") == "val_loss"
    assert selection.score_name("classification") == "acc"
    assert selection.score_name("regression") == "rmse"
    assert selection.check_metric("val_loss", "classification") is False
    with pytest.raises(ConfigError, match="'val_rmse' is for regression"):
        selection.check_metric("val_rmse", "classification")
    with pytest.raises(ConfigError, match="'val_acc' is for classification"):
        selection.check_metric("val_acc", "regression")


def test_metric_interval_clips_accuracy_only():
    values = [1.0, 1.0, 0.9]
    acc = selection.metric_interval(values, "val_acc", "t")
    raw = selection.metric_interval(values, "val_loss", "t")
    assert acc.mean == raw.mean and acc.lo == raw.lo
    assert raw.hi > 1.0 and acc.hi == 1.0


# --- axes and strength ----------------------------------------------------------------------------
def test_rate_axes_of_spec_and_user_configurations():
    assert selection.rate_axes({"dropout.hidden": 0.3, "dropout.hidden.layer": "gaussian",
                                "dropout.input.schedule": "linear", "train.lr": 0.1}) == ["dropout.hidden"]
    assert selection.rate_axes({"dropout": "hidden=0.3", "model": "wide"}) == ["dropout"]
    # a build function's numeric *dropout* parameters; not booleans, not model./train. fields
    assert selection.rate_axes({"attn_dropout": 0.1, "use_dropout": True, "train.dropout": 0.2,
                                "width": 64}) == ["attn_dropout"]


def test_regularization_axes():
    reg = ["dropout", "dropout.hidden", "dropout.hidden.schedule", "dropout.hidden.layer", "train.weight_decay",
           "train.l1", "train.l2", "train.max_norm", "attn_dropout"]
    other = ["train.lr", "model", "model.hidden", "model.dropout", "data.subsample"]
    assert all(selection.is_regularization_axis(a) for a in reg)
    assert not any(selection.is_regularization_axis(a) for a in other)
    params = {"dropout.hidden": 0.3, "train.lr": 0.1, "train.l2": 1e-4}
    assert selection.without_regularization(params) == {"train.lr": 0.1}


def test_strength_orders_dropout_then_decay_l2_l1_then_tighter_max_norm():
    s = selection.strength
    assert s([0.5]) > s([0.3], weight_decay=1.0)
    assert s([0.3], weight_decay=1e-4) > s([0.3], l2=1.0)
    assert s([0.3], l2=1e-4) > s([0.3], l1=1.0)
    assert s([0.3], max_norm=2.0) > s([0.3], max_norm=4.0) > s([0.3])
    assert s([0.1, 0.2]) == s([0.3])  # rounded: 0.1 + 0.2 is 0.3


# --- the baseline ---------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [0, 0.0, [0.0, 0.0], (0, 0), "none", "None", "", "hidden=0",
                                   "input=0,hidden=0.0", "0:gaussian", "0/0"])
def test_no_dropout_values(value):
    assert selection.no_dropout(value)


@pytest.mark.parametrize("value", [0.3, [0.0, 0.1], [], "hidden=0.3", "input=0,hidden=0.5", "0.2:gaussian",
                                   "not a dropout string", True, None])
def test_dropout_values(value):
    assert not selection.no_dropout(value)


def _configs(*params):
    return {config_key(p): p for p in params}


def test_baseline_of_a_rate_axis_keeps_the_other_parameters():
    configs = _configs(*({"dropout.hidden": p, "train.lr": lr} for lr in (0.1, 0.01) for p in (0.0, 0.5)))
    base = selection.find_baseline({"dropout.hidden": 0.5, "train.lr": 0.01}, configs, ["dropout.hidden"])
    assert base == "dropout.hidden=0.0,train.lr=0.01"
    # without its baseline in the sweep: none
    del configs[base]
    assert selection.find_baseline({"dropout.hidden": 0.5, "train.lr": 0.01}, configs, ["dropout.hidden"]) is None
    # no rate axis: no baseline
    assert selection.find_baseline({"train.lr": 0.1}, _configs({"train.lr": 0.1}), []) is None


def test_baseline_of_a_dropout_string_may_be_written_with_zero_rates():
    configs = _configs({"dropout": "hidden=0.5"}, {"dropout": "input=0,hidden=0"}, {"dropout": "input=0.2"})
    assert selection.find_baseline({"dropout": "hidden=0.5"}, configs, ["dropout"]) == "dropout=input=0,hidden=0"
    # "none" is the canonical way to write it and wins when both are there
    configs.update(_configs({"dropout": "none"}))
    assert selection.find_baseline({"dropout": "input=0.2"}, configs, ["dropout"]) == "dropout=none"


def test_baseline_with_per_layer_rates_and_int_zero():
    configs = _configs({"dropout.hidden": [0.0, 0.0]}, {"dropout.hidden": [0.5, 0.3]})
    assert selection.find_baseline({"dropout.hidden": [0.5, 0.3]}, configs, ["dropout.hidden"]) \
        == "dropout.hidden=[0.0,0.0]"
    configs = _configs({"p_dropout": 0}, {"p_dropout": 0.5})
    assert selection.find_baseline({"p_dropout": 0.5}, configs, ["p_dropout"]) == "p_dropout=0"


def test_a_configuration_without_dropout_is_its_own_baseline():
    configs = _configs({"dropout.hidden": 0.0}, {"dropout.hidden": 0.5})
    assert selection.find_baseline({"dropout.hidden": 0.0}, configs, ["dropout.hidden"]) == "dropout.hidden=0.0"
    assert selection.is_baseline({"dropout.hidden": 0.0, "train.lr": 1.0}, ["dropout.hidden", "dropout.input"])
    assert not selection.is_baseline({"dropout.hidden": 0.1}, ["dropout.hidden"])


# --- best and one-SE ------------------------------------------------------------------------------
def test_best_follows_the_direction_and_skips_non_finite_means():
    est = {"a": mean_ci([0.8, 0.82]), "b": mean_ci([0.7, 0.72]), "c": mean_ci([math.nan])}
    assert selection.best(est, maximize=True) == "a"
    assert selection.best(est, maximize=False) == "b"
    assert selection.best({"c": mean_ci([math.nan])}, maximize=True) is None


def test_one_se_picks_the_most_regularized_within_one_standard_error_of_the_best():
    params = {
        "p=0": {"dropout.hidden": 0.0, "train.lr": 0.1},
        "p=0.3": {"dropout.hidden": 0.3, "train.lr": 0.1},
        "p=0.6": {"dropout.hidden": 0.6, "train.lr": 0.1},
        "p=0.9": {"dropout.hidden": 0.9, "train.lr": 0.1},
    }
    est = {
        "p=0": mean_ci([0.80, 0.82, 0.84]),  # best: 0.82, standard error 0.01155
        "p=0.3": mean_ci([0.81, 0.81, 0.81]),  # within one SE
        "p=0.6": mean_ci([0.80, 0.81, 0.815]),  # 0.8083: just below the threshold, 0.82 - 0.01155
        "p=0.9": mean_ci([0.5, 0.5, 0.5]),
    }
    strength = {k: selection.strength([v["dropout.hidden"]]) for k, v in params.items()}
    pick = selection.one_se(est, maximize=True, params=params, strength=strength.__getitem__)
    threshold = est["p=0"].mean - est["p=0"].sd / math.sqrt(3)
    inside = [k for k, e in est.items() if e.mean >= threshold]
    assert pick == max(inside, key=strength.__getitem__)
    assert pick == "p=0.3"


def test_one_se_never_trades_a_non_regularization_axis():
    params = {"lr=0.1": {"dropout.hidden": 0.0, "train.lr": 0.1}, "lr=0.2": {"dropout.hidden": 0.5, "train.lr": 0.2}}
    est = {"lr=0.1": mean_ci([0.80, 0.84]), "lr=0.2": mean_ci([0.81, 0.81])}  # lr=0.2 within one SE
    strength = {"lr=0.1": selection.strength([0.0]), "lr=0.2": selection.strength([0.5])}
    assert selection.one_se(est, maximize=True, params=params, strength=strength.__getitem__) == "lr=0.1"
    assert selection.one_se({}, maximize=True, params={}, strength=strength.__getitem__) is None


# --- the engine and the report follow these rules -------------------------------------------------
def test_each_configuration_is_resolved_once_and_engine_and_report_agree_on_the_baseline(tmp_path, monkeypatch):
    from _toy import toy_tensors

    from droplab.models import ModelSpec
    from droplab.report import load_study
    from droplab.sweep import run_sweep
    from droplab.sweep.plan import SpecPlan
    from droplab.train import TrainConfig

    calls = []
    resolve = SpecPlan.resolve
    monkeypatch.setattr(SpecPlan, "resolve", lambda self, params: calls.append(dict(params)) or resolve(self, params))
    space = {"dropout.hidden": [0, 0.5], "train.lr": [0.01, 0.05]}  # an int 0: no dropout all the same
    result = run_sweep(ModelSpec(hidden=(8,)), data=toy_tensors(), space=space, seeds=2,
                       train=TrainConfig(epochs=2, batch_size=50), store=str(tmp_path / "s.db"), progress=False)
    assert sorted(config_key(p) for p in calls) == sorted({config_key(p) for p in calls})
    assert len(calls) == 4
    study = load_study(tmp_path / "s.db")
    for row in result.rows:
        c = study.config(row["key"])
        base = study.baseline_for(c)
        if row["params"]["dropout.hidden"] == 0:
            assert c.is_baseline and row["diff"] is None
        else:
            assert row["diff"]["baseline"] == base.key == config_key({**row["params"], "dropout.hidden": 0})
