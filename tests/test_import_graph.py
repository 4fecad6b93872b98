"""The package's imports run one way: no module imports one that (directly or through others)
imports it back, not even inside a function. Function-local imports only defer loading a heavy
library; they must not hide a cycle between edgeprof's own modules."""

from __future__ import annotations

import ast
from pathlib import Path

import edgeprof

PACKAGE = Path(edgeprof.__file__).parent


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(name: str, modules: set[str]) -> str | None:
    """The edgeprof module `name` names: itself, or the module holding the attribute."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports(tree: ast.AST, modules: set[str]) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            if name.startswith("edgeprof"):
                target = _resolve(name, modules)
                if target and target != "edgeprof":
                    found.add(target)
    return found


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the edgeprof modules it imports anywhere in its body (TYPE_CHECKING blocks
    included: a type-only import back is still a layering error)."""
    files = {module_name(p, root): p for p in root.rglob("*.py")}
    modules = set(files)
    return {m: _imports(ast.parse(p.read_text("utf-8")), modules) - {m} for m, p in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:  # noqa: C901 - Tarjan, one piece
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
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
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_in_edgeprof() -> None:
    found = cycles(import_graph())
    assert found == [], "import cycles (module-level or function-local):\n" + "\n".join(
        " <-> ".join(c) for c in found
    )


def test_the_cycle_check_finds_a_function_local_cycle(tmp_path: Path) -> None:
    pkg = tmp_path / "edgeprof"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "a.py").write_text("from edgeprof.sub.b import thing\n")
    (pkg / "sub" / "b.py").write_text("def thing():\n    from edgeprof.sub import a\n")
    (pkg / "c.py").write_text("import edgeprof.sub.a\n")
    graph = import_graph(pkg)
    assert graph["edgeprof.c"] == {"edgeprof.sub.a"}
    assert cycles(graph) == [["edgeprof.sub.a", "edgeprof.sub.b"]]
    (pkg / "sub" / "b.py").write_text("def thing():\n    import json\n")
    assert cycles(import_graph(pkg)) == []


def test_top_level_is_a_handful_of_modules() -> None:
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert top == [
        "__init__.py",
        "__main__.py",
        "errors.py",
        "plugins.py",
        "power.py",
        "progress.py",
    ]
