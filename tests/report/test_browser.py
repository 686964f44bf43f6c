"""The report renders in a real browser: headless Chromium, driven over the DevTools protocol.

No Selenium and no driver binary: Chromium is started with ``--remote-debugging-pipe`` and
spoken to over two pipes (file descriptors 3 and 4, NUL-separated JSON messages), standard
library only. The test skips when Chromium is not installed (Debian: ``apt-get install
chromium``; ``.ci/run`` installs it when absent).

Set ``DROPLAB_SCREENSHOT=path.png`` to keep the full-page screenshot of the report.
"""

import base64
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time

import pytest

from droplab.report import FIGURES

_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
WIDTH = 1200


def _chromium() -> str | None:
    return next((path for name in _NAMES if (path := shutil.which(name))), None)


pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="the DevTools pipe is driven with POSIX file descriptors"),
    pytest.mark.skipif(_chromium() is None, reason="headless Chromium is not installed "
                       "(Debian: apt-get install chromium; .ci/run installs it when absent)"),
]


class _Browser:
    """Minimal DevTools-protocol client over --remote-debugging-pipe."""

    def __init__(self, exe: str, profile: str) -> None:
        r_cmd, self._w = os.pipe()
        self._r, w_res = os.pipe()

        def child() -> None:  # Chromium reads commands on fd 3 and writes replies to fd 4
            a, b = os.dup(r_cmd), os.dup(w_res)  # never dup2 an fd onto itself (keeps CLOEXEC)
            os.dup2(a, 3)
            os.dup2(b, 4)

        args = [
            exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--disable-extensions",
            "--disable-default-apps", "--mute-audio", f"--user-data-dir={profile}",
            f"--window-size={WIDTH},900", "--remote-debugging-pipe", "about:blank",
        ]
        self.proc = subprocess.Popen(args, close_fds=False, preexec_fn=child, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        os.close(r_cmd)
        os.close(w_res)
        self.stderr: list[str] = []
        self.events: list[dict] = []
        self._q: queue.Queue = queue.Queue()
        self._id = 0
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        for line in self.proc.stderr:
            self.stderr.append(line.decode(errors="replace"))

    def _read(self) -> None:
        buf = b""
        while True:
            chunk = os.read(self._r, 1 << 16)
            if not chunk:
                self._q.put(None)
                return
            buf += chunk
            while b"\0" in buf:
                msg, buf = buf.split(b"\0", 1)
                self._q.put(json.loads(msg))

    def _next(self, deadline: float) -> dict:
        try:
            msg = self._q.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError("Chromium did not answer in time:\n" + "".join(self.stderr[-15:])) from None
        if msg is None:
            raise AssertionError("Chromium closed the pipe:\n" + "".join(self.stderr[-15:]))
        return msg

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 60) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        try:
            os.write(self._w, json.dumps(msg).encode() + b"\0")
        except BrokenPipeError:
            time.sleep(0.5)
            raise AssertionError("Chromium exited:\n" + "".join(self.stderr[-15:])) from None
        deadline = time.monotonic() + timeout
        while True:
            m = self._next(deadline)
            if m.get("id") == self._id:
                if "error" in m:
                    raise AssertionError(f"{method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def wait_for(self, event: str, since: int, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        seen = since
        while True:
            for e in self.events[seen:]:
                if e.get("method") == event:
                    return e
            seen = len(self.events)
            e = self._next(deadline)
            self.events.append(e)
            if e.get("method") == "Page.javascriptDialogOpening":  # a dialog blocks loading: dismiss it
                self.send("Page.handleJavaScriptDialog", {"accept": False}, session=e.get("sessionId"))

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except AssertionError:
            pass
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._w)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    b = _Browser(_chromium(), str(tmp_path_factory.mktemp("chromium-profile")))
    yield b
    b.close()


