"""How a `@dlt_task` function reaches the isolated child: by import path when the child can
import it by name, else by value (a flow file Prefect loaded from a path)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cloudpickle
from prefect.utilities.importtools import load_script_as_module

from flows.prefect.tasks import source_reference
from flows.sources.synthetic import synthetic


def test_an_installed_function_goes_by_import_path() -> None:
    assert source_reference(synthetic) == "flows.sources.synthetic:synthetic"


def test_a_function_from_a_flow_file_loaded_by_path_goes_by_value(tmp_path: Path) -> None:
    flow_file = tmp_path / "elsewhere" / "my_flows.py"
    flow_file.parent.mkdir()
    flow_file.write_text("def make(n):\n    return list(range(n))\n")
    module = load_script_as_module(str(flow_file))
    reference = source_reference(module.make)
    assert reference is module.make
    # a fresh interpreter elsewhere, which cannot import my_flows, calls it
    payload = cloudpickle.dumps(reference)
    code = "import sys, cloudpickle; print(cloudpickle.loads(sys.stdin.buffer.read())(3))"
    out = subprocess.run(
        [sys.executable, "-c", code], input=payload, capture_output=True, cwd=tmp_path, timeout=60
    )
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    assert out.stdout.decode().strip() == "[0, 1, 2]"
