"""The shape of the core: standard library only, layers without cycles, no private imports.

The browser loads ``kvcache_calculator`` with the bare Pyodide runtime, so nothing outside the
standard library may be imported; the layers (``setup`` -> ``analytic`` -> ``sim``/``traces`` ->
``present`` -> ``cli``) must form no import cycle; no module reaches into another's private
names; and every import of one of the core's modules by another is at the top of the file,
where a reader sees a module's dependencies (an import inside a function hides them, and
hid a cycle once).
"""

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "kvcache_calculator"
MODULES = sorted(p for p in ROOT.rglob("*.py"))


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path):
    """(module, [names], top_level) for every import statement of a file."""
    tree = ast.parse(path.read_text())
    top = set(id(n) for n in tree.body)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, [], id(node) in top
        elif isinstance(node, ast.ImportFrom):
            yield node.module or "", [a.name for a in node.names], id(node) in top


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_core_imports_only_the_standard_library(path):
    for module, _, _ in _imports(path):
        top = module.split(".")[0]
        assert top in sys.stdlib_module_names or top in ("kvcache_calculator", "__future__"), (path.name, module)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_private_names_imported_from_another_module(path):
    for module, names, _ in _imports(path):
        if module.startswith("kvcache_calculator"):
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            assert not private, f"{path.relative_to(ROOT)} imports {private} from {module}"


#: Imports of a core module inside a function, allowed, with the reason (none today).
IN_FUNCTION_ALLOWED: dict[tuple[str, str], str] = {}


def test_core_modules_import_each_other_at_the_top():
    found = []
    for path in MODULES:
        for module, _, top in _imports(path):
            if not top and module.startswith("kvcache_calculator"):
                name = _module_name(path)
                if (name, module) not in IN_FUNCTION_ALLOWED:
                    found.append(f"{name} imports {module} inside a function")
    assert not found, found


def test_no_import_cycles():
    """The graph of module-level imports between the core's modules is acyclic."""
    names = {_module_name(p): p for p in MODULES}
    graph: dict[str, set[str]] = {}
    for name, path in names.items():
        deps = set()
        for module, imported, top in _imports(path):
            if not top or not module.startswith("kvcache_calculator"):
                continue
            for item in imported or [""]:
                full = f"{module}.{item}" if item else module
                deps.add(full if full in names else module)
        graph[name] = {d for d in deps if d in names and d != name}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycle = stack[stack.index(dep):] + [dep]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert len(state) == len(names)
