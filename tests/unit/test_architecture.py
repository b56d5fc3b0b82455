"""The module graph has no import cycles: the data flows one way (issue 15).

Every import is counted, module level and function local alike (a function-local import only
hides a cycle, it does not open it), resolved to modules of `pose_regressor_training` and
`pose_regressor`.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {
    "pose_regressor_training": ROOT / "training" / "pose_regressor_training",
    "pose_regressor": ROOT / "ros2_ws" / "src" / "pose_regressor" / "pose_regressor",
}


def _modules() -> dict[str, Path]:
    modules = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = [package, *path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The longest known module that `name` (a module or a name inside one) starts with."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                # `from a import b` may import module a.b, or name b of module a.
                targets = [f"{base}.{alias.name}" for alias in node.names]
            for target in targets:
                resolved = _resolve(target, modules)
                # A package's __init__ is imported on the way to its submodules: count that edge
                # only where the importer is not inside the package itself.
                if resolved is not None and resolved != module and not module.startswith(resolved + "."):
                    graph[module].add(resolved)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
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
    return found


def test_the_scan_sees_function_local_imports_and_finds_a_cycle() -> None:
    graph = import_graph()
    # export imports evaluate inside a function only.
    assert "pose_regressor_training.evaluate" in graph["pose_regressor_training.export"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles_among_the_packages() -> None:
    assert cycles(import_graph()) == []


def test_the_robot_package_never_imports_training() -> None:
    graph = import_graph()
    allowed = {"pose_regressor.engines.torch_engine"}  # the reference engine runs the training model
    offenders = {
        module: sorted(t for t in targets if t.startswith("pose_regressor_training"))
        for module, targets in graph.items()
        if module.startswith("pose_regressor.") and module not in allowed
    }
    assert {m: t for m, t in offenders.items() if t} == {}
