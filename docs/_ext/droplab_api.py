"""Generate the API reference from droplab's ``__all__`` lists, and check it while building.

Nothing in the reference is listed by hand: at ``builder-inited`` this extension imports every
public module of droplab (the top level and each public submodule or subpackage that has an
``__all__``), and writes one page per module under ``api/`` and one page per layer of
:mod:`droplab.nn` under ``api/layers/``. A name added to an ``__all__`` later appears on the next
build without touching the docs. The pages are generated (git ignores them).

Each exported name is documented once, on the page of the module it belongs to (the documented
module whose name is the longest prefix of the object's ``__module__``); other modules that
re-export it get a short entry linking there, so there are no duplicate descriptions.

Strictness (``sphinx-build -W`` turns these into errors):

* an exported name that does not resolve, or has no docstring (data: a ``#:`` comment in the
  module that defines it), is a warning;
* with ``nitpicky = True`` every cross-reference into ``droplab`` that does not resolve is a
  warning (references to torch/numpy/the standard library are not checked: no inventories are
  fetched, the build is offline).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path

from sphinx.pycode import ModuleAnalyzer
from sphinx.util import logging

logger = logging.getLogger(__name__)

#: Public modules that are not part of the API reference (the CLI is documented by its --help).
SKIP = {"droplab.cli", "droplab.__main__"}

#: Submodules with a page of their own although their package does not re-export them (users
#: import from them directly, as the README shows).
EXTRA_MODULES = ("droplab.sweep.ray_executor",)

#: Hand-written mathematical definitions of layers, by class name (``layers/<Name>.rst`` in the
#: docs source), included on the layer's page when present.
DEFINITIONS_DIR = "layer_definitions"


def public_modules() -> list[str]:
    """``droplab`` and each public submodule/subpackage with an ``__all__``, in name order."""
    import droplab

    names = ["droplab"]
    for info in pkgutil.iter_modules(droplab.__path__):
        name = f"droplab.{info.name}"
        if info.name.startswith("_") or name in SKIP:
            continue
        mod = importlib.import_module(name)
        if hasattr(mod, "__all__"):
            names.append(name)
    return sorted(names + list(EXTRA_MODULES), key=lambda n: (n != "droplab", n))


def exports(module: str) -> list[str]:
    """The names in ``module.__all__`` (``__version__`` left out: it is shown on the index)."""
    mod = importlib.import_module(module)
    return [n for n in mod.__all__ if n != "__version__"]


def _kind(obj) -> str:
    if inspect.isclass(obj):
        return "exception" if issubclass(obj, BaseException) else "class"
    if inspect.isfunction(obj) or inspect.isbuiltin(obj):
        return "function"
    if callable(obj) and hasattr(obj, "__wrapped__"):
        return "function"
    return "data"


def home(obj, module: str, modules: list[str]) -> str:
    """The documented module an exported object belongs to (data: the exporting module)."""
    own = getattr(obj, "__module__", None) if _kind(obj) != "data" else None
    if not own:
        return module
    best = max((m for m in modules if own == m or own.startswith(m + ".")), key=len, default=module)
    return best


def data_doc(module: str, name: str) -> list[str] | None:
    """The ``#:`` comment of ``name``, looked up in ``module`` and in its submodules, nested ones too."""
    mod = importlib.import_module(module)
    value = getattr(mod, name)
    candidates = [module]
    if hasattr(mod, "__path__"):
        candidates += [i.name for i in pkgutil.walk_packages(mod.__path__, prefix=f"{module}.")]
    for cand in candidates:
        try:
            sub = importlib.import_module(cand)
        except Exception:  # pragma: no cover - an optional dependency missing
            continue
        if getattr(sub, name, object()) is not value:
            continue
        try:
            docs = ModuleAnalyzer.for_module(cand).find_attr_docs()
        except Exception:
            continue
        lines = docs.get(("", name))
        if lines and "".join(lines).strip():
            return list(lines)
    return None


def _title(text: str, ch: str = "=") -> str:
    return f"{text}\n{ch * len(text)}\n"


