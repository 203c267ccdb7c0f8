"""Every bad declaration is refused before anything runs: one line naming the problem, the
config file and the known pipelines; exit 2; not retried by Prefect; nothing in the store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

NOT_A_SOURCE = "def things():\n    return [1, 2, 3]\n"

CASES = {
    # name: (config.toml, pipeline to run, error type, what the line says)
    "unknown": ("", "nope", "UnknownPipelineError", "unknown pipeline 'nope'"),
    "does not import": (
        '[pipelines.broken]\nsource = "no_such_module:src"\n',
        "broken",
        "SourceImportError",
        "source 'no_such_module:src' does not import: ModuleNotFoundError",
    ),
    "not a source": (
        '[pipelines.things]\nsource = "my_things:things"\n',
        "things",
        "NotASourceError",
        "my_things:things returned list, not a dlt source or resource",
    ),
    "declared twice": (
        '[pipelines.synthetic]\nsource = "my_things:things"\n',
        "synthetic",
        "DuplicatePipelineError",
        "pipeline 'synthetic' is declared twice",
    ),
}


def project(tmp_path: Path, config: str) -> Path:
    folder = tmp_path / "project"
    (folder / ".dlt").mkdir(parents=True)
    (folder / ".dlt" / "config.toml").write_text(config)
    (folder / "my_things.py").write_text(NOT_A_SOURCE)
    return folder


def clean_env(tmp_path: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FLOWS_", "STATE__", "PREFECT_API", "PIPELINES__"))
    }
    return {
        **env,
        "FLOWS_HOME": str(tmp_path / "home"),
        "RUNTIME__DLTHUB_TELEMETRY": "false",
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    }


def stored_files(tmp_path: Path) -> list[Path]:
    state = tmp_path / "home" / "state"
    return [p for p in state.rglob("*") if p.is_file()] if state.exists() else []


@pytest.mark.parametrize("case", list(CASES))
def test_cli_refuses_with_one_line_and_exit_2(case: str, tmp_path: Path) -> None:
    config, name, error, says = CASES[case]
    folder = project(tmp_path, config)
    result = subprocess.run(
        [sys.executable, "-m", "flows", "run", name],
        cwd=folder,
        env=clean_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {error}: ") and says in lines[0], lines[0]
    assert str(folder / ".dlt" / "config.toml") in lines[0]
    assert "known pipelines:" in lines[0] and "synthetic" in lines[0]
    assert stored_files(tmp_path) == []


FLOW = """
import os
from prefect import flow
from prefect.client.orchestration import get_client
from flows.prefect.tasks import make_pipeline_task

@flow
def bad_declarations():
    states = {}
    for name in ("nope", "broken", "things"):
        states[name] = make_pipeline_task(name, retry_delay_seconds=0)(return_state=True)
    os.environ["PIPELINES__SYNTHETIC__SOURCE"] = "my_things:things"
    states["synthetic"] = make_pipeline_task("synthetic", retry_delay_seconds=0)(
        return_state=True
    )
    return {name: state.type.value for name, state in states.items()}

print("STATES", bad_declarations())
with get_client(sync_client=True) as client:
    runs = client.read_task_runs()
    print("RUN_COUNTS", sorted((t.name.rsplit("-", 1)[0], t.run_count) for t in runs))
"""


def test_prefect_does_not_retry_a_bad_declaration(tmp_path: Path) -> None:
    folder = project(
        tmp_path,
        '[pipelines.broken]\nsource = "no_such_module:src"\n'
        '[pipelines.things]\nsource = "my_things:things"\n',
    )
    result = subprocess.run(
        [sys.executable, "-c", FLOW],
        cwd=folder,
        env=clean_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=400,
    )
    out = result.stdout + result.stderr
    states = next(x for x in result.stdout.splitlines() if x.startswith("STATES "))
    assert states == (
        "STATES {'nope': 'FAILED', 'broken': 'FAILED', 'things': 'FAILED', 'synthetic': 'FAILED'}"
    ), out[-3000:]
    counts = next(x for x in result.stdout.splitlines() if x.startswith("RUN_COUNTS "))
    assert counts == ("RUN_COUNTS [('broken', 1), ('nope', 1), ('synthetic', 1), ('things', 1)]"), (
        out[-3000:]
    )
    assert "NotASourceError" in out and "DuplicatePipelineError" in out
    assert stored_files(tmp_path) == []
