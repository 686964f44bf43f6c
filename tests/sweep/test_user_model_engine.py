"""Issue 21 in the sweep engine: rates as data, regularization axes, data forms, binary, tables."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _toy import toy_tensors
from torch import nn

from droplab.errors import ConfigError
from droplab.sweep import run_sweep, selection
from droplab.train import TrainConfig

TRAIN = TrainConfig(epochs=2, batch_size=32)


def _build(cfg):
    return nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Dropout(cfg["p"]), nn.Linear(32, 3))


def _sweep(space, data=None, **kw):
    pops = []
    kw.setdefault("train", TRAIN)
    res = run_sweep(kw.pop("build", _build), data=toy_tensors()[:4] if data is None else data, space=space,
                    seeds=kw.pop("seeds", 2), progress=False, on_epoch=pops.append, **kw)
    return res, pops


# --- 1. rates as data: one population over rates x seeds --------------------------------------------
def test_rate_sweep_of_torch_dropout_is_one_population_with_the_same_numbers():
    res, pops = _sweep({"p": [0.0, 0.3, 0.6]})
    assert {e["population"] for e in pops} == {pops[0]["population"]}  # one population ...
    assert all(e["members"] == 6 for e in pops)  # ... of 3 rates x 2 seeds
    first = pops[0]["rows"]  # epoch 1, members in configuration order: p=0 s0, s1, p=0.3 s0, ...
    alone = {}
    for p in (0.0, 0.3, 0.6):
        r1, pops1 = _sweep({"p": [p]})
        assert all(e["members"] == 2 for e in pops1)
        alone[p] = (r1.rows[0]["values"], pops1[0]["rows"])
    # No dropout draws at p=0: the same bits as the rate trained alone.
    assert res.row("p=0.0")["values"] == alone[0.0][0]
    assert [first[i]["train_loss"] for i in (0, 1)] == [alone[0.0][1][i]["train_loss"] for i in (0, 1)]
    # Each member drops at its own rate: the training loss rises with the rate, for every seed,
    # in the population as in the runs alone (other draws of the same distribution).
    for s in (0, 1):
        together = [first[2 * k + s]["train_loss"] for k in range(3)]
        apart = [alone[p][1][s]["train_loss"] for p in (0.0, 0.3, 0.6)]
        assert together[0] < together[1] < together[2] and apart[0] < apart[1] < apart[2]
        for a, b in zip(together, apart):
            assert abs(a - b) < 0.05 * b
    for p in (0.3, 0.6):
        for s in ("0", "1"):
            assert abs(res.row(f"p={p}")["values"][s] - alone[p][0][s]) <= 0.05


def test_a_rate_kept_outside_droplab_layers_keeps_its_own_population():
    class Scaled(nn.Module):
        def __init__(self, scale):
            super().__init__()
            self.lin = nn.Linear(10, 3)
            self.scale = scale  # a plain attribute that changes the output

        def forward(self, x):
            return self.lin(x) * self.scale

    res, pops = _sweep({"scale": [0.5, 1.0]}, build=lambda c: Scaled(c["scale"]))
    assert len({e["population"] for e in pops}) == 2
    assert res.regularization == []  # the axis sets no dropout rate: no baseline
    assert all(r["diff"] is None for r in res.rows)


def test_convert_false_keeps_torch_dropout_and_one_population_per_rate():
    _, pops = _sweep({"p": [0.0, 0.3]}, convert=False)
    assert len({e["population"] for e in pops}) == 2


# --- 2. regularization axes by any name ----------------------------------------------------------
def test_readme_example_axis_p_gets_the_baseline_and_diagnostics(tmp_path):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(300, 20, generator=g), torch.randint(0, 3, (300,), generator=g)
    xv, yv = torch.randn(100, 20, generator=g), torch.randint(0, 3, (100,), generator=g)

    def build(cfg):
        return nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Dropout(cfg["p"]), nn.Linear(64, 3))

    path = str(tmp_path / "readme.db")
    result = run_sweep(build, data=(x, y, xv, yv), space={"p": [0.0, 0.3]}, seeds=2,
                       train=TrainConfig(epochs=2), progress=False, store=path)
    assert result.regularization == ["p"]  # found: it sets a droplab rate (after convert)
    diff = result.row("p=0.3")["diff"]
    assert diff is not None and diff["baseline"] == "p=0.0" and diff["n"] == 2 and "decided" in diff
    assert result.one_se in ("p=0.0", "p=0.3")
    assert "+" in str(result.table()) or "-0." in str(result.table())  # the "vs no dropout" column is filled
    # The report reads the stored axes: its baseline, and the dropout-effect diagnostic.
    from droplab.report.diagnostics import diagnose
    from droplab.report.study import load_study

    study = load_study(path)
    assert study.dropout_axes == {"p": "p"}
    assert study.baseline_for(study.config("p=0.3")).key == "p=0.0"
    assert {f.kind for f in diagnose(study).findings} & {"helped", "no_help"}


def test_named_regularization_axis_gets_baseline_and_report(tmp_path):
    def build(cfg):
        net = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 3))
        net.strength = cfg["wd"]  # a regularizer the user applies elsewhere: named, not found
        return net

    path = tmp_path / "s.db"
    res = run_sweep(build, data=toy_tensors()[:4], space={"wd": [0.0, 0.1]}, seeds=2, train=TRAIN,
                    progress=False, regularization=["wd"], store=str(path))
    assert res.regularization == ["wd"]
    assert res.row("wd=0.1")["diff"]["baseline"] == "wd=0.0"
    from droplab.report.study import load_study

    study = load_study(path)
    assert "wd" in study.dropout_axes
    assert study.baseline_for(study.config("wd=0.1")).key == "wd=0.0"
    with pytest.raises(ConfigError, match="regularization must be a list of axis names"):
        run_sweep(build, data=toy_tensors()[:4], space={"wd": [0.0]}, regularization="wd", progress=False)


def test_selection_takes_named_regularization_axes():
    assert selection.rate_axes({"p": 0.3, "width": 8}) == []
    assert selection.rate_axes({"p": 0.3, "width": 8}, ["p"]) == ["p"]
    assert selection.is_regularization_axis("p", ["p"]) and not selection.is_regularization_axis("p")
    assert selection.without_regularization({"p": 0.1, "w": 2}, ["p"]) == {"w": 2}
    from droplab.stats import mean_ci

    est = {"p=0": mean_ci([0.80, 0.82]), "p=0.5": mean_ci([0.80, 0.81])}
    params = {"p=0": {"p": 0}, "p=0.5": {"p": 0.5}}
    kw = dict(maximize=True, params=params, strength=lambda k: float(k[2:]))
    assert selection.one_se(est, **kw) == "p=0"  # p is not known to regularize
    assert selection.one_se(est, regularization=["p"], **kw) == "p=0.5"


def test_sweep_config_takes_a_regularization_key():
    from droplab.sweep import SweepConfig

    cfg = SweepConfig.from_dict({"regularization": ["train.label_smoothing"]})
    assert cfg.regularization == ("train.label_smoothing",)
    assert SweepConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="regularization must be a list"):
        SweepConfig.from_dict({"regularization": "p"})


# --- 3. data in the forms people have -------------------------------------------------------------
def _frame_forms():
    x, y = toy_tensors(n=160, nv=0, nt=0)[:2]
    xs, ys = x.double().numpy(), y.numpy()
    import pandas as pd

    frame = pd.DataFrame(xs, columns=[f"f{i}" for i in range(10)])
    frame["label"] = ys
    ds = torch.utils.data.TensorDataset(x, y)
    return {
        "tensors": ((x, y), {}),
        "numpy": ((xs, ys), {}),
        "frame": (frame, {"target": "label"}),
        "dataset": (ds, {}),
        "loader": (lambda: torch.utils.data.DataLoader(ds, batch_size=50), {}),
    }


@pytest.mark.parametrize("form", ["numpy", "frame", "dataset", "loader"])
def test_every_data_form_gives_the_same_sweep_as_tensors(form):
    forms = _frame_forms()
    want, _ = _sweep({"p": [0.0, 0.2]}, data=forms["tensors"][0], task="classification", data_seed=3)
    data, kw = forms[form]
    got, _ = _sweep({"p": [0.0, 0.2]}, data=data, task="classification", data_seed=3, **kw)
    assert [r["values"] for r in got.rows] == [r["values"] for r in want.rows]


def test_float64_tensor_tuple_is_cast_with_a_note(capsys):
    x, y, xv, yv = toy_tensors()[:4]
    res, _ = _sweep({"p": [0.0]}, data=(x.double(), y, xv.double(), yv))
    assert "cast from torch.float64 to torch.float32" in capsys.readouterr().err
    want, _ = _sweep({"p": [0.0]}, data=(x, y, xv, yv))
    assert res.rows[0]["values"] == want.rows[0]["values"]


def test_target_with_tensors_is_refused():
    with pytest.raises(ConfigError, match="target= names a DataFrame"):
        run_sweep(_build, data=toy_tensors()[:4], space={"p": [0.0]}, target="y", progress=False)


# --- 3b. binary, one logit, and the extra metrics --------------------------------------------------
def _binary_data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 10, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).float()
    return x[:300], y[:300], x[300:], y[300:]


def _binary_build(cfg):
    return nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Dropout(cfg["p"]), nn.Linear(16, 1))


def test_one_logit_binary_sweep_trains_with_bce_as_the_trainer_does():
    x, y, xv, yv = _binary_data()
    out = {}
    for population in (True, False):
        res, _ = _sweep({"p": [0.0, 0.2]}, data=(x, y, xv, yv), build=_binary_build, task="binary",
                        train=TrainConfig(epochs=8, lr=0.01), population=population)
        assert res.metric == "val_acc"
        assert all(v > 0.75 for r in res.rows for v in r["values"].values())  # chance: 0.5
        out[population] = res
    # Without dropout draws the population (BCE per member) and the Trainer agree.
    a, b = out[True].row("p=0.0")["values"], out[False].row("p=0.0")["values"]
    assert a.keys() == b.keys() and all(abs(a[s] - b[s]) <= 0.011 for s in a)


def test_binary_population_loss_is_bce_and_accuracy_is_logit_above_zero():
    from droplab.sweep.plan import ModulePlan, TensorData
    from droplab.sweep.executors import make_population_of

    x, y, xv, yv = _binary_data()
    plan = ModulePlan(_binary_build, TensorData((x, y, xv, yv), "binary"), TrainConfig(epochs=1), True)
    plan.extra_metrics = ("auroc",)
    r = plan.resolve({"p": 0.0})
    pop, why = make_population_of(plan, [(r, 0)], plan.splits)
    assert pop is not None, why
    ev = pop.evaluate(xv, yv)
    from droplab.train.metrics import auroc

    model = plan.builder(r, plan.splits)(pop.members[0])
    model.load_state_dict({k: v for k, v in pop.final_weights(0).items() if not k.startswith("buffer:")}, strict=False)
    model.eval()
    with torch.no_grad():
        out = model(xv)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(out[:, 0], yv).item()
    assert ev["loss"][0] == pytest.approx(bce, rel=1e-5)
    assert ev["acc"][0] == pytest.approx(((out[:, 0] > 0).float() == yv).float().mean().item())
    assert ev["auroc"][0] == pytest.approx(auroc(out, yv), abs=1e-9)


@pytest.mark.parametrize("metric", ["val_auroc", "val_f1"])
def test_selection_by_auroc_and_f1(metric):
    x, y, xv, yv = _binary_data()
    res, _ = _sweep({"p": [0.0, 0.2]}, data=(x, y, xv, yv), build=_binary_build, task="binary", metric=metric,
                    train=TrainConfig(epochs=4, lr=0.01))
    assert res.metric == metric and res.maximize
    assert all(0.5 < v <= 1.0 for r in res.rows for v in r["values"].values())


def test_selection_by_mae_on_regression():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(300, 10, generator=g)
    y = x[:, :1] * 2 + 0.1 * torch.randn(300, 1, generator=g)

    def build(cfg):
        return nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Dropout(cfg["p"]), nn.Linear(16, 1))

    res, _ = _sweep({"p": [0.0, 0.1]}, data=(x[:200], y[:200], x[200:], y[200:]), build=build, metric="val_mae",
                    train=TrainConfig(epochs=3, lr=0.01))
    assert res.metric == "val_mae" and not res.maximize
    assert all(0 < v < 3 for r in res.rows for v in r["values"].values())
    with pytest.raises(ConfigError, match="is for regression"):
        _sweep({"p": [0.0]}, metric="val_mae")
    assert selection.maximize("val_auroc") and selection.maximize("val_f1") and not selection.maximize("val_mae")
    assert {"val_auroc", "val_f1", "val_mae"} <= set(selection.METRICS)


def test_metric_nan_when_auroc_is_undefined():
    from droplab.sweep.plan import ModulePlan, TensorData
    from droplab.sweep.executors import make_population_of

    x, y, xv, yv = _binary_data()
    plan = ModulePlan(_binary_build, TensorData((x, y, xv, torch.ones_like(yv)), "binary"), TrainConfig(epochs=1), True)
    plan.extra_metrics = ("auroc",)
    r = plan.resolve({"p": 0.0})
    pop, _ = make_population_of(plan, [(r, 0)], plan.splits)
    assert math.isnan(pop.evaluate(xv, torch.ones_like(yv))["auroc"][0])


# --- 4. the result as a frame and as a table that prints ----------------------------------------------
def test_to_frame_and_a_table_that_prints():
    pd = pytest.importorskip("pandas")
    res, _ = _sweep({"p": [0.0, 0.3]})
    frame = res.to_frame()
    assert isinstance(frame, pd.DataFrame)
    assert list(frame["key"]) == ["p=0.0", "p=0.3"] and list(frame["p"]) == [0.0, 0.3]
    assert frame.loc[1, "baseline"] == "p=0.0" and frame.loc[1, "diff_mean"] == res.row("p=0.3")["diff"]["mean"]
    assert frame.loc[frame["key"] == res.best, "selected"].item().startswith("best")
    assert list(frame["mean"]) == [r["mean"] for r in res.rows]
    text = str(res.table())
    assert "rich.table.Table object" not in text and "p=0.3" in text and "vs no dropout" in text
    assert "<table" in res.table()._repr_html_() or "p=0.3" in res.table()._repr_html_()
    assert "p=0.3" in res.table()._repr_mimebundle_()["text/plain"]


def test_to_frame_without_pandas_says_how_to_get_it(monkeypatch):
    import builtins

    res, _ = _sweep({"p": [0.0]})
    real = builtins.__import__

    def no_pandas(name, *a, **k):
        if name == "pandas":
            raise ImportError("no pandas")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_pandas)
    with pytest.raises(ImportError, match=r"needs pandas: pip install 'droplab\[pandas\]'"):
        res.to_frame()


# --- 5. the small-validation guard ----------------------------------------------------------------------
def test_small_validation_guard_on_ties_and_wide_intervals():
    from droplab.sweep.result import small_validation

    tie = [{"key": "a", "mean": 0.9783, "lo": 0.97, "hi": 0.99}, {"key": "b", "mean": 0.9783, "lo": 0.97, "hi": 0.99},
           {"key": "c", "mean": 0.95, "lo": 0.94, "hi": 0.96}]
    assert "tied by 1 other" in small_validation(tie, "a", "val_acc")
    wide = [{"key": "a", "mean": 0.80, "lo": 0.70, "hi": 0.90}, {"key": "b", "mean": 0.79, "lo": 0.75, "hi": 0.83}]
    msg = small_validation(wide, "a", "val_acc")
    assert "wider than the spread" in msg and "val_loss" in msg and "cross-validation" in msg
    clear = [{"key": "a", "mean": 0.90, "lo": 0.89, "hi": 0.91}, {"key": "b", "mean": 0.70, "lo": 0.69, "hi": 0.71}]
    assert small_validation(clear, "a", "val_acc") is None
    assert small_validation(clear[:1], "a", "val_acc") is None


def test_tiny_validation_split_is_flagged_in_the_result_and_table():
    x, y, xv, yv = toy_tensors()[:4]
    # 6 validation examples: accuracies move in steps of 1/6, the configurations tie
    res, _ = _sweep({"p": [0.0, 0.1, 0.2]}, data=(x, y, xv[:6], yv[:6]), train=TrainConfig(epochs=1))
    assert res.small_validation is not None and "val_loss" in res.small_validation
    assert "warning: " in str(res.table())


# --- 5b. droplab sweep --model-file my_model.py:build ---------------------------------------------
MODEL_FILE = """
from torch import nn