def layer_names() -> list[str]:
    """Exported :mod:`droplab.nn` names that are ``nn.Module`` classes (one page each)."""
    import torch.nn

    import droplab.nn as dn

    out = []
    for name in dn.__all__:
        obj = getattr(dn, name)
        if inspect.isclass(obj) and issubclass(obj, torch.nn.Module) and name != "StochasticLayer":
            out.append(name)
    return out


def _first_line(obj) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def _functional_for(obj) -> str | None:
    """The :mod:`droplab.functional` function a layer names in its docstring, if any."""
    import re

    import droplab.functional as F

    doc = obj.__doc__ or ""
    for m in re.finditer(r":func:`~?droplab\.functional\.(\w+)`", doc):
        if m.group(1) in F.__all__:
            return m.group(1)
    return None


def write_pages(srcdir: Path) -> dict[str, list[str]]:
    """Write ``api/*.rst`` and ``api/layers/*.rst``; return module -> exported names."""
    api = srcdir / "api"
    (api / "layers").mkdir(parents=True, exist_ok=True)
    modules = public_modules()
    table: dict[str, list[str]] = {m: exports(m) for m in modules}
    written: set[Path] = set()

    def write(path: Path, text: str) -> None:
        written.add(path)
        if not path.exists() or path.read_text() != text:  # unchanged files keep their mtime
            path.write_text(text)

    index = [
        ".. Generated by docs/_ext/droplab_api.py from the modules' __all__; do not edit.\n",
        _title("API reference"),
        "Every public name of droplab, generated from its docstring. Each module's page lists "
        "the names in its ``__all__``; a name re-exported by several modules is described on "
        "the page of the module that defines it and linked from the others.\n",
        ".. toctree::\n   :maxdepth: 1\n\n" + "".join(f"   {m}\n" for m in modules) + "   layers/index\n",
    ]
    write(api / "index.rst", "\n".join(index))

    for module in modules:
        mod = importlib.import_module(module)
        lines = [
            f".. Generated by docs/_ext/droplab_api.py from {module}.__all__; do not edit.\n",
            _title(f"``{module}``"),
            f".. automodule:: {module}\n   :no-members:\n",
            "",
        ]
        if module == "droplab.nn":
            lines.append("Each layer also has a page with its definition and paper: "
                         ":doc:`layers/index`.\n")
        lines.append(".. currentmodule:: " + module + "\n")
        summary = [".. list-table::\n   :widths: 30 70\n\n"]
        body: list[str] = []
        for name in table[module]:
            try:
                obj = getattr(mod, name)
            except AttributeError:
                logger.warning("%s.__all__ names %r, which does not resolve", module, name,
                               type="droplab", subtype="api")
                continue
            kind = _kind(obj)
            where = home(obj, module, modules)
            role = {"class": "class", "exception": "exc", "function": "func", "data": "data"}[kind]
            if kind != "data" and not (obj.__doc__ or "").strip():
                logger.warning("%s.%s has no docstring", module, name, type="droplab", subtype="api")
            if kind == "data":
                doc = data_doc(module, name) or [""]
                first = doc[0].strip()
            else:
                first = _first_line(obj)
            summary.append(f"   * - :{role}:`{name}`\n     - {first}\n")
            if where != module:
                body.append(
                    f".. py:{'function' if kind == 'function' else kind}:: {name}\n   :no-index:\n\n"
                    f"   Re-exported from :mod:`{where}`: see :{role}:`{where}.{name}`.\n"
                )
                continue
            if kind == "data":
                doc = data_doc(module, name)
                if doc is None:
                    logger.warning("%s.%s (data) has no #: doc comment", module, name,
                                   type="droplab", subtype="api")
                    doc = []
                text = "".join(f"   {ln}\n" if ln.strip() else "\n" for ln in doc)
                body.append(f".. py:data:: {name}\n\n{text}\n   Value: ``{_short_repr(obj)}``\n")
            elif kind in ("class", "exception"):
                body.append(f".. auto{kind}:: {name}\n   :members:\n   :show-inheritance:\n")
            else:
                body.append(f".. autofunction:: {name}\n")
        lines.append("".join(summary))
        lines.append("\n".join(body))
        write(api / f"{module}.rst", "\n".join(lines))

    layers = layer_names()
    defs = srcdir / DEFINITIONS_DIR
    lidx = [
        ".. Generated by docs/_ext/droplab_api.py from droplab.nn.__all__; do not edit.\n",
        _title("Layers, one page each"),
        "Every ``nn.Module`` exported by :mod:`droplab.nn`: its definition, its paper (in the "
        "docstring), its functional form and its arguments.\n",
        ".. toctree::\n   :maxdepth: 1\n\n" + "".join(f"   {n}\n" for n in layers),
    ]
    write(api / "layers" / "index.rst", "\n".join(lidx))
    import droplab.nn as dn

    for name in layers:
        obj = getattr(dn, name)
        page = [
            ".. Generated by docs/_ext/droplab_api.py; do not edit.\n",
            _title(name),
            f"{_first_line(obj)} Class: :class:`droplab.nn.{name}`.\n",
        ]
        d = defs / f"{name}.rst"
        if d.exists():
            page.append(_title("Definition", "-"))
            page.append(f".. include:: ../../{DEFINITIONS_DIR}/{name}.rst\n")
        page.append(_title("Docstring: paper, arguments, shape", "-"))
        page.append(f".. autoclass:: droplab.nn.{name}\n   :no-index:\n   :members:\n")
        fn = _functional_for(obj)
        if fn:
            page.append(_title("Functional form", "-"))
            page.append(f".. autofunction:: droplab.functional.{fn}\n   :no-index:\n")
        write(api / "layers" / f"{name}.rst", "\n".join(page))

    for stale in list(api.rglob("*.rst")):  # a name removed from __all__ loses its page
        if stale not in written:
            stale.unlink()
    return table


