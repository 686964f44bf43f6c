"""Every public name of droplab appears in the built API reference.

The list of names comes from the packages themselves (their ``__all__``), not from the docs, so a
name added to a package after the docs were last built fails here until the site is rebuilt, and
a name the generator dropped fails too. Each name must be described (a ``<dt>`` whose signature
name is the exported name) on its module's page; re-exported names link to the module that
defines them.
"""

from __future__ import annotations

import html
import importlib
import re

import pytest

#: The packages the API reference must cover (the issue's list); droplab.regularize,
#: droplab.reproduce and the others the generator finds are covered too.
PACKAGES = ("droplab", "droplab.nn", "droplab.functional", "droplab.sweep", "droplab.inference",
            "droplab.stats", "droplab.data", "droplab.models", "droplab.train", "droplab.report",
            "droplab.regularize", "droplab.reproduce", "droplab.errors")

_SIG = re.compile(r'<span class="sig-name descname"><span class="pre">([^<]+)</span>')


def _described(page: str) -> set[str]:
    return {html.unescape(m) for m in _SIG.findall(page)}


@pytest.mark.parametrize("package", PACKAGES)
def test_every_export_is_on_its_api_page(site, package):
    mod = importlib.import_module(package)
    page_path = site / "api" / f"{package}.html"
    assert page_path.is_file(), f"no API page for {package}"
    page = page_path.read_text(encoding="utf-8")
    names = [n for n in mod.__all__ if n != "__version__"]
    missing = sorted(set(names) - _described(page))
    assert not missing, f"{package}: exported but not in {page_path.name}: {missing}"


def test_every_public_module_has_a_page(site):
    import sys

    sys.path.insert(0, str(site.parents[1] / "_ext"))
    try:
        from droplab_api import public_modules
    finally:
        sys.path.pop(0)
    for module in public_modules():
        assert (site / "api" / f"{module}.html").is_file(), module


def test_every_layer_has_a_page_with_its_paper(site):
    import torch

    import droplab.nn as dn

    for name in dn.__all__:
        obj = getattr(dn, name)
        if not (isinstance(obj, type) and issubclass(obj, torch.nn.Module)) or name == "StochasticLayer":
            continue
        page = (site / "api" / "layers" / f"{name}.html").read_text(encoding="utf-8")
        assert f"droplab.nn.{name}" in page
        # the docstring names its paper: a year, and an author from the first docstring lines
        assert re.search(r"(19|20)\d\d", page), name


def test_findings_page_lists_every_finding(site):
    from droplab.reproduce import FINDINGS

    page = (site / "findings.html").read_text(encoding="utf-8")
    # the text as shown: tags dropped, entities decoded, Sphinx's typographic quotes undone
    text = html.unescape(re.sub(r"<[^>]+>", "", page)).translate({0x2019: "'", 0x2018: "'",
                                                                0x201C: '"', 0x201D: '"'})
    for number, spec in FINDINGS.items():
        assert f'id="finding-{number}"' in page, number
        assert spec.name in text, spec.name
