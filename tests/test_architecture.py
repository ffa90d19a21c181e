"""The shape rules of segkit/ (issue 10's hygiene), checked on the source so they hold as it grows:
no import cycles (imports inside functions count too), no function over 60 lines, no file over 400
lines, and no task named in cli/ or api.py (a task is added without touching them)."""

from __future__ import annotations

import ast
from pathlib import Path

import yaml

from conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "segkit"
MAX_FUNCTION_LINES = 60
MAX_FILE_LINES = 400


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(REPO_ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """segkit modules this file imports anywhere (a `from package import module` names the module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name in modules}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith("segkit"):
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.add(child if child in modules else node.module)
    return {name for name in found if name in modules}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, result, counter = {}, {}, [], set(), [], [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                result.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return result


def test_no_import_cycles():
    modules = _modules()
    # a package's __init__ importing its own modules is not a cycle worth naming: drop parent edges
    graph = {name: {m for m in _imports(path, modules) if not name.startswith(m + ".") and m != name}
             for name, path in modules.items()}
    assert _cycles(graph) == []


def test_functions_and_files_stay_small():
    too_long = []
    for path in PACKAGE.rglob("*.py"):
        source = path.read_text(encoding="utf-8")
        if len(source.splitlines()) > MAX_FILE_LINES:
            too_long.append(f"{path.relative_to(REPO_ROOT)}: {len(source.splitlines())} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno} {node.name}: {length} lines")
    assert too_long == []


def test_cli_and_api_name_no_task():
    tasks = yaml.safe_load((REPO_ROOT / "models_registry.yaml").read_text(encoding="utf-8"))["tasks"]
    sources = [PACKAGE / "api.py", *sorted((PACKAGE / "cli").glob("*.py"))]
    named = [f"{path.name}: {task}" for path in sources for task in tasks
             if f'"{task}"' in path.read_text(encoding="utf-8") or f"'{task}'" in path.read_text(encoding="utf-8")]
    assert named == []
