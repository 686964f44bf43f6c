"""
Time series: locked dropout in an LSTM forecasting sunspots
===========================================================

``examples/forecast_sunspots.py`` forecasts next year's sunspot number from the previous 20
years with an LSTM (statsmodels ships the series): no dropout, a fresh mask per time step
(Zaremba et al. 2014, arXiv:1409.2329), and LockedDropout, one mask per sequence (Gal &
Ghahramani 2016, arXiv:1512.05287). Full size (150 epochs, 3 seeds, about a minute)::

    python examples/forecast_sunspots.py

Here: 30 epochs, 2 seeds.
"""

# %%
import tempfile
from pathlib import Path

from _examples import examples_dir

examples_dir()
import forecast_sunspots  # noqa: E402

out = Path(tempfile.mkdtemp(prefix="droplab-sunspots-"))
forecast_sunspots.main(["--epochs", "30", "--seeds", "2", "--out", str(out)])
forecast = out / "forecast_sunspots.png"