_CHECK = """JSON.stringify([...document.images].map(i => {
  const r = i.getBoundingClientRect();
  return {figure: i.dataset.figure || null, alt: i.alt, complete: i.complete,
          w: i.naturalWidth, h: i.naturalHeight, shownW: r.width, shownH: r.height};
}))"""


def _open(b: _Browser, path) -> tuple[str, list[dict]]:
    """Open ``path`` in a fresh tab; return the session and the events it produced."""
    target = b.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = b.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    for domain in ("Page", "Runtime", "Log", "Network"):
        b.send(f"{domain}.enable", session=session)
    b.send("Emulation.setDeviceMetricsOverride",
           {"width": WIDTH, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session=session)
    start = len(b.events)
    b.send("Page.navigate", {"url": path.resolve().as_uri()}, session=session)
    b.wait_for("Page.loadEventFired", start)
    time.sleep(0.3)  # late console messages
    b.send("Runtime.evaluate", {"expression": "1"}, session=session)  # flush queued events
    return session, [e for e in b.events[start:] if e.get("sessionId") == session]


def _problems(events: list[dict]) -> list[str]:
    out = []
    for e in events:
        m, p = e.get("method"), e.get("params", {})
        if m == "Runtime.exceptionThrown":
            out.append(f"exception: {p['exceptionDetails'].get('text')}")
        elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert", "warning"):
            out.append(f"console.{p['type']}: {[a.get('value') for a in p.get('args', [])]}")
        elif m == "Log.entryAdded" and p["entry"]["level"] in ("error", "warning"):
            out.append(f"log {p['entry']['level']}: {p['entry']['text']}")
        elif m == "Page.javascriptDialogOpening":
            out.append(f"dialog: {p.get('message')}")
        elif m == "Network.loadingFailed":
            out.append(f"failed load: {p.get('errorText')}")
    return out


def test_report_renders_in_headless_chromium(browser, helps_report, tmp_path):
    session, events = _open(browser, helps_report.html)
    assert _problems(events) == []
    # nothing but the page itself and its inline images was requested
    urls = [e["params"]["request"]["url"] for e in events if e.get("method") == "Network.requestWillBeSent"]
    assert urls and all(u.startswith(("file:", "data:")) for u in urls), urls
    images = json.loads(browser.send("Runtime.evaluate", {"expression": _CHECK, "returnByValue": True},
                                     session=session)["result"]["value"])
    assert [i["figure"] for i in images] == list(FIGURES)
    for i in images:
        assert i["complete"] and i["alt"], i
        assert i["w"] > 400 and i["h"] > 100, i  # decoded, non-empty
        assert i["shownW"] > 400 and i["shownH"] > 50, i  # laid out and visible
    title = browser.send("Runtime.evaluate", {"expression": "document.title", "returnByValue": True},
                         session=session)["result"]["value"]
    assert title == "droplab report: synthetic-helps"
    metrics = browser.send("Page.getLayoutMetrics", session=session)
    height = (metrics.get("cssContentSize") or metrics["contentSize"])["height"]
    shot = browser.send("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": WIDTH, "height": height, "scale": 1},
    }, session=session)
    png = base64.b64decode(shot["data"])
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and height > 2000
    keep = os.environ.get("DROPLAB_SCREENSHOT")
    (tmp_path / "report.png").write_bytes(png)
    if keep:
        with open(keep, "wb") as fh:
            fh.write(png)


def test_hostile_names_stay_text_in_the_browser(browser, messy_report):
    session, events = _open(browser, messy_report.html)
    assert _problems(events) == []  # an unescaped <script>alert(...)> would open a dialog
    value = browser.send("Runtime.evaluate", {
        "expression": "JSON.stringify([document.scripts.length, document.title, document.images.length])",
        "returnByValue": True}, session=session)["result"]["value"]
    scripts, title, n_images = json.loads(value)
    assert scripts == 0 and title == 'droplab report: <script>alert("x")</script>&$\\frac$'
    assert n_images == len(FIGURES)
