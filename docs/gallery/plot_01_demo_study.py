"""
The demo study: which hidden dropout rate for an MLP on MNIST-1D?
=================================================================

``make demo`` sweeps the hidden dropout rate of a 256-256 MLP on MNIST-1D over six rates and
five seeds, then writes the HTML report. This page runs the same sweep at a smaller size
(1000 training examples, 3 seeds, 40 epochs) through the same command line, and shows the five
figures of the report as they came out of this build.

The full-size study::

    make demo                         # or: droplab demo
    droplab sweep --dropout hidden=0,0.1,0.2,0.3,0.4,0.5 --seeds 5 --store study.db
    droplab report study.db -o report.html --png figures/
"""

# %%
# The sweep, as a command
# -----------------------
# ``droplab.cli.main`` is the ``droplab`` command; the list is what you would type after it.
# Configurations that share an architecture train together as one vectorized population.
import tempfile
from pathlib import Path

from droplab.cli import main as droplab

work = Path(tempfile.mkdtemp(prefix="droplab-demo-"))
study_path = work / "study.db"
droplab([
    "sweep", "--dropout", "hidden=0,0.1,0.2,0.3,0.4,0.5", "--seeds", "3", "--subsample", "1000",
    "--hidden", "256,256", "--optimizer", "adam", "--lr", "1e-3", "--batch-size", "100",
    "--epochs", "40", "--store", str(study_path), "--quiet",
])

# %%
# The report's figures
# --------------------
# ``droplab report study.db --png DIR`` writes these five figures; in Python they are
# :func:`droplab.report.make_figures` of :func:`droplab.report.load_study`. In order:
# the dropout-response curve (the selected rate is the star, the one-standard-error choice the
# diamond), the learning curves, the generalization gap, the paired differences against no
# dropout, and the cost.
from droplab.report import diagnose, load_study, make_figures

study = load_study(study_path)
figures = make_figures(study)

# %%
# What the report concludes
# -------------------------
# :func:`droplab.report.diagnose` reads the study: over- and underfitting, whether dropout
# helped beyond seed noise, and what to do next.
diagnosis = diagnose(study)
for finding in diagnosis.findings:
    print(f"[{finding.kind}] {finding.sentence}")
print("recommendation:", diagnosis.recommendation)
