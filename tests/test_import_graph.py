"""The package's import graph: floors, no cycles, no upward imports, one home for every name.

Every import between the package's modules is read from the source (``ast``: top-level and
lazy imports inside functions alike) and must go strictly down the floors below, the data flow
of the README's package map. A module may only import modules on lower floors, so the graph
has no cycles; ``doctor`` is the top floor and nothing imports it.
"""

import ast
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cnn_utils"
README = PACKAGE.parent / "README.md"

FLOORS = {
    "_checks": 0,
    "config": 1,
    "data": 2,
    "shapes": 2,
    "blocks": 3,
    "models": 4,
    "shipped": 5,
    "training": 6,
    "probe": 6,
    "_attack_settings": 6,
    "attacks": 7,
    "autoattack": 8,
    "robustness": 9,
    "defense": 10,
    "saliency": 10,
    "maximize": 10,
    "embed": 10,
    "imagenet": 10,
    "plots": 11,
    "exercises": 12,
    "exercises.ex01": 13,
    "exercises.ex02": 13,
    "exercises.ex03": 13,
    "exercises.ex04": 13,
    "exercises.ex05": 13,
    "exercises.ex06": 13,
    "doctor": 14,
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    found.pop("", None)  # cnn_utils/__init__.py
    return found


def _imports(path: Path) -> set[str]:
    """The package modules that ``path`` imports, anywhere in the file."""
    modules = _modules()
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("cnn_utils.")]
            found |= {n.removeprefix("cnn_utils.") for n in names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "cnn_utils":
                found |= {a.name for a in node.names if a.name in modules}
            elif node.module.startswith("cnn_utils."):
                base = node.module.removeprefix("cnn_utils.")
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    found.add(sub if sub in modules else base)
    return found


def edges() -> list[tuple[str, str]]:
    """Every (importer, imported) pair between the package's modules."""
    return sorted(
        (name, target)
        for name, path in _modules().items()
        for target in _imports(path)
        if target != name
    )


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The cycles of a directed graph (one path per cycle found by depth-first search)."""
    found, state = [], {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                found.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_every_module_has_a_floor():
    assert set(_modules()) - set(FLOORS) == set(), "give the new module a floor"


def test_no_import_goes_up_or_sideways():
    wrong = [(a, b) for a, b in edges() if FLOORS[b] >= FLOORS[a]]
    assert wrong == [], f"imports that do not go down the floors: {wrong}"


def test_the_import_graph_has_no_cycles():
    graph: dict[str, set[str]] = {}
    for a, b in edges():
        graph.setdefault(a, set()).add(b)
    assert _cycles(graph) == []


def test_the_checks_catch_a_cycle_and_an_upward_import():
    """The control: a planted cycle is found, and an import of a higher floor is flagged."""
    assert _cycles({"attacks": {"robustness"}, "robustness": {"attacks"}}) != []
    assert FLOORS["robustness"] >= FLOORS["attacks"]  # attacks -> robustness would be flagged


def test_no_module_forwards_names_to_another():
    """No re-export shims: no module-level ``__getattr__`` (PEP 562) anywhere."""
    for name, path in _modules().items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
        assert "__getattr__" not in top, f"{name} forwards names with __getattr__"


@pytest.mark.parametrize("name", sorted(n for n in FLOORS if not n.startswith("_")))
def test_every_public_module_declares_its_names(name):
    module = importlib.import_module(f"cnn_utils.{name}")
    assert module.__doc__ and module.__doc__.strip(), f"{name} needs a docstring"
    assert hasattr(module, "__all__"), f"{name} has no __all__"
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert missing == [], f"{name}.__all__ lists names it does not define: {missing}"


def test_each_public_name_has_one_home():
    homes: dict[str, list[str]] = {}
    for name in sorted(_modules()):
        if name.startswith("_") or name.startswith("exercises"):
            continue
        module = importlib.import_module(f"cnn_utils.{name}")
        for public in getattr(module, "__all__", ()):
            homes.setdefault(public, []).append(name)
    shared = {n: m for n, m in homes.items() if len(m) > 1}
    assert shared == {}, f"names exported by more than one module: {shared}"


def test_no_function_is_longer_than_80_lines():
    long = []
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > 80:
                    long.append(f"{name}.{node.name}: {length} lines")
    assert long == []


def test_the_readme_package_map_names_every_public_module():
    text = README.read_text(encoding="utf-8")
    public = [n for n in _modules() if not n.startswith("_") and "." not in n]
    unnamed = [n for n in public if f"`{n}`" not in text and f"`{n}/`" not in text]
    assert unnamed == [], f"README's package map does not name: {unnamed}"