def _short_repr(value) -> str:
    text = repr(value)
    return text if len(text) <= 100 else text[:97] + "..."


_DOCUMENTED: dict[int, str] = {}  # id(object) -> the full name it is documented under
_MODULES: set[str] = set()


def _index(table: dict[str, list[str]]) -> None:
    modules = list(table)
    _MODULES.clear()
    _MODULES.update(modules)
    _DOCUMENTED.clear()
    for module, names in table.items():
        mod = importlib.import_module(module)
        for name in names:
            obj = getattr(mod, name, None)
            if obj is not None and _kind(obj) != "data" and home(obj, module, modules) == module:
                _DOCUMENTED[id(obj)] = f"{module}.{name}"


def _lookup(target: str):
    """Import ``droplab.a.b.Name`` (module or attribute path); ``(found, object)``."""
    parts = target.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return False, None
        return True, obj
    return False, None


def _missing_reference(app, env, node, contnode):
    """Resolve a droplab name written with its defining submodule to where it is documented.

    ``droplab.report.figures.make_figures`` is documented as ``droplab.report.make_figures``:
    the reference is sent there. A name that exists but has no page (an internal helper of a
    submodule) is shown as code without a link. A name that does not exist is left unresolved,
    which the strict build reports as an error.
    """
    if node.get("refdomain") != "py":
        return None
    target = "".join(node.get("reftarget", "").split()).lstrip("~")
    if not target.startswith("droplab"):
        return None
    found, obj = _lookup(target)
    if not found:
        return None
    full = _DOCUMENTED.get(id(obj))
    if inspect.ismodule(obj) and obj.__name__ in _MODULES:
        full = obj.__name__
    if full and full != target:
        domain = env.get_domain("py")
        role = "mod" if inspect.ismodule(obj) else "obj"
        return domain.resolve_xref(env, node["refdoc"], app.builder, role, full, node, contnode)
    return contnode


def _on_builder_inited(app) -> None:
    table = write_pages(Path(app.srcdir))
    _index(table)
    app.env.droplab_exports = table


def setup(app):
    app.connect("builder-inited", _on_builder_inited)
    app.connect("missing-reference", _missing_reference)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
