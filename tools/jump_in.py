"""Can a section run from its heading? The names each section takes from earlier sections.

A notebook is split at its numbered ``## N.`` headings. The cells before the first one are the
setup (imports, seeds, data and models that every section shares). A section can be run from
its heading after the setup when every name its code reads is defined by the setup, by the
section itself (before it is read), or is a builtin. This script lists, per section, the names
it reads that only an *earlier section* defines: each one is a reason an instructor who jumps
into that section gets a ``NameError``.

Usage::

    python tools/jump_in.py notebooks/0*.ipynb     # prints the offending names; exit 1 if any
"""

from __future__ import annotations

import ast
import builtins
import re
import sys
from pathlib import Path

import nbformat

SECTION = re.compile(r"^##\s+(\d+)\.", re.MULTILINE)
SECTION_OR_END = re.compile(r"^##\s+\S.*$", re.MULTILINE)  # a numbered section, or Exercises...
BUILTINS = set(dir(builtins)) | {"display", "get_ipython", "__file__"}


def _local_names(tree: ast.AST) -> tuple[set[int], set[str]]:
    """Nodes inside functions, lambdas and comprehensions, and the names bound there."""
    inside: set[int] = set()
    names: set[str] = set()
    scopes = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ListComp, ast.SetComp)
    scopes += (ast.DictComp, ast.GeneratorExp)
    for node in ast.walk(tree):
        if isinstance(node, scopes):
            for inner in ast.walk(node):
                if inner is not node:
                    inside.add(id(inner))
                if isinstance(inner, ast.Name) and isinstance(inner.ctx, ast.Store):
                    names.add(inner.id)
                elif isinstance(inner, ast.arg):
                    names.add(inner.arg)
    return inside, names


def _defined_and_read(source: str) -> tuple[list[str], list[str]]:
    """Names a cell binds at top level, and names it reads before binding them."""
    source = "\n".join(
        line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))
    )
    tree = ast.parse(source)
    inside, local = _local_names(tree)
    bound: list[str] = []
    read: list[str] = []
    for statement in tree.body:
        stores, loads = [], []
        for inner in ast.walk(statement):
            if isinstance(inner, (ast.Import, ast.ImportFrom)):
                stores += [(a.asname or a.name).split(".")[0] for a in inner.names]
            elif isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                if id(inner) not in inside:
                    stores.append(inner.name)
            elif isinstance(inner, ast.ExceptHandler) and inner.name:
                stores.append(inner.name)
            elif isinstance(inner, ast.Name):
                if id(inner) in inside:
                    if isinstance(inner.ctx, ast.Load) and inner.id not in local:
                        loads.append(inner.id)  # a global read when the function runs
                elif isinstance(inner.ctx, ast.Store):
                    stores.append(inner.id)
                else:
                    loads.append(inner.id)
        # A name the same statement binds counts as its own (loop targets, with ... as ...).
        read += [name for name in loads if name not in bound and name not in stores]
        bound += stores
    return bound, read


def sections(path: Path) -> list[tuple[str, list[str]]]:
    """``(title, [code sources])`` for the setup (title ``"setup"``) and each numbered section."""
    nb = nbformat.read(path, as_version=4)
    parts: list[tuple[str, list[str]]] = [("setup", [])]
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            heading = SECTION_OR_END.search(cell.source)
            if heading and (SECTION.match(heading.group(0)) or len(parts) > 1):
                parts.append((heading.group(0).lstrip("# ").strip(), []))
        elif cell.cell_type == "code":
            parts[-1][1].append(cell.source)
    return parts


def borrowed_names(path: Path) -> dict[str, list[str]]:
    """Per section title, the names it reads that only earlier sections define."""
    parts = sections(path)
    setup_defined: set[str] = set()
    for source in parts[0][1]:
        bound, _ = _defined_and_read(source)
        setup_defined |= set(bound)
    earlier: set[str] = set()
    problems: dict[str, list[str]] = {}
    for title, sources in parts[1:]:
        own: set[str] = set()
        missing: list[str] = []
        for source in sources:
            bound, read = _defined_and_read(source)
            for name in read:
                known = name in setup_defined or name in own or name in BUILTINS
                if not known and name in earlier and name not in missing:
                    missing.append(name)
            own |= set(bound)
        if missing:
            problems[title] = missing
        earlier |= own
    return problems


def main(paths: list[str]) -> int:
    """Print each section's borrowed names; 1 if any notebook has some."""
    status = 0
    for name in paths:
        problems = borrowed_names(Path(name))
        for title, missing in problems.items():
            status = 1
            print(f"{name}: {title!r} needs {', '.join(missing)} from an earlier section")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
