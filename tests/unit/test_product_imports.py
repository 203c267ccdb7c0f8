"""What the product's modules import.

- Never the dev tooling: no module under flows/ imports devstack (the image ships flows/
  alone, so such an import would fail only there).
- No dlt in a flow run's Prefect engine: the deployable flows and the task machinery import
  without it, so dlt's memory is paid only by the attempt's process (flows/errors.py).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import flows
from tests.unit.imports import literal_import

FLOWS = Path(flows.__file__).resolve().parent


def imported_names(tree: ast.AST) -> Iterator[str]:
    """Absolute module names the tree imports: statements, and import_module/__import__
    of a literal name."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module
        elif (called := literal_import(node)) is not None:
            yield called


def _is_devstack(name: str) -> bool:
    return name == "devstack" or name.startswith("devstack.")


def test_the_check_sees_every_kind_of_import() -> None:
    source = (
        "import devstack.stack\nfrom devstack import cli\n"
        "import importlib\nimportlib.import_module('devstack.ports')\n__import__('devstack')\n"
        "from . import devstack\nimport devstacked\n"
    )
    assert [n for n in imported_names(ast.parse(source)) if _is_devstack(n)] == [
        "devstack.stack",
        "devstack",
        "devstack.ports",
        "devstack",
    ]


def test_no_module_of_the_product_imports_devstack() -> None:
    modules = sorted(FLOWS.rglob("*.py"))
    assert len(modules) > 30, f"found only {len(modules)} modules under {FLOWS}"
    offenders = [
        f"{path.relative_to(FLOWS.parent)} imports {name}"
        for path in modules
        for name in imported_names(ast.parse(path.read_text(), str(path)))
        if _is_devstack(name)
    ]
    assert offenders == []


ENGINE_IMPORTS = """
import sys
import prefect.engine
import flows.prefect.flows, flows.prefect.tasks, flows.prefect.pod
print(sorted({m.split(".")[0] for m in sys.modules} & {"dlt", "duckdb", "pyarrow", "obstore"}))
"""


def test_the_engine_of_a_deployed_flow_imports_no_dlt() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", ENGINE_IMPORTS], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"
