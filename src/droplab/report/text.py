"""The terminal summary of a study: one rich table, the diagnostics and the recommendation.

``droplab report STUDY.db --text`` prints it, and ``droplab sweep`` prints it when a sweep ends.

Example::

    print_summary("out/study.db")
"""

from __future__ import annotations

import math
import os

from droplab.report.diagnostics import Diagnosis, diagnose
from droplab.report.study import Study, load_study
from droplab.stats import Estimate
from droplab.sweep.store import Store

__all__ = ["summary_table", "print_summary"]

_LEVEL_STYLE = {"good": "green", "info": "", "warning": "yellow"}
_LEVEL_MARK = {"good": "+", "info": "-", "warning": "!"}


def _cell(e: Estimate | None, pct: bool = False, signed: bool = False) -> str:
    if e is None or not math.isfinite(e.mean):
        return "-"

    def f(v: float) -> str:
        if pct:
            return f"{round(v * 100, 1) + 0.0:+.1f} pt" if signed else f"{v:.1%}"
        return f"{v:+.3g}" if signed else f"{v:.3g}"

    if not math.isfinite(e.half_width):
        return f(e.mean)
    half = e.half_width if e.half_width > 1e-9 * abs(e.mean) else 0.0  # no "± 4.2e-17"
    hw = f"{half * 100:.1f}" if pct else f"{half:.2g}"
    return f"{f(e.mean)} ± {hw}"


def summary_table(study: Study):
    """A :class:`rich.table.Table`: one row per configuration, mean ± 95% CI half-width.

    Columns: configuration, seeds, validation loss, validation accuracy (or RMSE), train-eval
    loss, paired difference of validation loss against no dropout, epochs, seconds.
    """
    from rich.markup import escape
    from rich.table import Table

    score = study.score_metric
    sel, one = study.selected, study.one_se
    table = Table(
        title=f"droplab study {escape(study.name)}: {len(study.configurations)} configurations x "
        f"{len(study.seeds)} seeds",
        caption="mean ± 95% CI half-width across seeds, of each run's final weights (accuracy CI in points); "
        f"{'t' if study.stat == 't' else 'studentized bootstrap'} intervals",
    )
    table.add_column("configuration", overflow="fold")
    for name in ("seeds", "val loss", "val acc" if score == "val_acc" else "val rmse", "train-eval loss",
                 f"Δ {escape(study.metric)} vs none", "epochs", "seconds"):
        table.add_column(name, justify="right", no_wrap=True)
    for c in study.configurations:
        mark = ""
        if sel is not None and c.key == sel.key:
            mark = " [bold]*selected[/bold]"
        elif one is not None and c.key == one.key:
            mark = " (1-SE)"
        diff = None if c.is_baseline else study.paired(c)
        secs = [v for v in c.cost_values("seconds").values() if math.isfinite(v)]
        table.add_row(
            escape(study.describe(c)) + mark,
            c.seeds_text(study.metric),
            _cell(c.estimate("val_loss")),
            _cell(c.estimate(score), pct=score == "val_acc"),
            _cell(c.estimate("train_eval_loss")),
            _cell(diff, pct=study.metric.endswith("_acc"), signed=True),
            f"{sum(r.epochs_run for r in c.runs) / len(c.runs):.3g}",
            f"{sum(secs) / len(secs):.3g}" if secs else "-",
            style="bold" if sel is not None and c.key == sel.key else None,
        )
    return table


def print_summary(
    store_or_path: str | os.PathLike | Store | Study,
    console=None,
    *,
    diagnosis: Diagnosis | None = None,
) -> Diagnosis:
    """Print the study's table, its diagnostics and the recommendation to a rich console.

    Args:
        store_or_path: study file path, open :class:`~droplab.sweep.store.Store`, or a loaded
            :class:`~droplab.report.study.Study`.
        console: a :class:`rich.console.Console` (default: stdout; 160 columns when not a
            terminal, so captured output is not folded at 80).
        diagnosis: precomputed diagnosis (default: computed here).

    Returns:
        The :class:`~droplab.report.diagnostics.Diagnosis` printed.

    Raises:
        StoreError: missing study or no finished runs.
    """
    from rich.console import Console
    from rich.markup import escape

    study = store_or_path if isinstance(store_or_path, Study) else load_study(store_or_path)
    if console is None:
        console = Console()
        if not console.is_terminal:
            console = Console(width=160)
    diag = diagnosis or diagnose(study)
    console.print(summary_table(study))
    console.print(escape(study.rule_text()))
    for c in study.configurations:
        info = study.racing.get(c.key)
        if info:
            console.print(escape(f"seeds for {study.describe(c)}: {info['seeds']} -- {info['why']}"))
    for f in diag.findings:
        style = _LEVEL_STYLE.get(f.level, "")
        text = f"{_LEVEL_MARK.get(f.level, '-')} {escape(f.sentence)}"
        console.print(f"[{style}]{text}[/{style}]" if style else text)
    console.print(f"[bold]Next:[/bold] {escape(diag.recommendation)}")
    return diag
