"""The layering rule of flows/ (docs/architecture.md), checked from the code.

Every module's imports are read with ast (module level, inside functions, under
`TYPE_CHECKING`, and `import_module("...")` of a literal name): a module may import its own
layer and the layers below it, never one above; and no two modules import each other,
directly or through others.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import flows
from tests.unit.imports import literal_import

FLOWS = Path(flows.__file__).resolve().parent

# bottom to top; packages on one line share a layer. `flows` itself (flows/__init__.py and
# flows/__main__.py) is the face, on top. templates/ holds data files, no code: any layer may
# read it and it imports nothing.
LAYERS: list[tuple[str, ...]] = [
    ("errors", "dlt_internals", "templates"),
    ("system",),
    ("state",),
    ("config",),
    ("pipelines", "sources"),
    ("durable",),
    ("progress", "parts"),
    ("attempt",),
    ("prefect",),
    ("observe",),
    ("kube",),
    ("cli",),
]
FACE = len(LAYERS)
RANK = {package: rank for rank, packages in enumerate(LAYERS) for package in packages}

# Upward imports the tree has today: (importer, imported), each with its reason. An entry
# here is a known violation, never a permission; the test below fails once one is gone.
KNOWN_UPWARD: set[tuple[str, str]] = set()  # none: every import goes down a layer


def module_name(path: Path) -> str:
    parts = list(path.relative_to(FLOWS.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(FLOWS.rglob("*.py"))}


def layer(module: str) -> int:
    """The rank of a module of flows: its subpackage's, or flows.errors'; the face on top."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] == "__main__":
        return FACE
    if parts[1] not in RANK:
        raise AssertionError(f"{module}: flows.{parts[1]} has no layer (add it to LAYERS)")
    return RANK[parts[1]]


def _resolve(module: str, is_package: bool, level: int, target: str | None) -> str:
    """The absolute name of a `from ... import`'s module (relative imports included)."""
    if level == 0:
        return target or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    base = package[: len(package) - (level - 1)]
    return ".".join([*base, target] if target else base)


def imports(
    module: str, is_package: bool, source: str, known: set[str]
) -> Iterator[tuple[str, int]]:
    """(module of flows, line) for every import of a module of flows in the source.

    `from a import b` imports the module a.b when there is one, else a itself."""
    tree = ast.parse(source, module)
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, is_package, node.level, node.module)
            names = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                for alias in node.names
            ]
        elif (called := literal_import(node)) is not None:
            names = [called]
        for name in names:
            if name == "flows" or name.startswith("flows."):
                # `import flows.a.b` names the deepest module of flows it reaches
                while name not in known and "." in name:
                    name = name.rsplit(".", 1)[0]
                yield name, getattr(node, "lineno", 0)


def graph() -> dict[str, dict[str, int]]:
    found = modules()
    known = set(found)
    edges: dict[str, dict[str, int]] = {m: {} for m in found}
    for module, path in found.items():
        source = path.read_text()
        for target, line in imports(module, path.name == "__init__.py", source, known):
            if target != module:
                edges[module].setdefault(target, line)
    return edges


def test_every_subpackage_has_a_layer() -> None:
    packages = {p.parent.name for p in FLOWS.glob("*/__init__.py")}
    modules = {p.stem for p in FLOWS.glob("*.py")} - {"__init__", "__main__"}
    assert (packages | modules) - set(RANK) == set(), "parts of flows/ without a layer"
    assert set(RANK) - packages - modules == set(), "layers naming nothing in flows/"


def test_no_module_imports_a_layer_above_its_own() -> None:
    upward = []
    for module, targets in graph().items():
        for target, line in targets.items():
            if layer(target) > layer(module) and (module, target) not in KNOWN_UPWARD:
                upward.append(f"{module}:{line} imports {target}")
    assert upward == [], "imports of a higher layer:\n  " + "\n  ".join(upward)


def test_the_known_upward_imports_are_still_there() -> None:
    edges = graph()
    gone = [pair for pair in KNOWN_UPWARD if pair[1] not in edges.get(pair[0], {})]
    assert gone == [], f"fixed: remove them from KNOWN_UPWARD: {gone}"


def test_no_import_cycle_between_modules() -> None:
    edges = graph()
    cycles = _cycles(edges)
    assert cycles == [], "import cycles:\n  " + "\n  ".join(" -> ".join(c) for c in cycles)


def _cycles(edges: dict[str, dict[str, int]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, {}):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return [_one_cycle(c, edges) for c in components]


def _one_cycle(component: list[str], edges: dict[str, dict[str, int]]) -> list[str]:
    """A path from the component's first module back to itself, inside the component."""
    inside = set(component)
    start = component[0]
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for nxt in edges[node]:
            if nxt == start:
                return [*paths[node], start]
            if nxt in inside and nxt not in paths:
                paths[nxt] = [*paths[node], nxt]
                queue.append(nxt)
    return component


def test_the_checker_sees_what_it_must() -> None:
    """An upward import inside a function, a relative import and a cycle are all found."""
    known = {"flows.state.a", "flows.state", "flows.cli.main", "flows.errors"}
    source = (
        "from . import a\ndef f():\n    from flows.cli.main import main\n    import flows.errors\n"
    )
    found = sorted(name for name, _ in imports("flows.state.b", False, source, known))
    assert found == ["flows.cli.main", "flows.errors", "flows.state.a"]
    assert layer("flows.cli.main") > layer("flows.state.b")
    assert _cycles({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {}}) == [["a", "b", "c", "a"]]
