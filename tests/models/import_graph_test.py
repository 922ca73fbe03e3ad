"""The import graph of keras_openseg: no circle, and models/ imports only what lies below it.

Read from the source with `ast` (nothing is imported), counting every import, also those inside functions.
"""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "keras_openseg"
# What models/ may reach, directly or not: its own modules, the layers and losses, and text/ (the prompt
# templates of `TextEmbedder`; text/ imports nothing of the package outside itself).
MODELS_MAY_IMPORT = ("keras_openseg.models", "keras_openseg.layers", "keras_openseg.losses", "keras_openseg.text")


def module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path, modules):
    """The package modules `path` imports; `from a import b` counts as `a.b` when that is a module, else `a`."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from package import module` reaches the module; `from module import name` the module.
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in modules else node.module)
    return {name for name in found if name in modules}


def import_graph():
    paths = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    return {name: imports_of(path, set(paths)) for name, path in paths.items()}


def find_cycle(graph):
    """One import circle as a list of modules, or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return stack[stack.index(target) :] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def reachable(graph, start):
    seen, todo = set(), [start]
    while todo:
        for target in graph[todo.pop()]:
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


@pytest.mark.backend_independent
def test_the_package_has_no_import_circle():
    # A package's __init__ is a module too: `from keras_openseg.models import X` runs it, so a module of
    # models/ importing its own package would close a circle through the __init__'s re-exports.
    graph = import_graph()
    graph = {name: targets - {name} for name, targets in graph.items()}
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)


@pytest.mark.backend_independent
def test_models_import_only_layers_and_losses():
    graph = import_graph()
    for name in graph:
        if name == "keras_openseg.models" or name.startswith("keras_openseg.models."):
            above = sorted(target for target in reachable(graph, name) if not target.startswith(MODELS_MAY_IMPORT))
            assert not above, f"{name} imports {above}"
