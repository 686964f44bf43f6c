"""The report: reading a study, the figures, the self-contained page, the text summary, the CLI."""

import base64
import html
import html.parser
import math
import re

import pytest
import torch
from rich.console import Console

from droplab.cli import main
from droplab.errors import StoreError
from droplab.report import FIGURES, load_study, print_summary
from droplab.report.study import PLACEMENT, dropout_rates
from droplab.sweep.store import Store

PNG = b"\x89PNG\r\n\x1a\n"
EVIL = '<script>alert("x")</script>&$\\frac$'  # as in conftest


class _Page(html.parser.HTMLParser):
    """Collects tags and attributes of a page."""

    def __init__(self):
        super().__init__()
        self.tags = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _parse(text):
    page = _Page()
    page.feed(text)
    return page.tags


# --- reading a study -------------------------------------------------------------------------------
def test_dropout_rates_from_parameters():
    assert dropout_rates({"dropout.hidden": 0.3, "train.lr": 0.01}) == ({"hidden": 0.3}, {"dropout.hidden": "hidden"})
    assert dropout_rates({"dropout.hidden": [0.5, 0.3]})[0] == {"hidden": pytest.approx(0.4)}
    assert dropout_rates({"dropout.hidden.layer": "gaussian"}) == ({}, {})
    assert dropout_rates({"dropout": "input=0.2,hidden=0.5"}) == ({"input": 0.2, "hidden": 0.5}, {"dropout": PLACEMENT})
    assert dropout_rates({"dropout": "none"}) == ({}, {"dropout": PLACEMENT})
    # a user's build function: any numeric parameter named like dropout (the engine's rule)
    assert dropout_rates({"p_dropout": 0.2, "width": 64}) == ({"p_dropout": 0.2}, {"p_dropout": "p_dropout"})


def test_load_study_labels_baseline_and_selection(study_factory, tmp_path):
    study = load_study(study_factory(tmp_path / "h.db", "helps").path)
    assert [c.label for c in study.configurations] == ["no dropout", "hidden 0.2", "hidden 0.4", "hidden 0.6"]
    assert [study.describe(c) for c in study.configurations] == ["no dropout", "rate 0.2", "rate 0.4", "rate 0.6"]
    assert study.axes == ["dropout.hidden"] and study.dropout_axes == {"dropout.hidden": "hidden"}
    assert study.metric == "val_acc" and study.maximize and study.task == "classification"
    assert study.baseline.params == {"dropout.hidden": 0.0}
    assert study.selected.params == {"dropout.hidden": 0.2}  # from the stored summary
    assert study.one_se.params == {"dropout.hidden": 0.4}
    assert study.seeds == [0, 1, 2] and study.max_epochs() == 10 and study.data_size() == 500
    # values are the final weights' (the result), per seed
    assert study.selected.values("val_loss") == pytest.approx({0: 0.465, 1: 0.48, 2: 0.495})
    assert study.selected.values("train_eval_loss") == pytest.approx({0: 0.265, 1: 0.27, 2: 0.275})


def test_selection_follows_the_stored_summary_else_recomputes(study_factory, tmp_path):
    path = study_factory(tmp_path / "h.db", "helps").path
    with Store.open(path) as st:
        keys = [c["key"] for c in st.configurations()]
        st.set_summary({"metric": "val_loss", "maximize": False, "best": keys[2], "one_se": keys[3]})
    study = load_study(path)
    assert (study.selected.key, study.one_se.key, study.metric, study.maximize) == (keys[2], keys[3], "val_loss", False)
    # without a summary (a sweep still running): recomputed by the same rules as the engine
    path = study_factory(tmp_path / "m.db", "messy").path
    study = load_study(path)
    assert study.summary is None
    means = {c.key: c.estimate("val_acc").mean for c in study.configurations}
    assert study.selected.key == max(means, key=means.get)


