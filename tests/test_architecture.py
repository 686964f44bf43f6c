"""The package's shape, as docs/architecture.rst states it: imports flow one way between the
layers, no module takes part in an import cycle, no private name crosses a subpackage's border,
and no source file outgrows 900 lines."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "droplab"

# Left to right: a layer may import only from its own layer or one to its left.
LAYERS = [
    {"errors", "_checks", "stats"},
    {"functional"},
    {"nn"},
    {"regularize"},
    {"data", "models"},
    {"train"},
    {"inference"},
    {"sweep"},
    {"report"},
    {"reproduce"},
    {"flags", "cli", "demo", "__main__", "__init__"},
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}
MAX_LINES = 900


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(module: str) -> list[tuple[str, str | None]]:
    """``(imported module, imported name or None)`` for every droplab import, lazy ones included
    (those under ``if TYPE_CHECKING:`` excepted)."""
    path = MODULES[module]
    tree = ast.parse(path.read_text())
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for sub in node.body for n in ast.walk(sub))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] == "droplab":
                for alias in node.names:
                    full = f"{target}.{alias.name}"
                    found.append((full, None) if full in MODULES else (target, alias.name))
        elif isinstance(node, ast.Import):
            found += [(a.name, None) for a in node.names if a.name.split(".")[0] == "droplab"]
    return found


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _private_owner(module: str, name: str | None) -> str | None:
    """The package a private module or name belongs to, or None if nothing is private."""
    parts = module.split(".")
    for i, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[:i])
    if name and name.startswith("_") and not name.startswith("__"):
        return module if MODULES.get(module, Path()).name == "__init__.py" else ".".join(parts[:-1])
    return None


def _inside(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_the_layers_cover_every_top_level_name():
    names = {_layer(m) for m in MODULES}
    assert names <= set(RANK), f"place these in LAYERS (and docs/architecture.rst): {sorted(names - set(RANK))}"


def test_imports_flow_one_way_between_layers():
    upward = []
    for module in MODULES:
        for target, name in _imports(module):
            if target == "droplab" and name == "__version__":
                continue  # the version string, defined before anything is imported
            mine, theirs = _layer(module), _layer(target)
            if RANK[theirs] > RANK[mine]:
                upward.append(f"{module} imports {target}")
    assert not upward, "imports against the layer order:\n" + "\n".join(upward)


def test_no_private_name_crosses_a_subpackage():
    crossing = []
    for module in MODULES:
        for target, name in _imports(module):
            owner = _private_owner(target, name)
            if owner is not None and not _inside(module, owner):
                crossing.append(f"{module}: from {target} import {name or ''}")
    assert not crossing, "private names imported from outside their package:\n" + "\n".join(crossing)


def _graph() -> dict[str, set[str]]:
    edges = {m: set() for m in MODULES}
    for module in MODULES:
        for target, _ in _imports(module):
            if target in MODULES and target != module:
                edges[module].add(target)
                # importing droplab.a.b runs droplab.a's __init__ first
                parts = target.split(".")
                for i in range(2, len(parts)):
                    parent = ".".join(parts[:i])
                    if parent in MODULES and not _inside(module, parent):
                        edges[module].add(parent)
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    counter = 0
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycles():
    cycles = _cycles(_graph())
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_file_over_900_lines():
    long = {str(p.relative_to(SRC)): n for p in MODULES.values() if (n := p.read_text().count("\n")) > MAX_LINES}
    assert not long, f"files over {MAX_LINES} lines: {long}"
