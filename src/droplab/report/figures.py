"""The report's figures, drawn with matplotlib's Agg renderer into PNG bytes.

Five figures, in the order the page shows them (:data:`FIGURES`):

* ``response`` -- validation loss, train-in-eval-mode loss and validation accuracy (or RMSE)
  against the dropout rate, one column per placement, mean and 95% CI across seeds; the
  selected rate (star) and the one-standard-error choice (diamond) marked.
* ``learning_curves`` -- per configuration: training loss as trained (dropout on), training
  loss in eval mode, validation loss by epoch; seeds thin, mean thick; each seed's best epoch
  (the one early stopping keeps) marked with a dot, an early-stopped run's last epoch with a bar.
* ``gap`` -- generalization gap (validation minus train-eval loss) against rate and by epoch.
* ``paired`` -- per-seed paired differences against the no-dropout baseline, mean and 95% CI.
* ``cost`` -- wall time and peak memory per configuration relative to the baseline.

Figures are built on :class:`matplotlib.figure.Figure` directly and saved with the Agg
renderer (no pyplot: no global state, no GUI, and the backend of a user's notebook is left
alone); colours are the Okabe-Ito palette (Okabe & Ito 2008), which stays
distinguishable under the common colour-vision deficiencies, plus line styles and markers so
that nothing depends on colour alone.

Example::

    figs = make_figures(load_study("study.db"))
    png = figure_png(figs["response"])
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Callable

import matplotlib
import matplotlib.ticker
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from droplab.report.study import Configuration, Study
from droplab.stats import mean_ci

__all__ = ["FIGURES", "PALETTE", "make_figures", "figure_png", "figure_base64"]

#: Figure names, in page order, with their titles.
FIGURES = {
    "response": "Dropout-response curve",
    "learning_curves": "Learning curves",
    "gap": "Generalization gap",
    "paired": "Paired differences against no dropout",
    "cost": "Cost relative to no dropout",
}

#: Okabe-Ito colours (yellow last: faint on white).
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
_VAL, _TRAIN_EVAL, _TRAIN = "#D55E00", "#0072B2", "#E69F00"
_GREY = "#7f7f7f"

_STYLE = {
    "font.size": 9.5,
    "axes.titlesize": 10.5,
    "axes.titleweight": "bold",
    "axes.labelsize": 9.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e6e6e6",
    "grid.linewidth": 0.8,
    "axes.edgecolor": "#555555",
    "legend.frameon": False,
    "legend.fontsize": 8.5,
    "figure.dpi": 100,
    "savefig.dpi": 125,
    "figure.facecolor": "white",
    "axes.prop_cycle": matplotlib.cycler(color=list(PALETTE)),
}
_WIDTH = 10.0


def figure_png(fig: Figure) -> bytes:
    """The figure as PNG bytes (no timestamp or software metadata, so output is reproducible)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", metadata={"Software": None})
    return buf.getvalue()


def figure_base64(fig: Figure) -> str:
    """The figure as a base64 PNG string (for a ``data:`` URI)."""
    return base64.b64encode(figure_png(fig)).decode("ascii")


def make_figures(study: Study) -> dict[str, Figure]:
    """All figures of a study, keyed by the names in :data:`FIGURES`.

    Example::

        for name, fig in make_figures(study).items():
            open(f"{name}.png", "wb").write(figure_png(fig))
    """
    builders: dict[str, Callable[[Study], Figure]] = {
        "response": response_figure,
        "learning_curves": learning_curves_figure,
        "gap": gap_figure,
        "paired": paired_figure,
        "cost": cost_figure,
    }
    with matplotlib.rc_context(_STYLE):
        return {name: builders[name](study) for name in FIGURES}


# --- helpers -------------------------------------------------------------------------------------
def _txt(text: str, width: int = 48, lines: int = 2) -> str:
    """User text for a figure: ``$`` escaped (no mathtext), wrapped, and cut to ``lines`` lines."""
    import textwrap

    wrapped = textwrap.wrap(str(text), width) or [""]
    if len(wrapped) > lines:
        wrapped = wrapped[:lines]
        wrapped[-1] = wrapped[-1][: width - 1] + "\u2026"
    return "\n".join(wrapped).replace("$", r"\$")


