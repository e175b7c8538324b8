"""The layers import one way and no module imports itself through others (ARCHITECTURE.md).

The flow is ``api -> finetune -> router -> retrieval -> knowledge -> config``, with
``knowledge.core`` (errors, shared records, registry, pure helpers) a floor every layer may use and
that uses nothing of the project, and ``config`` a leaf. The check reads the source (``ast``), so
it sees imports inside functions as well as module-level ones: a deferred import is still a
dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("config", "knowledge", "retrieval", "router", "finetune", "api")
FLOOR = "knowledge.core"
# What each layer may import besides itself and the floor.
ALLOWED = {
    FLOOR: set(),
    "config": set(),
    "knowledge": {"config"},
    "retrieval": {"knowledge", "config"},
    "router": {"retrieval", "knowledge", "config"},
    "finetune": {"router", "retrieval", "knowledge", "config"},
    "api": {"finetune", "router", "retrieval", "knowledge", "config"},
}


def module_name(path: Path, root: Path = ROOT) -> str:
    """``router/llm/base.py`` -> ``router.llm.base``; a package's ``__init__`` is the package.

    >>> module_name(ROOT / "router" / "llm" / "__init__.py")
    'router.llm'
    """
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> str:
    """The layer a module belongs to.

    >>> layer("knowledge.core.errors"), layer("knowledge.loaders.pdf"), layer("api")
    ('knowledge.core', 'knowledge', 'api')
    """
    return FLOOR if module == FLOOR or module.startswith(FLOOR + ".") else module.split(".")[0]


def ancestors(module: str) -> list[str]:
    """The packages above a module.

    >>> ancestors("router.llm.base")
    ['router', 'router.llm']
    """
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def project_modules(root: Path = ROOT) -> dict[str, Path]:
    return {module_name(p, root): p for pkg in PACKAGES for p in sorted((root / pkg).rglob("*.py"))}


def imported_names(module: str, path: Path) -> list[tuple[int, str]]:
    """Every dotted name an ``import`` in ``path`` may refer to, with its line (relative ones resolved)."""
    is_package = path.name == "__init__.py"
    names: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = module.split(".")
                keep = len(parts) - node.level + (1 if is_package else 0)
                base = ".".join(parts[:keep] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names += [(node.lineno, base)] + [(node.lineno, f"{base}.{a.name}") for a in node.names]
    return names


def import_graph(root: Path = ROOT) -> dict[str, dict[str, int]]:
    """module -> {imported project module: first line}."""
    modules = project_modules(root)

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, dict[str, int]] = {}
    for module, path in modules.items():
        edges: dict[str, int] = {}
        mine = ancestors(module)
        for line, name in imported_names(module, path):
            target = resolve(name)
            if target and target != module:
                edges.setdefault(target, line)
                # Importing a.b.c runs a/__init__ and a/b/__init__ first (unless they are this
                # module's own packages, already running): those are dependencies too.
                for package in ancestors(target):
                    if package in modules and package not in mine and package != module:
                        edges.setdefault(package, line)
        graph[module] = edges
    return graph


def against_the_flow(graph: dict[str, dict[str, int]]) -> list[str]:
    bad = []
    for module, edges in sorted(graph.items()):
        mine = layer(module)
        for target, line in sorted(edges.items()):
            theirs = layer(target)
            if theirs == mine or (theirs == FLOOR and mine != "config") or theirs in ALLOWED[mine]:
                continue
            bad.append(f"{module}:{line} imports {target} ({mine} -> {theirs})")
    return bad


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative).

    >>> cycles({"a": {"b": 1}, "b": {"a": 1}, "c": {"a": 1}})
    [['a', 'b']]
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(graph.get(start, ())))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph.get(child, ()))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found)


@pytest.fixture(scope="module")
def graph() -> dict[str, dict[str, int]]:
    return import_graph()


def test_no_import_runs_against_the_layers(graph):
    assert len(graph) > 100  # the walk found the project
    assert against_the_flow(graph) == []


def test_no_import_cycles(graph):
    assert cycles(graph) == []


def test_the_checker_sees_a_violation_and_a_cycle(tmp_path):
    for pkg, body in {"config": "import router.engine\n", "router": "", "retrieval": ""}.items():
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text(body)
    (tmp_path / "router" / "engine.py").write_text("from ..retrieval import store\n")
    (tmp_path / "retrieval" / "store.py").write_text("def f():\n    from router.engine import x\n")
    for pkg in ("knowledge", "finetune", "api"):
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text("")
    g = import_graph(tmp_path)
    assert against_the_flow(g) == ["config:1 imports router (config -> router)",
                                   "config:1 imports router.engine (config -> router)",
                                   "retrieval.store:2 imports router (retrieval -> router)",
                                   "retrieval.store:2 imports router.engine (retrieval -> router)"]
    assert cycles(g) == [["retrieval.store", "router.engine"]]


def deferred_imports(root: Path = ROOT) -> list[str]:
    """Imports inside functions that are not a commented deferral of a third-party library.

    A project module or the standard library is imported at the top of the module; a heavy or
    optional library may be imported where it is used, with a comment saying why (which extra,
    or what makes it heavy).
    """
    import sys

    stdlib = set(sys.stdlib_module_names)
    bad = []
    for module, path in project_modules(root).items():
        lines = path.read_text(encoding="utf-8").splitlines()
        tree = ast.parse("\n".join(lines), filename=str(path))
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if not isinstance(node, (ast.Import, ast.ImportFrom)):
                    continue
                name = node.names[0].name if isinstance(node, ast.Import) else (node.module or "")
                top = "." if isinstance(node, ast.ImportFrom) and node.level else name.split(".")[0]
                commented = "#" in lines[node.lineno - 1] or lines[node.lineno - 2].strip().startswith("#")
                if top == "." or top in PACKAGES or top in stdlib or not commented:
                    bad.append(f"{module}:{node.lineno} imports {name or '.'} inside {fn.name}()")
    return sorted(set(bad))


def test_imports_inside_functions_are_only_commented_deferrals_of_heavy_libraries():
    assert deferred_imports() == []
