"""The reproduction report: one self-contained HTML page, published figures next to droplab's.

The page opens offline: figures are inline PNG ``data:`` URIs drawn with matplotlib's Agg
renderer (through :func:`droplab.report.figures.figure_base64`, in its Okabe-Ito palette), the
style sheet is inline, and there is no script and no external resource. Every piece of text --
names, citations, published text, criteria, notes, labels, skip reasons -- goes through
:func:`html.escape` (quotes included) before it reaches the page.

Example::

    page = render_page(report)   # report from droplab.reproduce.reproduce(...)
"""

from __future__ import annotations

import html
import math
import os
import pathlib
from collections.abc import Mapping
from typing import Any

__all__ = ["render_page", "finding_figure", "write_page"]

_CSS = """
:root { --ink:#1f2328; --muted:#59636e; --line:#d8dee4; --panel:#f6f8fa;
        --ok:#0072B2; --bad:#D55E00; --skip:#8a6d00; }
* { box-sizing: border-box; }
body { margin:0; color:var(--ink); background:#fff;
       font: 15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 28px 28px 60px; }
h1 { font-size: 26px; margin: 0 0 4px; }
.meta { color: var(--muted); font-size: 13.5px; margin: 0; }
h2 { font-size: 19px; margin: 36px 0 8px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
table { border-collapse: collapse; width: 100%; font-size: 13.5px; margin: 8px 0; }
th, td { padding: 5px 8px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th { background: var(--panel); font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.badge { display: inline-block; font-size: 12px; padding: 0 8px; border-radius: 9px;
         border: 1px solid; white-space: nowrap; font-weight: 600; }
.agrees { color: var(--ok); border-color: var(--ok); }
.disagrees { color: var(--bad); border-color: var(--bad); }
.skipped { color: var(--skip); border-color: var(--skip); }
dl.facts { display: grid; grid-template-columns: 150px 1fr; gap: 4px 14px; margin: 8px 0; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; }
.published { background: var(--panel); border-left: 4px solid var(--muted); padding: 6px 12px; }
.measured { background: #eef6fb; border-left: 4px solid var(--ok); padding: 6px 12px; }
ul.notes { margin: 4px 0; padding-left: 20px; }
figure { margin: 10px 0; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; }
.small { font-size: 13px; color: var(--muted); }
footer { margin-top: 40px; color: var(--muted); font-size: 12px; }
"""


def _e(value: Any) -> str:
    """Escape anything for HTML text or a quoted attribute."""
    return html.escape(str(value), quote=True)