def _message(fig: Figure, ax, text: str) -> None:
    ax.set_axis_off()
    ax.text(0.5, 0.5, text, ha="center", va="center", color="#555555", fontsize=10, wrap=True,
            transform=ax.transAxes)


def _row_height(study: Study, configs: list[Configuration]) -> float:
    """Inches per row of a per-configuration plot (more when labels wrap)."""
    lines = max((_txt(study.describe(c)).count("\n") + 1 for c in configs), default=1)
    return 0.34 + 0.16 * (lines - 1)


def _placeholder(title: str, text: str) -> Figure:
    fig = Figure(figsize=(_WIDTH, 1.4), layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(title, loc="left")
    _message(fig, ax, text)
    return fig


def _band(ax, xs, estimates, color, style="-", label=None, marker="o"):
    means = [e.mean for e in estimates]
    ax.plot(xs, means, style, color=color, lw=2, marker=marker, ms=4, label=label)
    lo = [e.lo if math.isfinite(e.lo) else e.mean for e in estimates]
    hi = [e.hi if math.isfinite(e.hi) else e.mean for e in estimates]
    ax.fill_between(xs, lo, hi, color=color, alpha=0.15, lw=0)


def _score_label(study: Study) -> str:
    return "validation accuracy" if study.task == "classification" else "validation RMSE"


def _mark(ax, x, y, kind: str, label: str | None) -> None:
    if kind == "selected":
        ax.plot([x], [y], marker="*", ms=15, mfc="#F0E442", mec="black", mew=1.0, ls="none",
                zorder=5, label=label)
    else:
        ax.plot([x], [y], marker="D", ms=8, mfc="none", mec="black", mew=1.5, ls="none", zorder=6,
                label=label)


# --- response ------------------------------------------------------------------------------------
#: At most this many response lines per panel (the selected configuration's line first).
MAX_LINES = 8


def _style_key(ax, marked: set[str]) -> None:
    """Legend of line styles and markers only (colours are explained in the other panel)."""
    handles = [Line2D([], [], color="#333333", lw=2, marker="o", ms=4),
               Line2D([], [], color="#333333", lw=2, ls="--", marker="s", ms=4)]
    labels = ["validation", "train, eval mode"]
    if "selected" in marked:
        handles.append(Line2D([], [], marker="*", ms=12, mfc="#F0E442", mec="black", ls="none"))
        labels.append("selected")
    if "one_se" in marked:
        handles.append(Line2D([], [], marker="D", ms=7, mfc="none", mec="black", mew=1.5, ls="none"))
        labels.append("one-SE choice")
    ax.legend(handles, labels, loc="best")


def response_figure(study: Study) -> Figure:
    """Validation/train-eval loss and validation score against each dropout rate (mean, 95% CI).

    One row per rate axis (placement): losses on the left, the validation score on the right;
    one line per setting of the other parameters (at most :data:`MAX_LINES`).
    """
    axes_names = study.response_axes()
    if not axes_names:
        return _categorical_response(study)
    nrow = len(axes_names)
    fig = Figure(figsize=(_WIDTH, 0.5 + 3.6 * nrow), layout="constrained")
    grid = fig.subplots(nrow, 2, squeeze=False)
    sel, one = study.selected, study.one_se
    score = study.score_metric
    for j, axis in enumerate(axes_names):
        left, right = grid[j]
        lines = sorted(study.lines(axis), key=lambda item: sel is None or sel not in item[1])
        hidden = max(0, len(lines) - MAX_LINES)
        lines = lines[:MAX_LINES]
        many = len(lines) > 1
        marked: set[str] = set()
        for i, (name, configs) in enumerate(lines):
            color = PALETTE[i % len(PALETTE)] if many else _VAL
            xs = [c.params[axis] for c in configs]
            _band(left, xs, [c.estimate("val_loss") for c in configs], color, "-", "validation")
            _band(left, xs, [c.estimate("train_eval_loss") for c in configs],
                  color if many else _TRAIN_EVAL, "--", "train, eval mode", "s")
            _band(right, xs, [c.estimate(score) for c in configs], color, "-", _txt(name, 36) if many else None)
            for c in configs:
                for kind, target in (("selected", sel), ("one_se", one)):
                    if target is None or c.key != target.key:
                        continue
                    if kind == "one_se" and sel is not None and target.key == sel.key:
                        continue
                    marked.add(kind)
                    _mark(left, c.params[axis], c.estimate("val_loss").mean, kind, None)
                    _mark(right, c.params[axis], c.estimate(score).mean, kind, None)
        label = _score_label(study)
        left.set_title(_txt(f"Loss against {study.axis_name(axis)}", 60), loc="left")
        right.set_title(_txt(f"{label[0].upper() + label[1:]} against {study.axis_name(axis)}", 60)
                        + (f" ({hidden} lines not shown)" if hidden else ""), loc="left")
        left.set_ylabel("loss")
        right.set_ylabel(label)
        for ax in (left, right):
            ax.set_xlabel(_txt(study.axis_name(axis), 60))
        if study.task == "classification":
            right.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
        _style_key(left, marked)
        if many:
            right.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), title="other settings",
                         title_fontsize=8.5)
    return fig


