"""sphinx-gallery hooks: show the figures droplab returns, and keep examples apart.

droplab draws its figures on :class:`matplotlib.figure.Figure` objects without pyplot (see
:mod:`droplab.report`), so sphinx-gallery's matplotlib scraper, which looks at pyplot's open
figures, does not see them. :func:`figure_scraper` shows, after each code block, every Figure the
example holds in a global variable (directly, or in a dict, list or tuple of them) that it has not
shown yet -- what a notebook would display. Figures drawn with pyplot are left to the matplotlib
scraper.

:func:`reset` runs before each example: one torch thread (a shared 2-core machine gains nothing
from more for models this small) and a fresh scratch folder that examples write their studies to
(``DROPLAB_GALLERY_TMP``), so no example writes into the source tree.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

_shown: dict[str, set[int]] = {}


def _figures(value, depth: int = 0):
    from matplotlib.figure import Figure

    if isinstance(value, Figure):
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
            if id(fig) in seen or id(fig) in managed:
                continue
            seen.add(id(fig))
            path = next(block_vars["image_path_iterator"])
            fig.savefig(path, dpi=100)
            paths.append(path)
    return figure_rst(paths, gallery_conf["src_dir"])


def reset(gallery_conf, fname, when=None):
    """Before each example: one torch thread, a clean scratch folder, nothing shown yet."""
    import torch

    torch.set_num_threads(1)
    _shown.clear()
    root = Path(tempfile.gettempdir()) / "droplab-gallery"
    work = root / Path(fname).stem
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    os.environ["DROPLAB_GALLERY_TMP"] = str(work)
