"""Reading imports from source, for the tests that check what the product imports."""

from __future__ import annotations

import ast

IMPORT_FUNCTIONS = {"import_module", "__import__"}


def literal_import(node: ast.AST) -> str | None:
    """The module an `import_module("x")` / `__import__("x")` call names, when it names one
    literally; None for any other node."""
    if not isinstance(node, ast.Call) or not node.args:
        return None
    func = node.func
    called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    first = node.args[0]
    if called in IMPORT_FUNCTIONS and isinstance(first, ast.Constant):
        return first.value if isinstance(first.value, str) else None
    return None