def _categorical_response(study: Study) -> Figure:
    configs = study.configurations
    fig = Figure(figsize=(_WIDTH, 1.2 + 0.35 * len(configs)), layout="constrained")
    ax = fig.add_subplot()
    ys = list(range(len(configs)))
    for y, c in zip(ys, configs):
        e = c.estimate(study.metric)
        err = e.half_width if math.isfinite(e.half_width) else 0.0
        ax.errorbar([e.mean], [y], xerr=[err], fmt="o", color=_VAL, capsize=3)
        if study.selected is not None and c.key == study.selected.key:
            _mark(ax, e.mean, y, "selected", "selected")
    ax.set_yticks(ys, [_txt(study.describe(c)) for c in configs])
    ax.invert_yaxis()
    ax.set_xlabel(f"{study.metric} (mean, 95% CI)")
    ax.set_title("Selection metric by configuration", loc="left")
    return fig


# --- learning curves -----------------------------------------------------------------------------
#: At most this many configurations get a learning-curve panel (selected/baseline/one-SE first).
MAX_PANELS = 16


def _panel_configs(study: Study) -> list[Configuration]:
    configs = list(study.configurations)
    if len(configs) <= MAX_PANELS:
        return configs
    first = [c for c in (study.baseline, study.selected, study.one_se) if c is not None]
    rest = [c for c in configs if c not in first]
    step = max(1, math.ceil(len(rest) / (MAX_PANELS - len(first))))
    keep = set(map(id, first + rest[::step][: MAX_PANELS - len(first)]))
    return [c for c in configs if id(c) in keep]


