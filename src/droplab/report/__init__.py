"""Reports of a study: diagnostics in plain sentences, figures, one HTML page, a terminal summary.

* :func:`load_study` reads a study file once (read-only; works while a sweep writes).
* :func:`diagnose` turns its curves and results into sentences and a recommendation.
* :func:`make_figures` draws the figures; :func:`write_report` writes the self-contained page
  (``droplab report STUDY.db -o report.html [--png DIR]``).
* :func:`print_summary` prints the terminal summary (``droplab report STUDY.db --text``; the
  end of ``droplab sweep``).

Example::

    from droplab.report import write_report, print_summary
    write_report("out/study.db", "out/report.html")
    print_summary("out/study.db")
"""

from droplab.report.diagnostics import Diagnosis, Finding, diagnose
from droplab.report.figures import FIGURES, figure_png, make_figures
from droplab.report.html import export_pngs, render_html, write_report
from droplab.report.study import Configuration, Run, Study, load_study
from droplab.report.text import print_summary, summary_table

__all__ = [
    "load_study",
    "Study",
    "Configuration",
    "Run",
    "diagnose",
    "Diagnosis",
    "Finding",
    "FIGURES",
    "make_figures",
    "figure_png",
    "render_html",
    "write_report",
    "export_pngs",
    "print_summary",
    "summary_table",
]
