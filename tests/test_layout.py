"""The package's layout: the core (pinnkit/*.py) never imports pinnkit.book, has no import cycle, and the book's
chapter glue lives in pinnkit.book, which loads on first use."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import pinnkit as pk

ROOT = Path(pk.__file__).parent
CORE = sorted(p for p in ROOT.glob("*.py") if p.name != "__init__.py")


def _imports(path: Path) -> set[str]:
    """The pinnkit modules ``path`` imports anywhere (top level or inside a function), as dotted names below
    ``pinnkit`` (``"training"``, ``"book.report"``)."""
    pkg = path.parent.relative_to(ROOT.parent).parts          # ("pinnkit",) or ("pinnkit", "book")
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(pkg[:len(pkg) - node.level + 1])
                mods = [node.module] if node.module else [a.name for a in node.names]
                out |= {".".join([*base, m])[len("pinnkit."):] for m in mods if base}
            elif node.module and node.module.startswith("pinnkit."):
                out.add(node.module[len("pinnkit."):])
        elif isinstance(node, ast.Import):
            out |= {a.name[len("pinnkit."):] for a in node.names if a.name.startswith("pinnkit.")}
    return out


def _graph() -> dict[str, set[str]]:
    core = {p.stem for p in CORE}
    return {p.stem: {m for m in _imports(p) if m in core} for p in CORE}


def test_the_core_never_imports_the_book_or_the_plots():
    up = {p.name: sorted(m for m in _imports(p) if m.split(".")[0] in ("book", "plots", "exercises")) for p in CORE}
    assert {k: v for k, v in up.items() if v} == {}


def _check_cycle(graph: dict[str, set[str]]) -> None:
    """AssertionError naming the first import cycle of ``graph`` (depth-first search)."""
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*path[path.index(nxt):], nxt]))
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def test_the_import_graph_of_the_core_has_no_cycle():
    graph = _graph()
    assert "training" not in graph["newton"]                       # newton.run (train with defaults) left the core
    _check_cycle(graph)


def test_the_cycle_check_finds_a_cycle():
    with pytest.raises(AssertionError, match="a -> b -> a"):
        _check_cycle({"a": {"b"}, "b": {"a"}, "c": set()})
    _check_cycle({"a": {"b"}, "b": set()})


def test_the_book_imports_the_core_and_loads_on_first_use():
    code = ("import sys, pinnkit as pk; a = 'pinnkit.book' in sys.modules; pk.book.report.bound(1.0, 0.1); "
            "print(a, 'pinnkit.book' in sys.modules, 'matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True", "False"]


@pytest.mark.parametrize("module, name, home", [
    ("newton", "run", "stationary_survey"), ("stationary", "survey", "stationary_survey"),
    ("conditioning", "compare_top", "conditioning_study"), ("conditioning", "cg_check", "conditioning_study"),
    ("conditioning", "top_condition", "conditioning_study"), ("stationary", "curvature_split", "stationary_survey"),
    ("stationary", "tangent_alignment", "stationary_survey"), ("stationary", "Endpoint", "stationary_survey"),
    ("stationary", "endpoint_table", "stationary_survey"), ("stationary", "escape", "stationary_survey"),
    ("alignment", "study", "alignment_study"), ("alignment", "tune", "alignment_study"),
    ("nncg", "diagnostics_table", "tables"), ("features", "fig10_sweep", "fig10"),
    ("features", "magnitude_ratio", "fig10"), ("tangent", "iteration_study", "tangent_study"),
    ("tangent", "grid_pinn", "tangent_study"), ("remedies", "captured_fraction", "tangent_study"),
    ("features", "derivative_gram", "features_study"), ("features", "fourier_features", "features_study")])
def test_book_only_helpers_live_in_the_book(module, name, home):
    import importlib

    assert not hasattr(importlib.import_module(f"pinnkit.{module}"), name)
    assert callable(getattr(importlib.import_module(f"pinnkit.book.{home}"), name))


def test_every_public_name_of_the_core_is_documented():
    undocumented = []
    for path in CORE:
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
                if ast.get_docstring(node) is None:
                    undocumented.append(f"{path.stem}.{node.name}")
                if isinstance(node, ast.ClassDef):
                    undocumented += [f"{path.stem}.{node.name}.{m.name}" for m in node.body
                                     if isinstance(m, ast.FunctionDef) and not m.name.startswith("_")
                                     and ast.get_docstring(m) is None]
    assert undocumented == []
