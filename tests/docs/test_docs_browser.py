"""The built site renders in headless Chromium: no console errors, figures shown, links resolve.

Opens four pages of ``docs/_build/html`` -- the index, the guide's "choosing the rate" page, one
gallery page and one API page -- with the DevTools-pipe client of ``tests/report/test_browser.py``
(standard library only). Skips when the site is not built, the docs extra is absent, or Chromium
is not installed. ``DROPLAB_DOCS_SCREENSHOT=path.png`` keeps a full-page screenshot of the
"choosing the rate" page.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest


def _load_client():
    path = Path(__file__).resolve().parents[1] / "report" / "test_browser.py"
    spec = importlib.util.spec_from_file_location("_droplab_report_browser", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_client = _load_client()

pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="the DevTools pipe is driven with POSIX file descriptors"),
    pytest.mark.skipif(_client._chromium() is None, reason="headless Chromium is not installed "
                       "(Debian: apt-get install chromium; .ci/run installs it when absent)"),
]

PAGES = {
    "index": "index.html",
    "guide": "guide/choosing-the-rate.html",
    "gallery": "auto_gallery/plot_02_choose_rate.html",
    "api": "api/droplab.nn.html",
}

_IMAGES = """JSON.stringify([...document.querySelectorAll('article img')].map(i => {
  const r = i.getBoundingClientRect();
  return {src: i.getAttribute('src'), alt: i.alt, complete: i.complete, w: i.naturalWidth,
          h: i.naturalHeight, shownW: r.width, shownH: r.height};
}))"""

_LINKS = """JSON.stringify([...document.querySelectorAll('a[href]')].map(a => a.href))"""

_IDS = """JSON.stringify([...document.querySelectorAll('[id]')].map(e => e.id))"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    b = _client._Browser(_client._chromium(), str(tmp_path_factory.mktemp("chromium-profile")))
    yield b
    b.close()


def _eval(browser, session, expression):
    value = browser.send("Runtime.evaluate", {"expression": expression, "returnByValue": True},
                         session=session)["result"]["value"]
    return json.loads(value)


def _ids_of(page: Path, cache: dict) -> set[str]:
    """Element ids of a built page (read from the HTML: enough for Sphinx's static ids)."""
    import re

    if page not in cache:
        cache[page] = set(re.findall(r'\bid="([^"]+)"', page.read_text(encoding="utf-8")))
    return cache[page]


@pytest.mark.parametrize("name", list(PAGES))
def test_page_renders_without_errors(browser, site, name, tmp_path):
    page = site / PAGES[name]
    assert page.is_file(), page
    session, events = _client._open(browser, page)
    assert _client._problems(events) == [], name
    # nothing but the site's own files (and inline data) is requested: it works offline
    urls = [e["params"]["request"]["url"] for e in events if e.get("method") == "Network.requestWillBeSent"]
    assert urls and all(u.startswith(("file:", "data:")) for u in urls), urls

    images = _eval(browser, session, _IMAGES)
    if name in ("guide", "gallery"):
        assert len(images) >= (2 if name == "guide" else 1), images
        for img in images:
            assert img["complete"] and img["alt"], img
            assert img["w"] > 300 and img["h"] > 150, img  # decoded, a real figure
            assert img["shownW"] > 200 and img["shownH"] > 80, img  # laid out and visible

    links = _eval(browser, session, _LINKS)
    internal = [u for u in links if u.startswith("file:")]
    assert internal, "no internal links"
    ids = set(_eval(browser, session, _IDS))
    cache: dict = {}
    broken = []
    for url in internal:
        parsed = urlparse(url)
        target = Path(unquote(parsed.path))
        if not target.exists():
            broken.append(url)
        elif parsed.fragment and target.suffix == ".html":
            known = ids if target == page else _ids_of(target, cache)
            if unquote(parsed.fragment) not in known:
                broken.append(url)
    assert not broken, f"{name}: links that do not resolve: {broken}"

    if name == "guide":
        metrics = browser.send("Page.getLayoutMetrics", session=session)
        height = (metrics.get("cssContentSize") or metrics["contentSize"])["height"]
        shot = browser.send("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": _client.WIDTH, "height": height, "scale": 1},
        }, session=session)
        png = base64.b64decode(shot["data"])
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        (tmp_path / "choosing-the-rate.png").write_bytes(png)
        keep = os.environ.get("DROPLAB_DOCS_SCREENSHOT")
        if keep:
            Path(keep).write_bytes(png)
