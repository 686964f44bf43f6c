"""Sphinx configuration of droplab's documentation site (``make docs``).

Sphinx + sphinx-gallery (as torchvision and PyTorch do): droplab's docstrings are written in
reStructuredText with Google-style sections and ``:func:``/``:class:`` roles, which Sphinx's
autodoc and napoleon read as they are. The build is offline and strict: ``make docs`` runs
``sphinx-build -W --keep-going -n`` (warnings are errors, every droplab cross-reference must
resolve, and every exported name must have a docstring: see ``_ext/droplab_api.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))

import droplab  # noqa: E402

project = "droplab"
author = "the droplab authors"
copyright = "2026, the droplab authors"  # noqa: A001
release = version = droplab.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx_gallery.gen_gallery",
    "droplab_api",
    "droplab_findings",
    "droplab_gallery",
]

# No math markup anywhere: Sphinx would add MathJax from a CDN to such a page, and the site is
# read offline. Formulas are written as code.

templates_path: list[str] = []
exclude_patterns = ["_build", "layer_definitions", "_generated"]
html_theme = "furo"
html_title = f"droplab {release}"
html_static_path: list[str] = []
html_show_sourcelink = False
html_copy_source = False
html_theme_options = {"navigation_with_keys": True}

# --- autodoc / napoleon ---------------------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True
autodoc_inherit_docstrings = False
autodoc_default_options = {"exclude-members": "forward, extra_repr, __init__"}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True
napoleon_use_rtype = False
napoleon_custom_sections = ["Shape", ("Example", "example"), ("Examples", "examples")]

# --- strictness -----------------------------------------------------------------------------
# Every reference into droplab must resolve; torch/numpy/stdlib targets cannot be checked
# offline (no intersphinx inventories are fetched), so only those are let through.
nitpicky = True
# Private names (a component starting with "_") have no page by design.
nitpick_ignore_regex = [(r"py:.*", r"(?!droplab\b)[\w.~]*.*"), (r"py:.*", r".*\._\w+.*")]

# --- the executed gallery -------------------------------------------------------------------
# Every example runs on every build (that is what makes the figures real); their sizes are set
# so that the whole build stays within about five minutes on a 2-core CPU.
sphinx_gallery_conf = {
    "examples_dirs": ["gallery"],
    "gallery_dirs": ["auto_gallery"],
    "filename_pattern": r"/plot_",
    "ignore_pattern": r"(^|/)_[^/]*\.py$",
    "within_subsection_order": "FileNameSortKey",
    "image_scrapers": ("matplotlib", "droplab_gallery.figure_scraper"),
    "reset_modules": ("matplotlib", "droplab_gallery.reset"),
    "reset_modules_order": "both",
    "abort_on_example_error": True,
    "download_all_examples": False,
    "show_signature": False,
    "remove_config_comments": True,
    "min_reported_time": 0,
    "show_memory": False,
    "plot_gallery": "True",
    "matplotlib_animations": False,
    "capture_repr": ("_repr_html_",),
}
