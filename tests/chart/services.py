"""A real Prefect 3.8.8 server for the chart's hook and init commands, and a way to run a
rendered container command with this venv's `flows` and `prefect`."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.chart.chart import Rendered, named_container, render
from tests.integration.helpers import stop

AUTH_STRING = "admin:chart-test-password"
BIN = Path(sys.executable).parent


def run_rendered(
    command: list[str], env: dict[str, str], timeout: float = 120, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """A rendered container command, with the venv's python and prefect."""
    program = shutil.which(command[0], path=str(BIN)) or command[0]
    return subprocess.run(
        [program, *command[1:]],
        env={"PATH": f"{BIN}:{os.environ['PATH']}", **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=cwd,
    )


@dataclass
class PrefectServer:
    api_url: str
    home: Path

    def client_env(self, auth: str = AUTH_STRING) -> dict[str, str]:
        return {
            "PREFECT_API_URL": self.api_url,
            "PREFECT_API_AUTH_STRING": auth,
            "PREFECT_HOME": str(self.home),
            "HOME": str(self.home),
        }


@contextmanager
def prefect_server_for(
    home: Path, default: Rendered, database_url: str | None = None
) -> Iterator[PrefectServer]:
    """`prefect server start` with basic auth and SQLite (or the PostgreSQL database at
    `database_url`), ready when the chart's own wait-for-server init container says so."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_API_AUTH_STRING": AUTH_STRING,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
    }
    if database_url is not None:
        env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = database_url
    log = (home / "server.log").open("w")
    server = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    running = PrefectServer(f"http://127.0.0.1:{port}/api", home)
    try:
        wait = named_container(default, "Deployment", "rel-prefect-dlt-worker", "wait-for-server")
        command = [*wait["command"][:-1], "180"]  # --timeout 180
        done = run_rendered(command, running.client_env())
        if done.returncode != 0:
            pytest.fail(
                f"server not ready: {done.stdout}{done.stderr}\n{(home / 'server.log').read_text()}"
            )
        yield running
    finally:
        stop(server)
        log.close()


def api_get(server: PrefectServer, path: str) -> httpx.Response:
    user, _, password = AUTH_STRING.partition(":")
    return httpx.get(f"{server.api_url}{path}", auth=(user, password), timeout=10)


def release(values: dict[str, Any]) -> Rendered:
    """The chart rendered for one release, its project's prefect.yaml at /opt/project."""
    base = {"deployFlows": {"projectDir": "/opt/project", "registerExamples": False}}
    merged = {
        **base,
        **values,
        "deployFlows": {**base["deployFlows"], **values.get("deployFlows", {})},
    }
    return Rendered("release", render(values=merged))


def run_deploy_hook(rendered: Rendered, server: PrefectServer, project_dir: Path, tmp: Path) -> str:
    """The hook container's command as rendered, with the image's paths mapped here."""
    template = tmp / "base-job-template.json"
    template.write_text(
        rendered.get("ConfigMap", "rel-prefect-dlt-base-job-template")["data"][
            "base-job-template.json"
        ]
    )
    paths = {"/template/base-job-template.json": str(template), "/opt/project": str(project_dir)}
    overrides = rendered.find("ConfigMap", "rel-prefect-dlt-release-job-variables")
    if overrides is not None:
        released = tmp / "job-variables.json"
        released.write_text(overrides["data"]["job-variables.json"])
        paths["/release/job-variables.json"] = str(released)
    hook = named_container(rendered, "Job", "rel-prefect-dlt-deploy-flows", "deploy-flows")
    args = []
    for arg in hook["args"]:
        for image_path, here in paths.items():
            arg = arg.replace(image_path, here)
        args.append(arg)
    env = {e["name"]: e["value"] for e in hook["env"] if "value" in e}
    env.pop("HOME")
    env["FLOWS_PROJECT_DIR"] = str(project_dir)
    done = run_rendered(
        hook["command"] + args, {**env, **server.client_env()}, timeout=300, cwd=project_dir
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout
