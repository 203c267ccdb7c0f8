"""The package's face: what users import from `flows` exists, and importing `flows` loads
neither dlt nor Prefect (the Prefect engine and the CLI's startup depend on that)."""

from __future__ import annotations

import subprocess
import sys

import flows


def test_every_name_of_the_face_resolves_to_what_its_module_defines() -> None:
    from importlib import import_module

    for name, module in flows.FACE.items():
        assert getattr(flows, name) is getattr(import_module(module), name), name


def test_importing_flows_loads_neither_dlt_nor_prefect() -> None:
    code = "import sys, flows; print(sorted(m for m in ('dlt', 'prefect') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
