"""The package's layers: no import cycle, lower layers never import upward, imports at the top.

Layers, lowest first: core (the modules directly in `iss_keras/`, and
`iss_keras.datasets`) < `sparsity` < `models` < `tasks` < `training`. Read from
the source (AST), so a cycle hidden inside a function is found too.
"""

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "iss_keras")
LAYERS = {"sparsity": 1, "models": 2, "tasks": 3, "training": 4}
# Optional third-party packages: imported where they are used, so the package works without them.
OPTIONAL = ("tensorflow", "ai_edge_litert", "matplotlib", "jax", "torch")
# The quiet start imports Keras itself, inside the silenced stderr: its one reason to exist.
# The PTB reader imports Keras only to download, so data code starts no backend.
DELIBERATE = {("iss_keras.startup", "keras"), ("iss_keras.datasets.ptb", "keras")}


def module_name(path):
    parts = os.path.relpath(path, ROOT)[:-3].split(os.sep)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules():
    found = {}
    for directory, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                found[module_name(path)] = path
    return found


def layer(module):
    parts = module.split(".")
    return LAYERS.get(parts[1], 0) if len(parts) > 1 else None  # None: the top-level package


def imported(module, path, known):
    """(imported module, line, at the top level?) for each import statement in `path`."""
    tree = ast.parse(open(path).read(), path)
    top = set(id(node) for node in tree.body)
    is_package = path.endswith("__init__.py")
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = module.split(".") if is_package else module.split(".")[:-1]
                here = here[:len(here) - node.level + 1]
                base = ".".join(here + ([node.module] if node.module else []))
            # `from package import submodule` imports the submodule
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                     for a in node.names]
        else:
            continue
        for name in names:
            yield name, node.lineno, id(node) in top


def graph():
    known = modules()
    edges = {m: set() for m in known}
    inner = []
    for module, path in known.items():
        for name, line, at_top in imported(module, path, known):
            if name.split(".")[0] == "iss_keras":
                target = name
                while target not in known:
                    target = target.rpartition(".")[0]
                if target != module:
                    edges[module].add(target)
            if not at_top:
                inner.append((module, line, name))
    return edges, inner


def test_no_import_cycle():
    edges, _ = graph()
    state, stack = {}, []

    def visit(module):
        state[module] = "open"
        stack.append(module)
        for target in sorted(edges[module]):
            if state.get(target) == "open":
                cycle = stack[stack.index(target):] + [target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        stack.pop()
        state[module] = "done"

    for module in sorted(edges):
        if module not in state:
            visit(module)


def test_lower_layers_never_import_upward():
    edges, _ = graph()
    upward = [f"{m} -> {t}" for m, targets in edges.items() for t in targets
              if layer(m) is not None and layer(t) is not None and layer(t) > layer(m)]
    assert not upward, upward
    assert not edges["iss_keras"] - {"iss_keras.startup"}, \
        "the top-level package loads its names lazily; it imports nothing at import time"


def test_only_optional_packages_are_imported_inside_functions():
    _, inner = graph()
    bad = sorted({f"{m}:{line} imports {name}" for m, line, name in inner
                  if name.split(".")[0] not in OPTIONAL and (m, name) not in DELIBERATE})
    assert not bad, "move these imports to the top of their module: " + "; ".join(bad)


def test_the_walk_sees_the_whole_package():
    edges, _ = graph()
    assert {"iss_keras.discovery", "iss_keras.sparsity.base", "iss_keras.models.lstm_lm",
            "iss_keras.tasks.base", "iss_keras.training.loop"} <= set(edges)
    assert "iss_keras.groups" in edges["iss_keras.discovery"]
    assert layer("iss_keras.training.loop") > layer("iss_keras.tasks.base") > \
        layer("iss_keras.models.rhn") > layer("iss_keras.sparsity.base") > layer("iss_keras.groups") == 0
