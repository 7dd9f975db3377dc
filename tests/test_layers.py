"""The import order of the first-party code, read from the source (function-level imports included).

Between packages, a module imports only packages below its own:

    data  <-  training  <-  rm  <-  policy  <-  ui  <-  pages  <-  app.py

and inside a package the imports form no circle, so its modules stack up too. The migrations import only pure modules
(none that reaches `data.store`): a migration must keep working when the app's code changes. bench/ and tests/ stand
outside the order.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ["data", "training", "rm", "policy", "ui", "pages", "app"]  # each may import the ones before it


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def first_party_modules() -> dict[str, Path]:
    paths = [path for package in LAYERS[:-1] for path in (ROOT / package).rglob("*.py")] + [ROOT / "app.py"]
    return {module_name(path): path for path in paths}


def imported(tree: ast.AST, modules: dict) -> set[str]:
    """The first-party modules a module's code imports anywhere in it: `from data import store` is data.store."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "relative imports: write the package's name"
            names = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module
                     for alias in node.names]
        else:
            continue
        found |= {name for name in names if name in modules}
    return found


def import_graph() -> dict[str, set[str]]:
    modules = first_party_modules()
    return {name: imported(ast.parse(path.read_text(), str(path)), modules) - {name} for name, path in modules.items()}


GRAPH = import_graph()


def layer(module: str) -> int:
    return LAYERS.index(module.split(".")[0])


def reachable(module: str) -> set[str]:
    seen, todo = set(), [module]
    while todo:
        for target in GRAPH[todo.pop()] - seen:
            seen.add(target)
            todo.append(target)
    return seen


def cycle_through(module: str) -> list[str] | None:
    """A shortest path module -> ... -> module, if there is one."""
    paths = {target: [module, target] for target in GRAPH[module]}
    todo = list(paths)
    while todo:
        current = todo.pop(0)
        if current == module:
            return paths[current]
        for target in GRAPH[current]:
            if target not in paths:
                paths[target] = paths[current] + [target]
                todo.append(target)
    return None


def test_the_graph_sees_function_level_imports():
    # rm.score imports data.annotation inside a function: the graph must still hold that edge
    assert "data.annotation" in GRAPH["rm.score"]
    assert {"data.store", "data.rankings", "rm.loss", "ui.session"} <= set(GRAPH)


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_no_import_circle(module):
    cycle = cycle_through(module)
    assert cycle is None, f"import circle: {' -> '.join(cycle)}"


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_no_import_upward_between_packages(module):
    upward = sorted(target for target in GRAPH[module] if layer(target) > layer(module))
    assert not upward, f"{module} imports {upward}, above it in {' <- '.join(LAYERS)}"


def test_migrations_import_only_pure_modules():
    impure = sorted(target for target in GRAPH["data.migrations"] if "data.store" in reachable(target) | {target})
    assert not impure, f"data.migrations imports {impure}, which reach the store: a migration must not depend on app code"