def learning_curves_figure(study: Study) -> Figure:
    """Per configuration: training loss (dropout on / eval mode) and validation loss by epoch."""
    configs = _panel_configs(study)
    ncol = min(4, len(configs))
    nrow = math.ceil(len(configs) / ncol)
    fig = Figure(figsize=(_WIDTH, 0.9 + 2.3 * nrow), layout="constrained")
    grid = fig.subplots(nrow, ncol, squeeze=False, sharex=True, sharey=True)
    series = (("train_loss", _TRAIN, "train loss (dropout on)", ":"),
              ("train_eval_loss", _TRAIN_EVAL, "train loss, eval mode", "--"),
              ("val_loss", _VAL, "validation loss", "-"))
    all_means: list[float] = []
    for k, c in enumerate(configs):
        ax = grid[k // ncol][k % ncol]
        for metric, color, name, style in series:
            for _seed, epochs, values in c.curves(metric):
                finite = [v if math.isfinite(v) else math.nan for v in values]
                ax.plot(epochs, finite, style, color=color, lw=0.7, alpha=0.35)
            e, m = c.mean_curve(metric)
            if e:
                ax.plot(e, m, style, color=color, lw=2.0, label=name)
                all_means += [v for v in m if math.isfinite(v)]
        for r in c.runs:
            be = r.best_epoch
            row = next((h for h in r.history if h["epoch"] == be), None)
            v = row.get("val_loss") if row else None
            if v is not None:
                ax.plot([be], [v], "o", color=_VAL, ms=4.5, mec="white", mew=0.6, zorder=4)
            if r.status == "early_stopped" and r.history:
                ax.axvline(r.history[-1]["epoch"], color=_GREY, lw=0.8, ls=(0, (2, 2)), alpha=0.8)
        tag = ""
        if study.selected is not None and c.key == study.selected.key:
            tag = "  [selected]"
        elif study.one_se is not None and c.key == study.one_se.key:
            tag = "  [1-SE]"
        ax.set_title(_txt(study.describe(c) + tag, 30), loc="left", fontsize=9.5)
        if k % ncol == 0:
            ax.set_ylabel("loss")
        if k // ncol == nrow - 1 or k + ncol >= len(configs):
            ax.set_xlabel("epoch")
            ax.xaxis.set_tick_params(labelbottom=True)
    grid[0][0].xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    for k in range(len(configs), nrow * ncol):
        grid[k // ncol][k % ncol].set_axis_off()
    if all_means:
        lo, hi = min(all_means), max(all_means)
        pad = 0.08 * (hi - lo or 1.0)
        grid[0][0].set_ylim(max(0.0, lo - pad) if lo >= 0 else lo - pad, hi + pad)
    handles, labels = grid[0][0].get_legend_handles_labels()
    handles.append(Line2D([], [], marker="o", ls="none", color=_VAL, mec="white", ms=5))
    labels.append("best epoch of a seed")
    if any(r.status == "early_stopped" for c in configs for r in c.runs):
        handles.append(Line2D([], [], color=_GREY, lw=0.8, ls=(0, (2, 2))))
        labels.append("early stop")
    fig.legend(handles, labels, loc="outside upper center", ncol=min(5, len(labels)))
    omitted = len(study.configurations) - len(configs)
    if omitted:
        fig.text(0.01, 0.0, f"{omitted} more configurations not shown", fontsize=8, color="#555555")
    return fig


# --- generalization gap --------------------------------------------------------------------------
def _gap_values(c: Configuration) -> list[float]:
    v, t = c.values("val_loss"), c.values("train_eval_loss")
    return [v[s] - t[s] for s in v if s in t]


def gap_figure(study: Study) -> Figure:
    """Generalization gap (validation minus train-eval loss) against rate and by epoch."""
    fig = Figure(figsize=(_WIDTH, 3.8), layout="constrained")
    left, right = fig.subplots(1, 2)
    has_te = any(c.curves("train_eval_loss") for c in study.configurations)
    if not has_te:
        _message(fig, left, "no train-in-eval-mode loss was recorded")
        _message(fig, right, "(set eval_train to record it)")
        return fig
    axes_names = study.response_axes()
    k = 0
    for axis in axes_names:
        for name, configs in study.lines(axis):
            xs = [c.params[axis] for c in configs]
            label = _txt(study.axis_name(axis) + (f" ({name})" if name else ""), 40)
            _band(left, xs, [mean_ci(_gap_values(c)) for c in configs],
                  PALETTE[k % len(PALETTE)], "-", label)
            k += 1
    if k:
        left.axhline(0, color=_GREY, lw=0.8)
        left.set_xlabel("rate" if all(a in study.dropout_axes for a in axes_names) else "value")
        left.set_ylabel("validation - train-eval loss")
        left.set_title("Gap of the final weights against rate", loc="left")
        if k > 1:
            left.legend(loc="best")
    else:
        _message(fig, left, "no numeric axis to plot the gap against")
    # by epoch, coloured by total dropout rate (sequential, colour-blind safe)
    import matplotlib.cm as cm
    from matplotlib.colors import Normalize

    rates = [c.total_rate for c in study.configurations]
    norm = Normalize(min(rates), max(rates) if max(rates) > min(rates) else min(rates) + 1)
    cmap = matplotlib.colormaps["viridis"]
    for c in study.configurations:
        e1, v = c.mean_curve("val_loss")
        e2, t = c.mean_curve("train_eval_loss")
        td = dict(zip(e2, t))
        xs = [e for e in e1 if e in td]
        if not xs:
            continue
        vd = dict(zip(e1, v))
        ys = [vd[e] - td[e] for e in xs]
        if c.is_baseline:
            right.plot(xs, ys, color="black", lw=2.2, ls="--", label="no dropout", zorder=4)
        else:
            right.plot(xs, ys, color=cmap(norm(c.total_rate)), lw=1.4)
    right.axhline(0, color=_GREY, lw=0.8)
    right.set_xlabel("epoch")
    right.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    right.set_ylabel("validation - train-eval loss")
    right.set_title("Gap by epoch (mean across seeds)", loc="left")
    if any(c.is_baseline for c in study.configurations):
        right.legend(loc="upper left")
    if study.dropout_axes and max(rates) > min(rates):
        fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=right, label="total dropout rate")
    return fig


# --- paired differences --------------------------------------------------------------------------
def paired_figure(study: Study) -> Figure:
    """Per-seed paired differences (configuration minus no-dropout baseline), mean and 95% CI."""
    rows = [(c, study.paired(c, "val_loss")) for c in study.configurations if not c.is_baseline]
    rows = [(c, d) for c, d in rows if d is not None]
    title = FIGURES["paired"]
    if not rows:
        why = ("the study varies no dropout rate" if not study.dropout_axes
               else "no configuration without dropout to compare against")
        return _placeholder(title, f"No paired differences: {why}.")
    score = study.score_metric
    fig = Figure(figsize=(_WIDTH, 1.3 + _row_height(study, [c for c, _ in rows]) * len(rows)),
                 layout="constrained")
    left, right = fig.subplots(1, 2, sharey=True)
    ys = list(range(len(rows)))
    classification = study.task == "classification"
    for y, (c, d) in zip(ys, rows):
        for ax, est, better_low, scale in (
            (left, d, True, 1.0),
            (right, study.paired(c, score), not classification, 100.0 if classification else 1.0),
        ):
            if est is None or not math.isfinite(est.mean):
                continue
            lo, hi = est.lo, est.hi
            decided = math.isfinite(lo) and (hi < 0 if better_low else lo > 0)
            worse = math.isfinite(lo) and (lo > 0 if better_low else hi < 0)
            color = PALETTE[0] if decided else (PALETTE[1] if worse else _GREY)
            err = [[(est.mean - lo) * scale], [(hi - est.mean) * scale]] if math.isfinite(lo) else None
            ax.errorbar([est.mean * scale], [y], xerr=err, fmt="o", color=color, capsize=3, ms=5)
    for ax in (left, right):
        ax.axvline(0, color="black", lw=0.9)
    left.set_yticks(ys, [_txt(study.describe(c)) for c, _ in rows])
    left.invert_yaxis()
    left.set_xlabel("validation loss difference (lower is better)")
    right.set_xlabel("validation accuracy difference, points (higher is better)"
                     if study.task == "classification" else "validation RMSE difference (lower is better)")
    fig.suptitle("Against no dropout, same seeds: mean and 95% CI  (blue: better, vermillion: worse, "
                 "grey: undecided)", x=0.01, ha="left", fontsize=10, fontweight="bold")
    return fig


# --- cost ----------------------------------------------------------------------------------------
def _ratio(c: Configuration, base: Configuration | None, name: str):
    vals = c.cost_values(name)
    if base is None:
        return mean_ci(list(vals.values()))
    bvals = base.cost_values(name)
    ratios = [vals[s] / bvals[s] for s in vals if s in bvals and bvals[s] and bvals[s] > 0]
    return mean_ci(ratios)


def _measured_cost_figure(study: Study) -> Figure:
    """Per-step time and memory trained alone, and epochs to the best epoch, against no dropout."""
    configs = [c for c in study.configurations if study.baseline_for(c) is not None]
    cost = study.step_cost
    fig = Figure(figsize=(_WIDTH, 1.3 + _row_height(study, configs) * len(configs)), layout="constrained")
    axes = fig.subplots(1, 3, sharey=True)
    ys = list(range(len(configs)))
    for ax, what in zip(axes, ("time", "memory", "epochs")):
        for y, c in zip(ys, configs):
            if what == "epochs":
                est = study.convergence_ratio(c, "best")
                mean, lo, hi = (est.mean, est.lo, est.hi) if est is not None else (math.nan,) * 3
            else:
                info = cost.get(c.key, {})
                if c.is_baseline:
                    mean = lo = hi = 1.0
                elif what == "time":
                    mean, lo, hi = (info.get(k, math.nan) for k in ("ratio", "ratio_lo", "ratio_hi"))
                else:
                    mean = lo = hi = info.get("memory_ratio", math.nan)
            if mean is None or not math.isfinite(mean):
                continue
            err = ([[mean - lo], [hi - mean]] if lo is not None and math.isfinite(lo) and hi > lo else None)
            color = _GREY if c.is_baseline else PALETTE[0]
            ax.errorbar([mean], [y], xerr=err, fmt="o", color=color, capsize=3, ms=6)
            ax.annotate(f"{mean:.2f}x", (mean, y), xytext=(0, 7), textcoords="offset points", ha="center",
                        fontsize=8, color="#333333")
        ax.axvline(1.0, color="black", lw=0.9)
        ax.set_xlabel({"time": "time per step, trained alone", "memory": "memory per step (saved tensors + state)",
                       "epochs": "epochs to the best validation epoch"}[what] + "\n/ no dropout's")
        ax.margins(x=0.15)
    axes[0].set_yticks(ys, [_txt(study.describe(c)) for c in configs])
    axes[0].set_ylim(len(configs) - 0.4, -0.7)
    fig.suptitle("Cost against no dropout: per step trained alone (interleaved rounds, 95% CI over rounds), "
                 "and epochs to converge (95% CI over seeds)", x=0.01, ha="left", fontsize=10, fontweight="bold")
    return fig


def cost_figure(study: Study) -> Figure:
    """Wall time and peak memory per configuration, relative to its no-dropout baseline.

    When the sweep measured each configuration alone (``study.step_cost``), the figure shows
    those measurements and the epochs to the best validation epoch instead of the population's
    per-run share of the time (which is the same for every member by construction).
    """
    if study.step_cost and any(study.baseline_for(c) is not None for c in study.configurations):
        return _measured_cost_figure(study)
    configs = study.configurations
    fig = Figure(figsize=(_WIDTH, 1.3 + _row_height(study, configs) * len(configs)), layout="constrained")
    left, right = fig.subplots(1, 2, sharey=True)
    ys = list(range(len(configs)))
    relative = any(study.baseline_for(c) is not None for c in configs)
    for ax, name, unit in ((left, "seconds", "s"), (right, "peak_mem_mb", "MB")):
        for y, c in zip(ys, configs):
            base = study.baseline_for(c) if relative else None
            if relative and base is None:
                continue
            est = _ratio(c, base, name)
            if not math.isfinite(est.mean):
                continue
            err = [[est.mean - est.lo], [est.hi - est.mean]] if math.isfinite(est.lo) else None
            color = _GREY if c.is_baseline else PALETTE[0]
            ax.errorbar([est.mean], [y], xerr=err, fmt="o", color=color, capsize=3, ms=6)
            ax.annotate(f"{est.mean:.2f}x" if relative else f"{est.mean:.3g} {unit}", (est.mean, y),
                        xytext=(0, 7), textcoords="offset points", ha="center", fontsize=8, color="#333333")
        if relative:
            ax.axvline(1.0, color="black", lw=0.9)
        what = "wall time" if name == "seconds" else "peak memory"
        ax.set_xlabel(f"{what} / no-dropout baseline's (same seed)" if relative else f"{what} ({unit})")
        ax.margins(x=0.15)
    left.set_yticks(ys, [_txt(study.describe(c)) for c in configs])
    left.set_ylim(len(configs) - 0.4, -0.7)
    fig.suptitle("Cost per run: mean and 95% CI" + (" of the per-seed ratio" if relative else ""),
                 x=0.01, ha="left", fontsize=10, fontweight="bold")
    return fig
