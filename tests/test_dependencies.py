"""The package dependency rules (``docs/DESIGN.md``, "Where things live"), read from the source.

Every ``import`` of the four packages is an edge between packages: ``robopolicy``'s subpackages
and top-level modules (``robopolicy.data``, ``robopolicy.cli``, ...), ``sim``, ``hardware`` and
``apps``. Imports inside functions count: deferring an import does not change who depends on
whom. ``from robopolicy import __version__`` (the package's own facade) is not an edge.
"""

from __future__ import annotations

import ast
import collections
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("robopolicy", "sim", "hardware", "apps")

FORBIDDEN = {
    "robopolicy.*": {"sim", "hardware", "apps"},
    "sim": {"hardware", "apps"},
    "hardware": {"apps"},
    "robopolicy.inference": {"robopolicy.serve"},
    "robopolicy.sampling": {
        "robopolicy.policies",
        "robopolicy.inference",
        "robopolicy.serve",
        "robopolicy.rl",
        "robopolicy.train",
    },
    "robopolicy.policies": {
        "robopolicy.inference",
        "robopolicy.serve",
        "robopolicy.rl",
        "robopolicy.train",
    },
    "robopolicy.models": {"robopolicy.policies", "robopolicy.data", "robopolicy.train"},
    "robopolicy.data": {"robopolicy.models", "robopolicy.policies", "robopolicy.train"},
}
"""Package -> packages it must never import (``robopolicy.*``: every robopolicy package)."""


def _package(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] not in PACKAGES:
        return None
    if parts[0] == "robopolicy":
        return ".".join(parts[:2]) if len(parts) > 1 else None
    return parts[0]


def _imports() -> dict[str, set[tuple[str, str]]]:
    """Package -> {(imported package, importing file)}."""
    edges: dict[str, set[tuple[str, str]]] = collections.defaultdict(set)
    for top in PACKAGES:
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT)
            source = _package(".".join(rel.with_suffix("").parts))
            if source is None:
                continue  # robopolicy/__init__.py: the facade above everything
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    target = _package(name)
                    if target is not None and target != source:
                        edges[source].add((target, str(rel)))
    return edges


EDGES = _imports()


def test_the_import_scan_sees_the_packages():
    assert {"robopolicy.serve", "robopolicy.inference", "sim", "hardware", "apps"} <= set(EDGES)


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_package_imports_what_it_must_not(package):
    sources = (
        [p for p in EDGES if p.startswith("robopolicy.")]
        if package == "robopolicy.*"
        else [package]
    )
    bad = sorted(
        f"{where} imports {target}"
        for source in sources
        for target, where in EDGES[source]
        if target in FORBIDDEN[package]
    )
    assert not bad, bad


def test_packages_import_each_other_in_one_direction_only():
    graph = {source: {target for target, _ in targets} for source, targets in EDGES.items()}
    cycles = []
    for source, targets in graph.items():
        for target in targets:
            if _reaches(graph, target, source):
                cycles.append(f"{source} -> {target} -> ... -> {source}")
    assert not cycles, sorted(cycles)


def _reaches(graph: dict[str, set[str]], start: str, goal: str) -> bool:
    seen, stack = set(), [start]
    while stack:
        node = stack.pop()
        if node == goal:
            return True
        if node not in seen:
            seen.add(node)
            stack.extend(graph.get(node, ()))
    return False
