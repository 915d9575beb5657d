"""The package's layers point down only, and no import circle exists (parsed with ast).

Bottom up: utils -> the parts (data, models, centers, losses, metrics, search, mih, viz)
-> methods -> the loop (batches, runs, train) -> studies (matrix, analysis, paper, tuning) -> the
front (bench, notebook, widgets). A module may import its own layer or any layer below,
including inside functions; ``hashnb/__init__.py`` only lists the modules lazily.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "hashnb"

LAYERS = [
    {"utils"},
    {"centers", "data", "losses", "metrics", "mih", "models", "search", "viz"},
    {"methods"},
    {"batches", "runs", "train"},
    {"analysis", "matrix", "paper", "tuning"},
    {"bench", "notebook", "widgets"},
]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every hashnb module ``path`` imports, anywhere in the file (absolute names)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "hashnb"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] != "hashnb":
                continue
            out.add(mod)
            for a in node.names:  # "from hashnb import metrics" names a module
                if (PKG.parent / (mod.replace(".", "/") + f"/{a.name}.py")).exists() or \
                        (PKG.parent / (mod.replace(".", "/") + f"/{a.name}")).is_dir():
                    out.add(f"{mod}.{a.name}")
    return out


def _graph() -> dict[str, set[str]]:
    mods = {_module_name(p): p for p in PKG.rglob("*.py")}
    graph = {}
    for name, path in mods.items():
        if name == "hashnb":
            continue
        deps = set()
        for imp in _imports(path):
            target = imp if imp in mods else imp.rsplit(".", 1)[0]
            # a module never depends on its own package's __init__ (Python runs it first)
            if target != "hashnb" and not name.startswith(target + ".") and target != name:
                deps.add(target)
        graph[name] = deps
    return graph


def _layer(module: str) -> int:
    top = module.split(".")[1]
    for i, layer in enumerate(LAYERS):
        if top in layer:
            return i
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS in this test")


def test_every_module_has_a_layer():
    for name in _graph():
        _layer(name)


def test_no_import_points_up():
    upward = [f"{m} (layer {_layer(m)}) imports {d} (layer {_layer(d)})"
              for m, deps in _graph().items() for d in deps if _layer(d) > _layer(m)]
    assert not upward, "\n".join(upward)


def test_no_import_cycle():
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                cycle = stack[stack.index(d):] + [d]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_registry_is_a_leaf_and_the_loop_uses_only_it():
    graph = _graph()
    assert graph["hashnb.methods.registry"] == set()
    for loop in ("hashnb.train", "hashnb.batches", "hashnb.runs"):
        methods = {d for d in graph[loop] if d.startswith("hashnb.methods")}
        assert methods <= {"hashnb.methods.registry"}, (loop, methods)


def test_the_checker_sees_an_upward_import(tmp_path, monkeypatch):
    """The parser resolves relative and 'from hashnb import x' imports (else the tests
    above could pass on a package they do not read)."""
    deps = _graph()
    assert "hashnb.utils" in deps["hashnb.data.protocols"]         # from ..utils import
    assert "hashnb.metrics" in deps["hashnb.bench"]                  # from hashnb import metrics
    assert "hashnb.methods.registry" in deps["hashnb.train"]


def _function(module: str, name: str) -> ast.FunctionDef:
    tree = ast.parse((PKG / module).read_text())
    return next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name)


def test_fit_reads_in_one_screen():
    f = _function("train.py", "fit")
    assert f.end_lineno - f.lineno + 1 <= 80, f"fit is {f.end_lineno - f.lineno + 1} lines"


def test_the_loop_never_probes_the_method_for_hooks():
    """Every hook exists on MethodBase with its default: the loop calls it, never asks."""
    for module in ("train.py", "batches.py", "runs.py"):
        for node in ast.walk(ast.parse((PKG / module).read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("hasattr",
                                                                                   "getattr"):
                target = node.args[0]
                assert not (isinstance(target, ast.Name) and target.id == "method"), \
                    f"{module}:{node.lineno} probes the method"
