"""The import graph of ``recbole_attrcloak`` (docs/architecture.md): no cycle, the pipeline
imported only from above it, and the maths (``losses/``, ``engine/``) framework-free.

Edges are every ``import``/``from … import`` in a module's source (at any depth, so imports
inside functions count) plus the defence table's entry points, which are imported on use."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from recbole_attrcloak.defences import DEFENCES

PACKAGE = Path(__file__).resolve().parents[1] / "recbole_attrcloak"
# Who may import the pipeline: the command line and the sweeps (benchmarks live outside).
PIPELINE = "recbole_attrcloak.quick_start"
ABOVE_PIPELINE = ("recbole_attrcloak.cli", "recbole_attrcloak.tune")
CORE = ("recbole_attrcloak.losses", "recbole_attrcloak.engine")
FRAMEWORKS = ("recbole", "ray", "sklearn", "xgboost", "joblib")


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(path: Path) -> set[str]:
    """Every module name ``path`` imports (``from X import y``: X.y when that is a module of
    ours, else X); relative imports are not used."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f"{path}: relative import"
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                names.add(sub if sub in MODULES else node.module)
    return names


def _graph() -> dict[str, set[str]]:
    graph = {
        name: {m for m in _imports(path) if m in MODULES and m != name}
        for name, path in MODULES.items()
    }
    for defence in DEFENCES.values():  # imported on use
        graph["recbole_attrcloak.defences"].add(defence.entry.split(":")[0])
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph``, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


GRAPH = _graph()


def test_the_graph_sees_the_package():
    assert len(GRAPH) > 30
    assert "recbole_attrcloak.unlearning.attrcloak" in GRAPH["recbole_attrcloak.defences"]
    assert "recbole_attrcloak.engine" in GRAPH["recbole_attrcloak.unlearning.attrcloak"]


def test_no_import_cycle():
    assert _cycle(GRAPH) is None, " -> ".join(_cycle(GRAPH))


def test_a_planted_cycle_is_found():
    graph = {k: set(v) for k, v in GRAPH.items()}
    graph["recbole_attrcloak.losses.moo"].add(PIPELINE)
    assert _cycle(graph) is not None


def test_only_the_cli_and_the_sweeps_import_the_pipeline():
    importers = sorted(name for name, deps in GRAPH.items() if PIPELINE in deps)
    assert importers, "the CLI imports the pipeline"
    assert all(name.startswith(ABOVE_PIPELINE) for name in importers), importers


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith(CORE)))
def test_the_core_is_framework_free(name):
    imported = _imports(MODULES[name])
    frameworks = sorted(m for m in imported if m.split(".")[0] in FRAMEWORKS)
    outside = sorted(m for m in GRAPH[name] if not m.startswith(CORE))
    assert frameworks == [] and outside == [], (frameworks, outside)
