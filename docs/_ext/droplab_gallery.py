"""sphinx-gallery hooks: show the figures droplab returns, and keep examples apart.

droplab draws its figures on :class:`matplotlib.figure.Figure` objects without pyplot (see
:mod:`droplab.report`), so sphinx-gallery's matplotlib scraper, which looks at pyplot's open
figures, does not see them. :func:`figure_scraper` shows, after each code block, every Figure the
example holds in a global variable (directly, or in a dict, list or tuple of them) that it has not
shown yet -- what a notebook would display -- and every ``pathlib.Path`` to a PNG file it holds
(a figure a script wrote to disk). Figures drawn with pyplot are left to the matplotlib scraper.

:func:`reset` runs before each example: one torch thread (a shared 2-core machine gains nothing
from more for models this small). Examples write their studies to temporary folders, never into
the source tree.
"""

from __future__ import annotations

import shutil
from pathlib import Path

_shown: dict[str, set[int]] = {}


def _figures(value, depth: int = 0):
    from matplotlib.figure import Figure

    if isinstance(value, Figure) or (isinstance(value, Path) and value.suffix == ".png"
                                     and value.is_file()):
        yield value
    elif depth < 1 and isinstance(value, dict):
        for v in value.values():
            yield from _figures(v, depth + 1)
    elif depth < 1 and isinstance(value, (list, tuple)):
        for v in value:
            yield from _figures(v, depth + 1)


def figure_scraper(block, block_vars, gallery_conf):
    """Save the example's not-yet-shown Figure objects; return their reST."""
    from matplotlib import pyplot as plt
    from sphinx_gallery.scrapers import figure_rst

    src = block_vars["src_file"]
    seen = _shown.setdefault(src, set())
    managed = {id(plt.figure(n)) for n in plt.get_fignums()}  # pyplot's: the other scraper's
    paths = []
    for name, value in list(block_vars["example_globals"].items()):
        if name.startswith("_"):
            continue
        for fig in _figures(value):
            key = hash(str(fig.resolve())) if isinstance(fig, Path) else id(fig)
            if key in seen or key in managed:
                continue
            seen.add(key)
            path = next(block_vars["image_path_iterator"])
            if isinstance(fig, Path):  # a PNG the example wrote (what its script saves)
                shutil.copyfile(fig, path)
            else:
                fig.savefig(path, dpi=100)
            paths.append(path)
    # one full-width image each: droplab's figures are wide, and a grid of thumbnails hides them
    return "".join(figure_rst([path], gallery_conf["src_dir"]) for path in paths)


_cpu_start: dict[str, float] = {}
#: example file -> (CPU seconds, wall seconds) of its run in this process (``cpu_times``).
cpu_times: dict[str, tuple[float, float]] = {}


def reset(gallery_conf, fname, when=None):
    """Before each example: one torch thread, nothing shown yet; after it: its CPU time.

    CPU time (user + system of this process) is recorded beside sphinx-gallery's wall time
    because on a shared machine the wall time mostly measures the other jobs.
    """
    import time

    import torch

    if when == "after":
        cpu0, wall0 = _cpu_start.pop(fname, (time.process_time(), time.perf_counter()))
        cpu_times[fname] = (time.process_time() - cpu0, time.perf_counter() - wall0)
        return
    torch.set_num_threads(1)
    _shown.clear()
    _cpu_start[fname] = (time.process_time(), time.perf_counter())


def _report_times(app, exception) -> None:
    """After the build: one line per example with its CPU and wall seconds, and the totals."""
    if exception is not None or not cpu_times:
        return
    from sphinx.util import logging

    lines = [f"{cpu:7.1f} {wall:7.1f}  {Path(f).name}" for f, (cpu, wall) in sorted(cpu_times.items())]
    cpu = sum(c for c, _ in cpu_times.values())
    wall = sum(w for _, w in cpu_times.values())
    lines.append(f"{cpu:7.1f} {wall:7.1f}  total ({len(cpu_times)} examples)")
    out = Path(app.outdir).parent / "gallery-times.txt"
    out.write_text("cpu_s  wall_s  example\n" + "\n".join(lines) + "\n")
    logging.getLogger(__name__).info("gallery: %d examples, %.0f s CPU, %.0f s wall (%s)",
                                     len(cpu_times), cpu, wall, out)


def setup(app):
    app.connect("build-finished", _report_times)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
