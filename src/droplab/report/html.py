"""One self-contained HTML page per study: summary, diagnostics, figures, results, rerun info.

The page opens offline: figures are inline PNG ``data:`` URIs, the style sheet is inline, and
there is no script and no external resource. Everything that comes from the user -- study
name, configuration keys and parameter values, spec, group names, file paths -- goes through
:func:`html.escape` (quotes included) before it reaches the page. Every ``<img>`` carries alt
text and a ``data-figure`` attribute naming the figure (the browser test finds them by it).

Example::

    write_report("study.db", "report.html", png_dir="figures")
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import math
import os
import pathlib
from collections.abc import Mapping
from typing import Any

from droplab.errors import StoreError
from droplab.report import diagnostics as _diag
from droplab.report.diagnostics import Diagnosis, diagnose, format_metric, metric_name
from droplab.report.figures import FIGURES, figure_base64, figure_png, make_figures
from droplab.report.study import Configuration, Study, load_study
from droplab.stats import Estimate, mean_ci
from droplab.sweep.store import Store

__all__ = ["render_html", "write_report", "export_pngs"]

_CAPTIONS = {
    "response": (
        "Left: validation loss (solid) and training loss measured in eval mode (dashed); right: "
        "validation {score}; against the dropout rate at each placement, for the weights each run "
        "ended with. Lines: mean across seeds; bands: 95% t intervals. Star: the selected "
        "configuration (best mean {metric}); diamond: the one-standard-error choice."
    ),
    "learning_curves": (
        "Per configuration: training loss as trained (dropout on, dotted), training loss in eval "
        "mode (dashed) and validation loss (solid) by epoch. Thin lines: single seeds; thick: the "
        "mean over the epochs every seed reached. Dots: each seed's best epoch (lowest validation "
        "loss, the one early stopping keeps); grey dashed lines: where early stopping ended a run."
    ),
    "gap": (
        "Generalization gap = validation loss minus training loss in eval mode. Left: of the final "
        "weights, against the rate (mean and 95% CI). Right: by epoch, one line per configuration, "
        "coloured by total dropout rate; dashed black: no dropout."
    ),
    "paired": (
        "Each configuration minus its no-dropout baseline, seed by seed (same initialization, "
        "data order and masks), mean and 95% t interval. An interval that excludes zero is a "
        "difference the seeds agree on."
    ),
    "cost": (
        "Against no dropout (1 means no extra cost). When the sweep measured each configuration "
        "trained alone: time per optimizer step (one copy, one batch, configurations timed in "
        "interleaved rounds; mean ratio and 95% CI over rounds), memory of one step (tensors "
        "kept for backward, such as dropout masks, plus parameters, gradients and optimizer "
        "state), and epochs to the best validation epoch (per-seed ratio, 95% CI). Otherwise: "
        "wall time and peak memory of each run divided by its baseline's with the same seed."
    ),
}

_CSS = """
:root { --ink:#1f2328; --muted:#59636e; --line:#d8dee4; --bg:#ffffff; --panel:#f6f8fa;
        --good:#0072B2; --warn:#D55E00; --accent:#009E73; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
       font: 15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1120px; margin: 0 auto; padding: 28px 28px 60px; }
