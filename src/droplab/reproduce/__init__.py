"""Rerun the published findings on dropout offline, side by side with the papers.

``droplab reproduce [--quick] [--only 1,3,5] [--json] [-o reproduce.html] [--seeds N]`` runs
scaled-down versions of sixteen findings (Srivastava et al. 2014's Tables 2, 9, 10 and Figs. 9-11;
DropConnect, SpatialDropout, DropBlock; variational RNN dropout; concrete dropout; Prechelt's
early stopping; robustness to noise; AdamW; early and late dropout, R-Drop and LayerDrop in
:mod:`droplab.reproduce.findings_time`) across seeds and reports, for each, the published
figure, droplab's measurement with 95% intervals, and whether the shapes agree under a
criterion fixed before the run.

- :func:`reproduce` -- run findings, get a :class:`Report` (``report.write("x.html")`` writes
  the page and ``x.json``; :func:`print_table` prints the terminal table).
- :data:`FINDINGS` -- the findings by number (:class:`Spec`: citation, published, criterion).
- :class:`Finding` -- one result; :class:`Context` -- sizes, seeds, data folders.
- :func:`render_page` -- the HTML page of a report.

Example::

    from droplab.reproduce import reproduce, print_table
    report = reproduce([1, 5], size="quick")
    print_table(report)
    report.write("reproduce.html")
"""

from droplab.reproduce.findings import FINDINGS, SIZES, Context, Finding, Spec
from droplab.reproduce.html import render_page
from droplab.reproduce.runner import Report, parse_only, print_table, reproduce

__all__ = [
    "reproduce",
    "Report",
    "print_table",
    "parse_only",
    "FINDINGS",
    "SIZES",
    "Spec",
    "Finding",
    "Context",
    "render_page",
]
