"""The package is layered: no module imports a higher layer (docs/architecture.md, "Layers").

Every ``import`` in ``cot_ground/**/*.py`` counts, including function-local ones and those under
``TYPE_CHECKING``: a lazy import still ties the two modules together.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from functools import cache
from pathlib import Path

from repo_paths import REPO

PACKAGE = REPO / "cot_ground"

# Low to high. A module may import its own layer or a lower one; two packages of one layer may
# not import each other. benchmarks/ and scripts/ sit above all of them and are not checked.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("boxes", "paths", "redaction", "images", "mentions"),
    ("records",),
    ("prompts",),
    ("parsing",),  # reads the answer kinds the prompts ask for
    ("tasks",),
    ("scoring",),
    ("bench", "lite"),
    ("models",),
    ("testing",),
    ("graph",),
    ("runner",),
    ("analysis",),
    ("demo",),
    ("cli",),
)
LAYER = {name: level for level, names in enumerate(LAYERS) for name in names}

# (importing module, imported module) pairs that still break the order; each entry names the
# move of issue 16 that removes it. The list may only shrink: a stale entry fails the test too.
KNOWN: set[tuple[str, str]] = set()

# The root package re-exports ``load_run`` lazily (a façade), and the manifest records the
# package version: both are exempt.
ROOT_NAMES_ALLOWED = {"__version__"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    rel = Path(*name.split("."))
    return (PACKAGE.parent / rel).with_suffix(".py").is_file() or (
        PACKAGE.parent / rel / "__init__.py"
    ).is_file()


def imports_in(text: str, source: str, is_package: bool) -> set[tuple[str, int]]:
    """``{(imported cot_ground module, line)}`` for the module ``source`` whose code is ``text``.

    ``from X import y`` counts as importing ``X.y`` when that is a module, else ``X``.
    """
    package = source if is_package else source.rpartition(".")[0]
    found: set[tuple[str, int]] = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            found |= {(alias.name, node.lineno) for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = parts[: len(parts) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            for alias in node.names:
                if is_module(f"{target}.{alias.name}"):
                    found.add((f"{target}.{alias.name}", node.lineno))
                elif not (target == "cot_ground" and alias.name in ROOT_NAMES_ALLOWED):
                    found.add((target, node.lineno))
    return {(t, line) for t, line in found if t == "cot_ground" or t.startswith("cot_ground.")}


@cache
def imports() -> dict[str, set[tuple[str, int]]]:
    """``{module: {(imported cot_ground module, line)}}`` for every module of the package."""
    return {
        module_name(path): imports_in(
            path.read_text(encoding="utf-8"), module_name(path), path.name == "__init__.py"
        )
        for path in sorted(PACKAGE.rglob("*.py"))
    }


def top(module: str) -> str:
    """The package (or top-level module) of ``module``: ``cot_ground.graph.nodes`` → ``graph``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_package_has_a_layer() -> None:
    missing = {top(m) for m in imports() if top(m) and top(m) not in LAYER}
    assert not missing, f"add {sorted(missing)} to LAYERS in tests/test_layers.py"


def violations() -> set[tuple[str, str, int]]:
    bad = set()
    for source, targets in imports().items():
        if source == "cot_ground":  # the façade __init__
            continue
        for target, line in targets:
            a, b = top(source), top(target)
            if a == b:
                continue
            if b == "" or LAYER[b] >= LAYER[a]:
                bad.add((source, target, line))
    return bad


def test_no_module_imports_a_higher_layer() -> None:
    bad = {(s, t, line) for s, t, line in violations() if (s, t) not in KNOWN}
    lines = [f"{s} (line {line}) imports {t}" for s, t, line in sorted(bad)]
    assert not lines, "upward or sideways imports:\n" + "\n".join(lines)


def test_known_exceptions_still_exist() -> None:
    present = {(s, t) for s, t, _ in violations()}
    stale = KNOWN - present
    assert not stale, f"remove these fixed entries from KNOWN: {sorted(stale)}"


def test_no_cycles_between_packages() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for source, targets in imports().items():
        for target, _ in targets:
            a, b = top(source), top(target)
            if a and b and a != b and (source, target) not in KNOWN:
                graph[a].add(b)
    cycles = [c for c in strongly_connected(graph) if len(c) > 1]
    assert not cycles, f"packages importing each other: {cycles}"


def test_no_import_circles_between_modules() -> None:
    # a function-local import that only breaks a circle still counts (cli/app ↔ cli/*_cmds was one)
    graph = {s: {t for t, _ in ts} for s, ts in imports().items()}
    cycles = [c for c in strongly_connected(graph) if len(c) > 1]
    assert not cycles, f"modules importing each other: {cycles}"


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm; the components of ``graph`` (node → successors)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return components


def test_the_scan_sees_local_relative_and_type_checking_imports() -> None:
    text = """
from typing import TYPE_CHECKING
from . import nodes
from ..scoring import score_row
from cot_ground import graph, __version__
if TYPE_CHECKING:
    from cot_ground.analysis.load import load_run
def f():
    import cot_ground.runner.run
    from cot_ground.bench import targets
"""
    found = imports_in(text, "cot_ground.graph.cot", is_package=False)
    assert {t for t, _ in found} == {
        "cot_ground.graph.nodes",
        "cot_ground.scoring",
        "cot_ground.graph",
        "cot_ground.analysis.load",
        "cot_ground.runner.run",
        "cot_ground.bench.targets",
    }
    assert ("cot_ground.runner.run", 9) in found
