"""The built documentation site (``make docs`` writes it to docs/_build/html).

The tests here read the built pages; they skip with a reason when the site has not been built
or the ``docs`` extra (Sphinx) is not installed. ``.ci/run`` runs ``make docs`` before the test
suite, so in CI they run.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HTML = ROOT / "docs" / "_build" / "html"


@pytest.fixture(scope="session")
def site() -> Path:
    if importlib.util.find_spec("sphinx") is None:
        pytest.skip("the docs extra is not installed (DROPLAB_EXTRAS=docs make setup, or make docs)")
    if not (HTML / "index.html").is_file():
        pytest.skip(f"the documentation is not built ({HTML / 'index.html'} missing): run make docs")
    return HTML
