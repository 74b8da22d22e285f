"""The code's shape, enforced: layers (import-linter), no import cycles, short functions, options passed as objects."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "spanqa"
MAX_BODY_LINES = 60
MAX_PARAMETERS = 10
# Interfaces that mirror someone else's signature (typer commands, transformers' pipeline, Haystack's component).
MANY_PARAMETERS_ALLOWED = ("interfaces/cli.py", "interfaces/pipeline.py", "integrations/")


def _functions() -> list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """Every top-level function and method of src/ (nested functions count in their parent)."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        nodes = list(tree.body)
        while nodes:
            node = nodes.pop()
            if isinstance(node, ast.ClassDef):
                nodes.extend(node.body)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found.append((f"{path.relative_to(SRC)}:{node.lineno}:{node.name}", node))
    return found


def _body_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines from the first statement after the docstring to the end of the function."""
    body = node.body
    first = body[1] if len(body) > 1 and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) else body[0]
    return (node.end_lineno or first.lineno) - first.lineno + 1


def _parameters(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    args = node.args
    names = [*args.posonlyargs, *args.args, *args.kwonlyargs]
    count = len(names) + bool(args.vararg) + bool(args.kwarg)
    return count - bool(names and names[0].arg in ("self", "cls"))


def test_no_function_body_is_longer_than_a_screen():
    long = [f"{where} ({_body_lines(node)} lines)" for where, node in _functions() if _body_lines(node) > MAX_BODY_LINES]
    assert not long, f"split these into named steps (at most {MAX_BODY_LINES} body lines): {long}"


def test_options_travel_as_objects():
    crowded = [
        f"{where} ({_parameters(node)} parameters)"
        for where, node in _functions()
        if _parameters(node) > MAX_PARAMETERS and not where.startswith(MANY_PARAMETERS_ALLOWED)
    ]
    assert not crowded, f"pass AnswerOptions / LoadOptions / DataSource (or a run object) instead: {crowded}"


def test_the_measure_sees_long_functions_and_many_parameters():
    tree = ast.parse("def f(a, b, c, d, e, f, g, h, i, j, k):\n    '''doc'''\n" + "    x = 1\n" * 61)
    node = tree.body[0]
    assert isinstance(node, ast.FunctionDef)
    assert _body_lines(node) == 61 and _parameters(node) == 11


def _import_graph() -> dict[str, set[str]]:
    import grimp

    graph = grimp.build_graph("spanqa", cache_dir=None)
    return {module: graph.find_modules_directly_imported_by(module) for module in graph.modules}


def _cycles(imports: dict[str, set[str]]) -> list[list[str]]:
    """Import cycles between modules (a package importing its own submodule is no cycle)."""
    cycles, state, stack = [], {}, []

    def visit(module: str) -> None:
        state[module] = "open"
        stack.append(module)
        for target in sorted(imports.get(module, ())):
            if module.startswith(target + "."):
                continue  # a module of a package imports the package's __init__
            if state.get(target) == "open":
                cycles.append(stack[stack.index(target) :] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[module] = "done"

    for module in sorted(imports):
        if module not in state:
            visit(module)
    return cycles


def test_no_import_cycles():
    cycles = _cycles(_import_graph())
    assert not cycles, "modules that import each other, directly or round a circle: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"p.a": {"p.b"}, "p.b": {"p.c"}, "p.c": {"p.a"}}) == [["p.a", "p.b", "p.c", "p.a"]]
    assert _cycles({"p.a": {"p.b"}, "p.b": set()}) == []


def test_layers_contract_is_kept():
    """The import-linter contract of pyproject.toml: interfaces > jobs > reading > runtime > stages > core."""
    command = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    if not Path(command).exists():
        pytest.skip("import-linter is not installed (pip install -e '.[test]')")
    done = subprocess.run([command, "--no-cache"], capture_output=True, text=True, cwd=SRC.parents[1])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
