"""The isolated attempt's child process: runs the pipeline without importing prefect and
reports artifacts and its outcome to the parent as messages on stdout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cloudpickle

from flows.prefect.attempt import Attempt


def test_child_reports_through_messages_and_never_imports_prefect(tmp_path: Path) -> None:
    attempt = Attempt(
        "synthetic",
        "flows.sources.synthetic:synthetic",
        kwargs={"rows": 1500},
        state_url=f"file://{tmp_path / 'state'}",
        flow_run_id="00000000-0000-0000-0000-000000000001",
    )
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "flows.prefect.child"],
        input=cloudpickle.dumps(attempt),
        capture_output=True,
        env={**os.environ, "FLOWS_HOME": str(tmp_path / "home")},
        timeout=300,
    )
    stderr = proc.stderr.decode()
    assert proc.returncode == 0, stderr[-3000:]
    imported = {line.split("|")[-1].strip() for line in stderr.splitlines() if "|" in line}
    assert "dlt" in imported
    assert not {m for m in imported if m == "prefect" or m.startswith("prefect.")}

    messages = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    ops = [m["op"] for m in messages]
    assert ops[-1] == "report" and ops.count("report") == 1
    assert messages[-1]["report"]["loaded_rows"]["events"] == 1500
    keys = {m["key"] for m in messages if m["op"] == "create"}
    assert {"synthetic-extract-progress", "synthetic-load-summary", "synthetic-report"} <= keys
    created = {m["handle"] for m in messages if m["op"] == "create"}
    assert {m["handle"] for m in messages if m["op"] == "update"} <= created