header h1 { font-size: 26px; margin: 0 0 4px; letter-spacing: -0.01em; }
header .meta { color: var(--muted); margin: 0; font-size: 13.5px; }
h2 { font-size: 19px; margin: 34px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
.summary { margin-top: 20px; background: var(--panel); border: 1px solid var(--line);
           border-left: 5px solid var(--accent); border-radius: 6px; padding: 14px 20px 10px; }
.summary h2 { margin-top: 4px; border: 0; }
.rec { font-size: 16px; margin: 4px 0 12px; }
.picks { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 0 0 10px; }
.picks dt { color: var(--muted); }
.picks dd { margin: 0; }
ul.findings { margin: 6px 0 8px; padding-left: 0; list-style: none; }
ul.findings li { margin: 4px 0; padding-left: 22px; position: relative; }
ul.findings li::before { content: "\\25CF"; position: absolute; left: 4px; color: var(--muted); }
ul.findings li.warning::before { content: "\\25B2"; color: var(--warn); }
ul.findings li.good::before { color: var(--good); }
figure { margin: 8px 0 8px; }
figure img { width: 100%; height: auto; display: block; border: 1px solid var(--line);
             border-radius: 4px; background: #fff; }
figcaption { color: var(--muted); font-size: 13.5px; margin-top: 6px; }
table { border-collapse: collapse; width: 100%; font-size: 13.5px; }
th, td { padding: 5px 8px; border-bottom: 1px solid var(--line); text-align: right;
         font-variant-numeric: tabular-nums; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; white-space: normal; }
th { background: var(--panel); font-weight: 600; }
tr.selected td { background: #fffbe6; }
.badge { display: inline-block; font-size: 11px; padding: 0 6px; border-radius: 9px; margin-left: 6px;
         border: 1px solid var(--line); color: var(--muted); background: #fff; }
.badge.sel { border-color: #b59b00; color: #6b5b00; background: #fff7cc; }
.ci { color: var(--muted); font-size: 12px; }
pre { background: var(--panel); border: 1px solid var(--line); border-radius: 4px; padding: 10px;
      overflow-x: auto; font-size: 12.5px; }
.small { font-size: 13px; color: var(--muted); }
.scroll { overflow-x: auto; }
footer { margin-top: 40px; color: var(--muted); font-size: 12px; }
"""


def _e(value: Any) -> str:
    """Escape anything for HTML text or a quoted attribute."""
    return html.escape(str(value), quote=True)


def _fmt(x: float, digits: int = 3) -> str:
    return "&ndash;" if x is None or not math.isfinite(x) else f"{x:.{digits}g}"


def _pct(x: float) -> str:
    return "&ndash;" if x is None or not math.isfinite(x) else f"{x:.1%}"


def _est(e: Estimate, pct: bool = False, signed: bool = False) -> str:
    """``mean`` over ``[lo, hi]`` in a cell; accuracies as percentages (differences in points)."""
    if not math.isfinite(e.mean):
        return "&ndash;"

    def f(v: float) -> str:
        if not math.isfinite(v):
            return "&ndash;"
        if pct:
            return f"{round(v * 100, 1) + 0.0:+.1f} pt" if signed else f"{v:.1%}"
        return f"{v:+.3g}" if signed else f"{v:.3g}"

    ci = f'<br><span class="ci">[{f(e.lo)}, {f(e.hi)}]</span>' if math.isfinite(e.lo) else ""
    return f"{f(e.mean)}{ci}"


def _pick_line(study: Study, c: Configuration | None) -> str:
    if c is None:
        return "&ndash;"
    parts = []
    for metric in dict.fromkeys([study.metric, "val_loss", study.score_metric]):
        e = c.estimate(metric)
        if not math.isfinite(e.mean):
            continue
        ci = (f" [{_e(format_metric(metric, e.lo))}, {_e(format_metric(metric, e.hi))}]"
              if math.isfinite(e.lo) else "")
        parts.append(f"{_e(metric_name(metric))} {_e(format_metric(metric, e.mean))}{ci}")
    n = len(c.runs)
    seeds = f"{n} seed{'s' * (n != 1)}, 95% CI"
    return f'<b>{_e(study.describe(c))}</b>: {"; ".join(parts)} <span class="ci">({seeds})</span>'


def _summary(study: Study, diag: Diagnosis) -> str:
    items = "\n".join(f'<li class="{_e(f.level)}">{_e(f.sentence[0].upper() + f.sentence[1:])}.</li>'
                      for f in diag.findings)
    picks = [("Selected", _pick_line(study, study.selected))]
    one = study.one_se
    if one is not None and study.selected is not None and one.key != study.selected.key:
        picks.append(("One-SE choice", _pick_line(study, one)))
    base = study.baseline
    if base is not None and (study.selected is None or base.key != study.selected.key):
        picks.append(("Baseline", _pick_line(study, base)))
    dl = "\n".join(f"<dt>{_e(k)}</dt><dd>{v}</dd>" for k, v in picks)
    return f"""<section class="summary" id="summary">
<h2>Summary</h2>
<p class="rec"><strong>Next:</strong> {_e(diag.recommendation)}</p>
<dl class="picks">
{dl}
</dl>
<ul class="findings">
{items or '<li>No diagnostic applies to this study.</li>'}
</ul>
<p class="small">Numbers describe the weights each run ended with (its best epoch when early
stopping restored it); thresholds are listed under
<a href="#method">How the diagnostics are computed</a>.</p>
</section>"""


def _figure(name: str, b64: str, study: Study) -> str:
    caption = _CAPTIONS[name].format(score="accuracy" if study.task == "classification" else "RMSE",
                                     metric=metric_name(study.metric))
    alt = f"{FIGURES[name]} of study {study.name}"
    return f"""<section id="fig-{_e(name)}">
<h2>{_e(FIGURES[name])}</h2>
<figure>
<img src="data:image/png;base64,{b64}" alt="{_e(alt)}" data-figure="{_e(name)}">
<figcaption>{_e(caption)}</figcaption>
</figure>
</section>"""


def _results_table(study: Study) -> str:
    score = study.score_metric
    tests = sorted({k for c in study.configurations for r in c.runs for k in r.result
                    if k.startswith("test_") and isinstance(r.result[k], (int, float))})
    head = ["configuration", "seeds", "validation loss", f"validation {'accuracy' if score == 'val_acc' else 'RMSE'}",
            "train-eval loss", "gap", f"&Delta; {_e(metric_name(study.metric))}", "best epoch", "epochs run",
            "seconds", *[_e(t.replace("_", " ")) for t in tests]]
    rows = []
    sel, one = study.selected, study.one_se
    for c in study.configurations:
        badges = ""
        if sel is not None and c.key == sel.key:
            badges += '<span class="badge sel">selected</span>'
        if one is not None and c.key == one.key and (sel is None or one.key != sel.key):
            badges += '<span class="badge">1-SE</span>'
        if c.is_baseline:
            badges += '<span class="badge">baseline</span>'
        gaps = [v - t for s, v in c.values("val_loss").items()
                for t in [c.values("train_eval_loss").get(s, math.nan)]]
        diff = study.paired(c) if not c.is_baseline else None
        best = [r.best_epoch for r in c.runs if r.best_epoch is not None]
        cells = [
            f'{_e(study.describe(c))}{badges}<br><span class="ci">{_e(c.key)}</span>',
            c.seeds_text(study.metric),
            _est(c.estimate("val_loss")),
            _est(c.estimate(score), pct=score == "val_acc"),
            _est(c.estimate("train_eval_loss")),
            _est(mean_ci(gaps)),
            (_est(diff, pct=study.metric.endswith("_acc"), signed=True) if diff is not None else "&ndash;"),
            _fmt(sum(best) / len(best), 3) if best else "&ndash;",
            _fmt(sum(r.epochs_run for r in c.runs) / len(c.runs), 3),
            _fmt(mean_ci(list(c.cost_values("seconds").values())).mean, 3),
            *[_est(mean_ci([r.result.get(t) for r in c.runs if isinstance(r.result.get(t), (int, float))]),
                   pct=t.endswith("_acc")) for t in tests],
        ]
        cls = ' class="selected"' if sel is not None and c.key == sel.key else ""
        rows.append(f"<tr{cls}>" + "".join(f"<td>{x}</td>" for x in cells) + "</tr>")
    return f"""<section id="results">
<h2>Results by configuration</h2>
<p class="small">Mean across seeds of each run's final weights; 95% {'t' if study.stat == 't' else 'studentized bootstrap'} intervals in brackets.
{_e(study.rule_text())}.
&Delta;: paired per-seed difference in {_e(metric_name(study.metric))} against the configuration
without dropout; best epoch: lowest validation loss.</p>
{_racing(study)}
<div class="scroll"><table>
<thead><tr>{''.join(f'<th>{h}</th>' for h in head)}</tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody>
</table></div>
</section>"""


def _racing(study: Study) -> str:
    """With ``--seeds auto``: how many seeds each configuration got, and why."""
    if not study.racing:
        return ""
    items = "".join(f"<li>{_e(study.describe(c))}: {int(info['seeds'])} seeds &ndash; {_e(info['why'])}</li>"
                    for c in study.configurations if (info := study.racing.get(c.key)))
    return f'<p class="small">Seeds were added in rounds only where the decision was open (--seeds auto):</p><ul>{items}</ul>'


def _cost_table(study: Study) -> str:
    """Measured cost per configuration (trained alone) and convergence, against no dropout."""
    cost = study.step_cost
    if not cost:
        return ""

    def ratio(mean, lo=None, hi=None) -> str:
        if mean is None or not math.isfinite(mean):
            return "&ndash;"
        ci = f' <span class="ci">[{lo:.2f}, {hi:.2f}]</span>' if lo is not None and math.isfinite(lo) else ""
        return f"{mean:.2f}x{ci}"

    rows = []
    for c in study.configurations:
        info = cost.get(c.key, {})
        best = [v for v in study.convergence(c, "best").values() if math.isfinite(v)]
        within = [v for v in study.convergence(c, "within").values() if math.isfinite(v)]
        rb, rw = study.convergence_ratio(c, "best"), study.convergence_ratio(c, "within")
        secs = mean_ci(list(c.cost_values("seconds").values())).mean
        cells = [
            _e(study.describe(c)),
            _fmt(info.get("step_ms", math.nan), 3),
            "baseline" if c.is_baseline else ratio(info.get("ratio"), info.get("ratio_lo"), info.get("ratio_hi")),
            _fmt(info.get("memory_mb", math.nan), 3),
            "baseline" if c.is_baseline else ratio(info.get("memory_ratio")),
            _fmt(sum(best) / len(best), 3) if best else "&ndash;",
            "baseline" if c.is_baseline else ratio(*(None,) * 3 if rb is None else (rb.mean, rb.lo, rb.hi)),
            _fmt(sum(within) / len(within), 3) if within else "&ndash;",
            "baseline" if c.is_baseline else ratio(*(None,) * 3 if rw is None else (rw.mean, rw.lo, rw.hi)),
            _fmt(secs, 3),
        ]
        rows.append("<tr>" + "".join(f"<td>{x}</td>" for x in cells) + "</tr>")
    head = ["configuration", "ms / step alone", "&times; no dropout", "MB / step", "&times; no dropout",
            "epochs to best", "&times; no dropout", "epochs to within 1%", "&times; no dropout",
            "population s / run"]
    steps = next(iter(cost.values()), {})
    return f"""<section id="cost">
<h2>Cost, measured</h2>
<p class="small">Time per step: each configuration trained alone on one batch, one CPU thread,
{steps.get("rounds", "?")} interleaved rounds of {steps.get("steps", "?")} steps (ratio: mean and 95% CI over
rounds). Memory: tensors kept for backward plus parameters, gradients and optimizer state.
Epochs to best: the best validation epoch; to within 1%: the first epoch whose validation loss is
within 1% of the run's lowest (per-seed ratios, 95% CI). Population s / run: what the sweep
actually cost, the population's time shared equally among its members.</p>
<div class="scroll"><table>
<thead><tr>{''.join(f'<th>{h}</th>' for h in head)}</tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody>
</table></div>
</section>"""


def _method() -> str:
    items = [
        f"Overfitting: the mean validation loss ends at least {_diag.OVERFIT_MIN_RISE:.0%} above its "
        f"minimum, {_diag.OVERFIT_MIN_EPOCHS_AFTER} or more epochs after it, while the training loss "
        "(eval mode) ends lower than at the minimum.",
        f"Underfitting: a dropout rate above the best one (among configurations that differ only in "
        f"dropout) whose train-eval loss is at least {_diag.UNDERFIT_RATIO:g}x the best one's and whose "
        f"validation loss is at least {_diag.UNDERFIT_VAL_MARGIN:.0%} above the study's best.",
        "Dropout helped: the study's decision rule (t: paired t-test; bootstrap: exact sign-flip "
        "test, with studentized bootstrap intervals), Holm-corrected across the dropout settings "
        "compared with the same no-dropout baseline (Holm 1979), finds the selected configuration "
        "better in the selection metric; otherwise it did not help. When validation accuracy and "
        "validation loss (NLL, a proper scoring rule) disagree, both are reported. Seeds needed: "
        "paired t power analysis at the observed effect, 80% power (Colas et al. 2018).",
        "One-standard-error choice: among configurations that differ from the best only in "
        "regularization, the most regularized one whose mean is within one standard error of the "
        "best (Breiman et al. 1984; Hastie, Tibshirani &amp; Friedman 2009, section 7.10).",
        f"Generalization gap: reported when it changes by at least {_diag.GAP_MIN_CHANGE:.0%} against "
        "the baseline.",
        f"Early stopping: patience {_diag.EARLY_STOP_PATIENCE} replayed on the recorded validation "
        f"curves of runs that used their whole budget; reported from {_diag.EARLY_STOP_MIN_SAVING:.0%} "
        "of the epochs saved (Prechelt 1998).",
    ]
    lis = "\n".join(f"<li>{x}</li>" for x in items)
    return f"""<section id="method">
<h2>How the diagnostics are computed</h2>
<ul>
{lis}
</ul>
</section>"""


def _pretty(value: Any, indent: int = 0) -> str:
    """JSON with nested objects indented and lists of scalars kept on one line."""
    pad = "  " * indent
    if isinstance(value, Mapping) and value:
        items = [f'{pad}  {json.dumps(str(k))}: {_pretty(v, indent + 1).lstrip()}' for k, v in sorted(value.items())]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, (list, tuple)) and any(isinstance(v, (Mapping, list, tuple)) for v in value):
        items = [f"{pad}  {_pretty(v, indent + 1).lstrip()}" for v in value]
        return "[\n" + ",\n".join(items) + f"\n{pad}]"
    return json.dumps(value, default=str)


def _rerun(study: Study) -> str:
    spec = _pretty(study.spec)
    versions = "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in sorted(study.versions.items()))
    counts = ", ".join(f"{n} {_e(s)}" for s, n in sorted(study.status_counts.items()))
    seeds = ", ".join(str(s) for s in study.seeds)
    return f"""<section id="rerun">
<h2>Rerun this study</h2>
<p>Study <b>{_e(study.name)}</b>, created {_e(study.created)}, file <code>{_e(study.path)}</code>.
Runs: {counts}. Seeds: {_e(seeds)}. The same spec and seeds give bitwise identical results on the
same machine and library versions; <code>droplab sweep --resume {_e(study.path)}</code> continues
the study from the configuration stored in it.</p>
<h3>Configuration (spec as stored)</h3>
<pre>{_e(spec)}</pre>
<h3>Library versions</h3>
<table style="width:auto">{versions}</table>
</section>"""


def render_html(
    study: Study,
    figures_b64: Mapping[str, str] | None = None,
    diagnosis: Diagnosis | None = None,
) -> str:
    """The complete page as a string.

    Args:
        study: from :func:`~droplab.report.study.load_study`.
        figures_b64: figure name -> base64 PNG (default: drawn here with
            :func:`~droplab.report.figures.make_figures`).
        diagnosis: default :func:`~droplab.report.diagnostics.diagnose` of ``study``.
    """
    if figures_b64 is None:
        figures_b64 = {k: figure_base64(f) for k, f in make_figures(study).items()}
    diag = diagnosis or diagnose(study)
    n_runs = sum(study.status_counts.values())
    from droplab import __version__

    meta = (f"{len(study.configurations)} configurations &times; {len(study.seeds)} seeds &middot; "
            f"{n_runs} runs &middot; created {_e(study.created)} &middot; selection by "
            f"{'highest' if study.maximize else 'lowest'} mean {_e(metric_name(study.metric))}")
    figs = "\n".join(_figure(name, figures_b64[name], study) for name in FIGURES if name in figures_b64)
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>droplab report: {_e(study.name)}</title>
<style>{_CSS}</style>
</head>
<body>
<main>
<header>
<h1>droplab report: {_e(study.name)}</h1>
<p class="meta">{meta}</p>
</header>
{_summary(study, diag)}
{figs}
{_results_table(study)}
{_cost_table(study)}
{_method()}
{_rerun(study)}
<footer>Generated by droplab {_e(__version__)} at {_e(now)}. Self-contained: no scripts, no external
resources.</footer>
</main>
</body>
</html>
"""


def export_pngs(figures: Mapping[str, Any], directory: str | os.PathLike) -> list[pathlib.Path]:
    """Write every figure as ``<directory>/<name>.png``; returns the paths.

    Raises:
        StoreError: the directory cannot be created or written.
    """
    d = pathlib.Path(directory)
    try:
        d.mkdir(parents=True, exist_ok=True)
        out = []
        for name, fig in figures.items():
            p = d / f"{name}.png"
            p.write_bytes(fig if isinstance(fig, bytes) else figure_png(fig))
            out.append(p)
    except OSError as exc:
        raise StoreError(f"cannot write figures to {d}: {exc.strerror}") from None
    return out


def write_report(
    source: str | os.PathLike | Store | Study,
    out: str | os.PathLike = "report.html",
    *,
    png_dir: str | os.PathLike | None = None,
) -> pathlib.Path:
    """Write the study's report page (and optionally every figure as PNG).

    Args:
        source: study file path, open :class:`~droplab.sweep.store.Store`, or loaded
            :class:`~droplab.report.study.Study`.
        out: the HTML file to write. Default ``"report.html"``.
        png_dir: also write ``<name>.png`` for every figure there. Default None.

    Returns:
        The path of the HTML file.

    Raises:
        StoreError: missing study, no finished runs, or an output that cannot be written.

    Example::

        write_report("out/study.db", "out/report.html")
    """
    study = source if isinstance(source, Study) else load_study(source)
    figures = make_figures(study)
    pngs = {name: figure_png(fig) for name, fig in figures.items()}
    import base64

    page = render_html(study, {k: base64.b64encode(v).decode("ascii") for k, v in pngs.items()})
    path = pathlib.Path(out)
    try:
        if path.parent:
            path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise StoreError(f"cannot write report {path}: {exc.strerror}") from None
    if png_dir is not None:
        export_pngs(pngs, png_dir)
    return path