def build(cfg):
    return nn.Sequential(nn.Flatten(), nn.Linear(40, 16), nn.ReLU(), nn.Dropout(cfg["p"]), nn.Linear(16, 10))
"""


def test_sweep_cli_with_a_model_file(tmp_path, capsys):
    import json

    from droplab.cli import main
    from droplab.sweep import Store

    path = tmp_path / "my_model.py"
    path.write_text(MODEL_FILE)
    db = str(tmp_path / "s.db")
    rc = main(["sweep", "--model-file", f"{path}:build", "--axis", "p=0,0.3", "--subsample", "300",
               "--seeds", "2", "--epochs", "1", "--store", db, "--json", "--quiet"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert [r["key"] for r in out["rows"]] == ["p=0", "p=0.3"]
    assert out["regularization"] == ["p"] and out["rows"][1]["diff"]["baseline"] == "p=0"
    with Store.open(db, mode="r") as st:
        assert st.study()["spec"]["model_file"] == f"{path}:build"
        assert len({r["group"] for r in st.configurations()}) == 1  # both rates: one population group


@pytest.mark.parametrize("text, match", [
    ("nofile.py:build", "no such file"),
    ("model.txt", "must be 'FILE.py:FUNCTION'"),
    ("{dir}/my_model.py:missing", "has no function 'missing'"),
])
def test_model_file_errors(tmp_path, text, match):
    from droplab.sweep import SweepConfig

    (tmp_path / "my_model.py").write_text(MODEL_FILE)
    with pytest.raises(ConfigError, match=match):
        SweepConfig.from_dict({"model_file": text.format(dir=tmp_path), "space": {"p": [0.0]}}).plan()


def test_sweep_cli_regularization_flag(tmp_path, capsys):
    import json

    from droplab.cli import main

    path = tmp_path / "my_model.py"
    path.write_text(MODEL_FILE.replace('cfg["p"]', "0.1") + "\n\ndef other(cfg):\n    net = build(cfg)\n"
                    "    net.wd = cfg['wd']\n    return net\n")
    rc = main(["sweep", "--model-file", f"{path}:other", "--axis", "wd=0,0.5", "--regularization", "wd",
               "--subsample", "300", "--seeds", "2", "--epochs", "1", "--json", "--quiet"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["regularization"] == ["wd"] and out["rows"][1]["diff"]["baseline"] == "wd=0"


def test_auroc_selection_also_when_runs_train_one_by_one():
    x, y, xv, yv = _binary_data()
    kw = dict(data=(x, y, xv, yv), build=_binary_build, task="binary", metric="val_auroc",
              train=TrainConfig(epochs=3, lr=0.01))
    pop, _ = _sweep({"p": [0.0]}, **kw)
    single, _ = _sweep({"p": [0.0]}, population=False, **kw)
    a, b = pop.rows[0]["values"], single.rows[0]["values"]
    assert all(0.8 < v <= 1 for v in b.values())
    assert all(abs(a[s] - b[s]) < 0.02 for s in a)  # no dropout: the same training, up to float order