def test_run_values_follow_status_and_result(study_factory, tmp_path):
    study = load_study(study_factory(tmp_path / "m.db", "messy").path)
    runs = {(c.params["dropout.hidden"], r.seed): r for c in study.configurations for r in c.runs}
    assert (0.4, 2) not in runs and (0.2, 2) not in runs  # failed and running runs are not used
    assert [c.seeds_text("val_acc") for c in study.configurations] == ["3", "2", "2", "2 of 3"]
    diverged = runs[(0.6, 2)]
    assert diverged.status == "diverged" and math.isnan(diverged.value("val_loss"))
    stopped = runs[(0.0, 1)]
    assert stopped.status == "early_stopped" and stopped.epochs_run == 9 and stopped.best_epoch == 4
    # a metric the result lacks comes from the row of the epoch whose weights the run kept
    stopped.result.pop("train_eval_loss")
    assert stopped.value("train_eval_loss") == pytest.approx(0.28)
    # the mean curve keeps only the epochs every (non-diverged) run reached
    epochs, _ = study.baseline.mean_curve("val_loss")
    assert epochs == list(range(1, 10))


def test_missing_and_unfinished_studies_are_refused(tmp_path):
    with pytest.raises(StoreError, match="no study at"):
        load_study(tmp_path / "nope.db")
    path = tmp_path / "empty.db"
    with Store.open(path) as st:
        st.init_study("empty", {"seeds": [0]})
        st.start_run(st.add_configuration("dropout.hidden=0.0", {"dropout.hidden": 0.0}, "g"), 0)
    with pytest.raises(StoreError, match=r"study .*empty.db has no finished runs yet"):
        load_study(path)


# --- the page --------------------------------------------------------------------------------------
def test_page_is_self_contained_with_every_figure(helps_report):
    text = helps_report.html.read_text(encoding="utf-8")
    tags = _parse(text)
    imgs = [a for t, a in tags if t == "img"]
    assert [a["data-figure"] for a in imgs] == list(FIGURES)
    for a in imgs:
        assert a["alt"].strip()
        assert a["src"].startswith("data:image/png;base64,")
        png = base64.b64decode(a["src"].split(",", 1)[1])
        assert png.startswith(PNG) and len(png) > 5000
    # nothing to fetch, nothing to run
    assert not any(t in ("script", "link", "iframe", "object", "embed") for t, _ in tags)
    for t, a in tags:
        for name in ("src", "href"):
            if name in a:
                assert a[name].startswith(("data:", "#")), (t, a[name][:60])
    assert "url(" not in text and "@import" not in text
    # summary first: recommendation, selection, diagnostics
    assert text.index('id="summary"') < text.index('data-figure="response"')
    assert "Next:</strong> Use rate 0.4" in text
    assert "Rate 0.6 underfits: train-eval loss is 2.2x the baseline&#x27;s" in text
    # rerun information: spec, versions, seeds
    assert "&quot;dropout.hidden&quot;" in text and "torch" in text and "Seeds: 0, 1, 2" in text


def test_png_export_writes_every_figure(helps_report):
    files = sorted(p.name for p in helps_report.png_dir.iterdir())
    assert files == sorted(f"{name}.png" for name in FIGURES)
    for p in helps_report.png_dir.iterdir():
        assert p.read_bytes().startswith(PNG)


def test_user_text_is_escaped(messy_report):
    text = messy_report.html.read_text(encoding="utf-8")
    assert EVIL not in text and "<script" not in text.lower()
    assert html.escape(EVIL, quote=True) in text  # study name, spec, configuration keys
    tags = _parse(text)
    assert not any(t == "script" for t, _ in tags)
    title = re.search(r"<title>(.*)</title>", text).group(1)
    assert title == "droplab report: " + html.escape(EVIL, quote=True)


# --- the terminal summary --------------------------------------------------------------------------
def test_print_summary_table_findings_and_next(study_factory, tmp_path):
    console = Console(record=True, width=200)
    diag = print_summary(study_factory(tmp_path / "h.db", "helps").path, console)
    out = console.export_text()
    assert "droplab study synthetic-helps: 4 configurations x 3 seeds" in out
    for label in ("no dropout", "rate 0.2 *selected", "rate 0.4 (1-SE)", "rate 0.6"):
        assert label in out
    assert "+6.0 pt" in out  # paired difference of the selection metric, in points
    for f in diag.findings:
        assert f.sentence in out
    assert "Next: Use rate 0.4" in out


