"""The package's stages import only downward, and no two modules import each other.

Stages, lowest first (../shared/DESIGN.md): the base modules (errors, io, provenance, settings, config, the
package itself), data and geometry, nn, models, train, analysis, report, studies (and the demo),
cli and api (the front door's functions). Every ``import biostrata...`` counts, at module level or inside a function. (A module's
``__getattr__`` that keeps a moved name working for one release loads the new module with
importlib when the old name is used; that is not an import statement and is not counted.) The settings in
config/ read the defaults of the functions they configure from those functions' source text
(``settings.defaults_from``), which imports nothing; tests/test_settings.py checks what they read against the
imported functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "biostrata"
STAGES = {
    "__init__": 0, "errors": 0, "io": 0, "provenance": 0, "compat": 0, "settings": 0, "config": 0, "threads": 0,
    "extras": 0,
    "data": 1, "geometry": 1, "nn": 2, "models": 3, "train": 4, "analysis": 5, "report": 6,
    "studies": 7, "demo": 7, "cli": 8, "api": 8,
}  # fmt: skip
# Back edges tolerated for a while, each with its reason (none now). A back edge not listed fails
# the test, and so does an entry that no longer exists.
KNOWN_BACK_EDGES: set[tuple[str, str]] = set()


def module_name(path: Path, src: Path = SRC) -> str:
    parts = path.relative_to(src.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(src: Path = SRC) -> dict[str, set[str]]:
    """Module -> the biostrata modules it imports (``from biostrata.x import y`` counts as biostrata.x)."""
    found: dict[str, set[str]] = {}
    for path in src.rglob("*.py"):
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("biostrata"):
                deps.add(node.module)
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("biostrata")}
        found[module_name(path, src)] = deps - {module_name(path, src)}
    return found


def stage(module: str) -> int:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    if top not in STAGES:
        pytest.fail(f"{module}: no stage for biostrata.{top}; add it to STAGES in tests/test_imports.py")
    return STAGES[top]


def test_stages_import_only_downward():
    back = {(a, b) for a, deps in imports().items() for b in deps if stage(b) > stage(a)}
    new = sorted(back - KNOWN_BACK_EDGES)
    assert not new, "imports against the stage order: " + ", ".join(f"{a} -> {b}" for a, b in new)
    stale = sorted(KNOWN_BACK_EDGES - back)
    assert not stale, f"no longer imported, remove from KNOWN_BACK_EDGES: {stale}"


def find_cycles(graph: dict[str, set[str]]) -> list[str]:
    """Each import cycle through a module, as 'a -> b -> a'."""
    modules = set(graph)
    graph = {a: {b for b in deps if b in modules} for a, deps in graph.items()}
    cycles = []
    for start in graph:
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    cycles.append(" -> ".join([*path, start]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
    return sorted(set(cycles))


def test_no_import_cycles():
    cycles = find_cycles(imports())
    assert not cycles, "import cycles: " + "; ".join(cycles[:10])


def test_the_checker_sees_back_edges_and_cycles(tmp_path):
    """The tests above can fail: a data module importing train, and two modules importing each other."""
    pkg = tmp_path / "biostrata"
    for folder in ("data", "train"):
        (pkg / folder).mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "data" / "x.py").write_text("from biostrata.train.y import z\n")
    (pkg / "train" / "y.py").write_text("def z():\n    from biostrata.train.w import v\n")
    (pkg / "train" / "w.py").write_text("from biostrata.train.y import z\nv = 1\n")
    graph = imports(pkg)
    assert {(a, b) for a, deps in graph.items() for b in deps if stage(b) > stage(a)} == {
        ("biostrata.data.x", "biostrata.train.y")
    }
    assert find_cycles(graph) == [
        "biostrata.train.w -> biostrata.train.y -> biostrata.train.w",
        "biostrata.train.y -> biostrata.train.w -> biostrata.train.y",
    ]


def test_reading_data_and_writing_reports_need_no_torch():
    """`biostrata report` and the data readers start without loading torch or Lightning (seconds)."""
    import subprocess
    import sys

    code = (
        "import sys, biostrata.cli, biostrata.report.summary, biostrata.report.compare, biostrata.data.dna.benchmarks; "
        "print(sorted(m for m in ('torch', 'lightning') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