def _num(x: Any, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "&ndash;"
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return _e(f"{x:.{digits}g}")
    return _e(x)


def _badge(status: str) -> str:
    text = {"agrees": "agrees", "disagrees": "disagrees", "skipped": "skipped"}[status]
    return f'<span class="badge {_e(status)}">{_e(text)}</span>'


# --- figures ------------------------------------------------------------------------------------
def finding_figure(plot: Mapping[str, Any]):
    """A matplotlib Figure of a finding's plot data (panels of lines with 95% bands, or bars).

    Each panel: ``title``, ``ylabel``, optional ``xlabel``, ``xlog``, ``zero`` (a line at 0),
    and either ``lines`` (``label``, ``x``, ``mean``, ``lo``, ``hi``) or ``bars`` (``label``,
    ``mean``, ``lo``, ``hi``). Missing bounds (one seed) draw no band or error bar.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    from droplab.report.figures import PALETTE

    panels = list(plot.get("panels", []))
    fig = Figure(figsize=(max(7.0, 4.8 * len(panels)), 3.3), layout="constrained")
    axes = fig.subplots(1, max(1, len(panels)), squeeze=False)[0]
    styles = ("-", "--", "-.", ":")
    markers = ("o", "s", "^", "D", "v")

    def ok(v: Any) -> bool:
        return isinstance(v, (int, float)) and math.isfinite(v)

    for ax, panel in zip(axes, panels):
        ax.set_title(panel.get("title", ""), loc="left", fontsize=10, fontweight="bold")
        ax.set_ylabel(panel.get("ylabel", ""))
        ax.grid(True, color="#e6e6e6", lw=0.8)
        ax.set_axisbelow(True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        if "lines" in panel:
            for j, line in enumerate(panel["lines"]):
                color = PALETTE[j % len(PALETTE)]
                xs, means = line["x"], line["mean"]
                ax.plot(xs, [m if ok(m) else math.nan for m in means], styles[j % len(styles)],
                        marker=markers[j % len(markers)], ms=4, lw=2, color=color, label=line["label"])
                lo = [lo if ok(lo) else m for lo, m in zip(line["lo"], means)]
                hi = [hi if ok(hi) else m for hi, m in zip(line["hi"], means)]
                if any(ok(v) for v in line["lo"]):
                    ax.fill_between(xs, lo, hi, color=color, alpha=0.18, lw=0)
            if panel.get("xlog"):
                ax.set_xscale("log")
            ax.set_xlabel(panel.get("xlabel", ""))
            if len(panel["lines"]) > 1:
                ax.legend(frameon=False, fontsize=8.5)
        elif "bars" in panel:
            bars = panel["bars"]
            xs = list(range(len(bars)))
            means = [b["mean"] if ok(b["mean"]) else 0.0 for b in bars]
            colors = [PALETTE[j % len(PALETTE)] for j in xs]
            ax.bar(xs, means, color=colors, alpha=0.85, width=0.6)
            for x, b in zip(xs, bars):
                if ok(b["lo"]) and ok(b["hi"]):
                    ax.errorbar([x], [b["mean"]], yerr=[[b["mean"] - b["lo"]], [b["hi"] - b["mean"]]],
                                color="#000000", capsize=4, lw=1.2)
            crowded = len(bars) > 3
            ax.set_xticks(xs, [b["label"] for b in bars], fontsize=8.5,
                          rotation=15 if crowded else 0, ha="right" if crowded else "center")
            finite = [v for b in bars for v in (b["lo"], b["mean"], b["hi"]) if ok(v)]
            if finite:
                lo, hi = min(finite), max(finite)
                pad = 0.15 * (hi - lo) if hi > lo else 1.0
                ax.set_ylim(max(0.0, lo - pad) if lo >= 0 else lo - pad, hi + pad)
        if panel.get("zero"):
            ax.axhline(0.0, color="#7f7f7f", lw=1, ls="--")
    return fig


# --- page ---------------------------------------------------------------------------------------
def _values_table(values: Mapping[str, Any]) -> str:
    if not values:
        return ""
    rows = []
    for label, est in values.items():
        if isinstance(est, Mapping):
            ci = (f"[{_num(est.get('lo'))}, {_num(est.get('hi'))}]"
                  if est.get("lo") is not None and math.isfinite(est.get("lo", math.nan)) else "&ndash;")
            rows.append(f"<tr><td>{_e(label)}</td><td class='num'>{_num(est.get('mean'))}</td>"
                        f"<td class='num'>{ci}</td><td class='num'>{_num(est.get('sd'))}</td>"
                        f"<td class='num'>{_num(est.get('n'))}</td></tr>")
        else:
            rows.append(f"<tr><td>{_e(label)}</td><td class='num'>{_num(est)}</td>"
                        f"<td></td><td></td><td></td></tr>")
    return ("<table><thead><tr><th>measured</th><th>mean</th><th>95% CI</th><th>sd</th>"
            "<th>seeds</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def _numbers(numbers: Mapping[str, Any]) -> str:
    if not numbers:
        return ""
    cells = ", ".join(f"{_e(k)} = {_num(v)}" for k, v in numbers.items())
    return f'<div class="small">numbers: {cells}</div>'


def _section(f: Any) -> str:
    from droplab.report.figures import figure_base64

    parts = [f'<section id="f{int(f.number)}">',
             f"<h2>{int(f.number)}. {_e(f.name)} {_badge(f.status)}</h2>",
             '<dl class="facts">',
             f"<dt>source</dt><dd>{_e(f.citation)}</dd>",
             f'<dt>published</dt><dd><div class="published">{_e(f.published.get("text", ""))}'
             f'{_numbers(f.published.get("numbers", {}))}</div></dd>']
    if f.skipped is not None:
        parts.append(f"<dt>skipped</dt><dd>{_e(f.skipped)}</dd>")
    else:
        parts.append(f'<dt>droplab measured</dt><dd><div class="measured">{_e(f.measured["text"])}</div></dd>')
    parts.append(f"<dt>criterion</dt><dd>{_e(f.criterion)} <span class='small'>(stated before the "
                 f"run)</span></dd>")
    if f.skipped is None:
        parts.append(f"<dt>verdict</dt><dd>{_badge(f.status)}</dd>")
    if f.setting:
        parts.append(f"<dt>setting</dt><dd>{_e(f.setting)}</dd>")
    parts.append(f"<dt>seeds</dt><dd>{_e(', '.join(str(s) for s in f.seeds))} "
                 f"<span class='small'>({_e(f'{f.seconds:.1f}')} s)</span></dd>")
    parts.append("</dl>")
    if f.notes:
        parts.append('<ul class="notes">' + "".join(f"<li>{_e(n)}</li>" for n in f.notes) + "</ul>")
    if f.plot and f.skipped is None:
        b64 = figure_base64(finding_figure(f.plot))
        parts.append(f'<figure><img data-figure="finding-{int(f.number)}" '
                     f'alt="{_e(f"Figure of finding {f.number}: {f.name}")}" '
                     f'src="data:image/png;base64,{b64}"></figure>')
    parts.append(_values_table(f.measured.get("values", {})))
    parts.append("</section>")
    return "\n".join(parts)


def _summary(report: Any) -> str:
    rows = []
    for f in report.findings:
        measured = f.measured["text"] if f.skipped is None else f"skipped: {f.skipped}"
        rows.append(
            f"<tr><td class='num'>{int(f.number)}</td><td><a href='#f{int(f.number)}'>{_e(f.name)}</a>"
            f"<div class='small'>{_e(f.citation)}</div></td><td>{_e(f.published.get('text', ''))}</td>"
            f"<td>{_e(measured)}</td><td>{_badge(f.status)}</td></tr>"
        )
    return ("<table><thead><tr><th>#</th><th>finding</th><th>published</th>"
            "<th>droplab measured (mean [95% CI] over seeds)</th><th>shape</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>")


def render_page(report: Any) -> str:
    """The whole report page as a string (see the module docstring).

    Args:
        report: a :class:`droplab.reproduce.runner.Report`.
    """
    from droplab import __version__

    c = report.counts
    m = report.machine
    meta = (f"{_e(report.size)} run &middot; seeds {_e(', '.join(str(s) for s in report.seeds))} "
            f"&middot; {_e(f'{report.seconds:.0f}')} s &middot; {c['agrees']} agree, "
            f"{c['disagrees']} disagree, {c['skipped']} skipped &middot; started {_e(report.created)}"
            f" &middot; torch {_e(m.get('torch'))}, {_e(m.get('cpus'))} CPUs, "
            f"{_e(m.get('torch_threads'))} torch thread(s)")
    sections = "\n".join(_section(f) for f in report.findings)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>droplab reproduce: published findings on dropout, rerun offline</title>
<style>{_CSS}</style>
</head>
<body>
<main>
<header>
<h1>droplab reproduce: published findings on dropout, rerun offline</h1>
<p class="meta">{meta}</p>
</header>
<p>Each finding reruns a scaled-down version of a published result on offline data (MNIST-1D,
Fashion-MNIST, a synthetic regression) and compares its <em>shape</em> with the paper's: the
absolute numbers of MNIST or ImageNet cannot be rerun here, so the published figures stand beside
droplab's measurements, not against them. Each criterion was fixed before the run; a finding that
disagrees is reported as measured. Intervals are 95% Student-t intervals over seeds; differences
are paired by seed (same initialization, data order and, for MLPs, dropout draws).</p>
<h2>Summary</h2>
{_summary(report)}
{sections}
<footer>Generated by droplab {_e(__version__)}. Self-contained: no scripts, no external resources.
Published numbers marked (S) were confirmed only through agreeing secondary copies.</footer>
</main>
</body>
</html>
"""


def write_page(html_path: str | os.PathLike[str], page: str, json_text: str) -> tuple[pathlib.Path, pathlib.Path]:
    """Write an HTML page and, beside it, its JSON (same name, ``.json``); return both paths.

    Raises:
        StoreError: a file cannot be written.
    """
    from droplab.errors import StoreError

    path = pathlib.Path(html_path)
    json_path = path.with_suffix(".json")
    if json_path == path:
        json_path = path.with_name(path.name + ".json")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(page, encoding="utf-8")
        json_path.write_text(json_text + "\n", encoding="utf-8")
    except OSError as exc:
        raise StoreError(f"cannot write the report to {path}: {exc.strerror}") from None
    return path, json_path