# --- command line ----------------------------------------------------------------------------------
def test_cli_report_html_png_and_text(study_factory, tmp_path, capsys):
    db = study_factory(tmp_path / "n.db", "nohelp").path
    out = tmp_path / "site" / "r.html"
    assert main(["report", str(db), "-o", str(out), "--png", str(tmp_path / "figs")]) == 0
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert len(list((tmp_path / "figs").glob("*.png"))) == len(FIGURES)
    assert f"report: {out}" in capsys.readouterr().out
    assert main(["report", str(db), "--text"]) == 0
    text = capsys.readouterr().out
    assert "dropout did not help at this data size" in text and "Next:" in text
    assert not (tmp_path / "report.html").exists()


def test_cli_report_errors_are_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing.db")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no study at" in err
    path = tmp_path / "empty.db"
    with Store.open(path) as st:
        st.init_study("empty", {})
    assert main(["report", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no finished runs yet" in err


# --- end to end through the real engine ------------------------------------------------------------
def test_report_of_a_real_sweep(tmp_path):
    from droplab.models import ModelSpec
    from droplab.report import write_report
    from droplab.sweep import run_sweep
    from droplab.train import TrainConfig

    g = torch.Generator().manual_seed(0)
    w = torch.randn(8, 3, generator=g)
    x = torch.randn(220, 8, generator=g)
    y = (x @ w + 0.5 * torch.randn(220, 3, generator=g)).argmax(1)
    data = (x[:120], y[:120], x[120:170], y[120:170], x[170:], y[170:])
    res = run_sweep(ModelSpec(hidden=(16,), dropout={"hidden": 0.0}), data=data,
                    space={"dropout.hidden": [0.0, 0.5]}, seeds=2, store=tmp_path / "s.db", progress=False,
                    train=TrainConfig(epochs=3, batch_size=40, lr=1e-2), name="tiny")
    study = load_study(tmp_path / "s.db")
    assert study.selected.key == res.best and study.one_se.key == res.one_se
    assert [study.describe(c) for c in study.configurations] == ["no dropout", "rate 0.5"]
    for c in study.configurations:  # the report's numbers are the engine's
        row = res.row(c.key)
        assert c.estimate(res.metric).mean == pytest.approx(row["mean"])
        assert len(c.curves("train_eval_loss")) == 2 and len(c.curves("train_loss")) == 2
    page = write_report(study, tmp_path / "r.html").read_text(encoding="utf-8")
    assert [a["data-figure"] for t, a in _parse(page) if t == "img"] == list(FIGURES)
    console = Console(record=True, width=200)
    print_summary(tmp_path / "s.db", console)
    assert "rate 0.5" in console.export_text()


# --- public surface --------------------------------------------------------------------------------
def test_every_exported_name_resolves_and_is_documented():
    import inspect

    import droplab.report as report
    from droplab.report import diagnostics, figures, study, text
    from droplab.report import html as page

    for module in (report, diagnostics, figures, page, study, text):
        assert module.__doc__ and module.__doc__.strip()
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isfunction(obj) or inspect.isclass(obj):
                assert obj.__doc__ and obj.__doc__.strip(), f"{module.__name__}.{name} has no docstring"


def test_a_study_without_a_finite_metric_still_reports(tmp_path):
    from droplab.report import diagnose

    path = tmp_path / "nan.db"
    with Store.open(path) as st:
        st.init_study("nan", {})
        for rate in (0.0, 0.5):
            cid = st.add_configuration(f"dropout.hidden={rate}", {"dropout.hidden": rate}, "g")
            run = st.start_run(cid, 0)
            st.commit_epoch([(run, 1, {"train_loss": float("nan"), "val_loss": float("nan")})])
            st.finish_runs([(run, "completed", {"val_loss": float("nan")}, {})])
        st.set_summary({"metric": "val_loss", "maximize": False, "best": None, "one_se": None})
    study = load_study(path)
    assert study.selected is None
    assert diagnose(study).recommendation.startswith("No configuration has a finite validation loss")
    console = Console(record=True, width=200)
    print_summary(study, console)
    assert "Next: No configuration" in console.export_text()
