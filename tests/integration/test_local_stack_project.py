"""A data engineer's own project on the local stack, played from the docs (Getting started,
"Your own project on the local stack"): the page's commands run as written in one shell
(the stack on a free port and its own folders), with one step the page asks for in prose:
the project's own source, dlt's REST API source against a bearer-auth API on loopback. The
run completes on the first try; with a wrong token it fails after one request, in one line
naming the status and the URL; `flows doctor` passes every check; `flows deploy` from the
project registers that project's deployment and leaves the platform's alone."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType

from devstack.ports import free_port
from devstack.stack import LocalStack
from tests import readme
from tests.integration.helpers import prefect_settings, wait
from tests.integration.shop_api import ShopApi

API_TOKEN = "orders-token"
HEADING = "## Your own project on the local stack"
GETTING_STARTED = readme.DOCS / "getting-started.md"

SOURCE = """
import dlt
from dlt.sources.rest_api import rest_api_resources


@dlt.source(name="orders_api", section="orders_api")
def orders_api(base_url: str = dlt.config.value, token: str = dlt.secrets.value):
    yield from rest_api_resources({
        "client": {
            "base_url": base_url,
            "auth": {"type": "bearer", "token": token},
            "paginator": {"type": "page_number", "base_page": 1, "page_param": "page",
                          "total_path": "total_pages"},
        },
        "resource_defaults": {"primary_key": "id", "write_disposition": "merge",
                              "endpoint": {"data_selector": "data",
                                           "params": {"page_size": 100}}},
        "resources": [{"name": "items", "endpoint": {"path": "items", "params": {
            "updated_since": {"type": "incremental", "cursor_path": "updated_at",
                              "initial_value": "1970-01-01T00:00:00Z"}}}}],
    })
"""


def recipe() -> list[str]:
    """The recipe's shell lines, from the page."""
    text = GETTING_STARTED.read_text()
    after = text.split(HEADING, 1)[1]
    block = re.search(r"^```bash\n(.*?)^```", after, re.M | re.S)
    assert block, f"{GETTING_STARTED}: no ```bash block under {HEADING!r}"
    return [line for line in block.group(1).splitlines() if line.strip()]


def own_source(api: ShopApi, token: str, helper: Path) -> str:
    """What the reader does where the page says "edit orders_api/sources.py": a script that
    writes the source, the API's address and the token into the project."""
    config = f"[sources.orders_api]\nbase_url = {api.url!r}\n"
    secrets = f"[sources.orders_api]\ntoken = {token!r}\n"
    helper.write_text(
        "from pathlib import Path\n"
        f"Path('orders_api/sources.py').write_text({SOURCE!r})\n"
        "dlt = Path('.dlt/config.toml')\n"
        f"dlt.write_text(dlt.read_text().replace('[sources.orders_api]\\n', {config!r}))\n"
        f"Path('.dlt/secrets.toml').write_text({secrets!r})\n"
    )
    return f"python {shlex.quote(str(helper))}"


def working_dir(pull_steps: list[dict[str, Any]] | None) -> str | None:
    """Where a deployment's runs start: its set_working_directory pull step."""
    step = "prefect.deployments.steps.set_working_directory"
    return next((s[step]["directory"] for s in pull_steps or [] if step in s), None)


def test_own_project_on_the_local_stack(tmp_path: Path, api: ShopApi) -> None:
    port = free_port(avoid_plus=None)
    lines = recipe()
    assert lines[0].startswith("flows stack up") and "flows deploy" in "\n".join(lines)
    script = ["set -e"]
    for line in lines:  # as written (bash reads the comments as comments)
        script.append(line.replace("flows stack up", f"flows stack up --port {port}", 1))
        if line.startswith("flows init"):
            script.append(own_source(api, API_TOKEN, tmp_path / "own_source.py"))
    script.append('echo "DEPLOY_ENV_PROJECT_DIR=${FLOWS_PROJECT_DIR:-unset}"')
    home, work = tmp_path / "home", tmp_path / "work"
    work.mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "FLOWS_"))},
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "FLOWS_HOME": str(home),
        "XDG_STATE_HOME": str(tmp_path / "xdg"),
        "RUNTIME__DLTHUB_TELEMETRY": "false",
    }
    try:
        played = readme.run_script(script, work, env)
        out = played.stdout + played.stderr
        assert played.returncode == 0, out[-4000:]
        assert "DEPLOY_ENV_PROJECT_DIR=unset" in out  # `flows stack env` exports no project
        doctor = [x for x in played.stdout.splitlines() if re.match(r"^\[(ok  |FAIL)\]", x)]
        assert doctor and all(x.startswith("[ok  ]") for x in doctor), "\n".join(doctor)
        assert re.search(r"(\d+) of \1 checks passed", played.stdout), played.stdout[-2000:]
        run_id = UUID(re.findall(r"UUID: ([0-9a-f-]{36})", played.stdout)[-1])
        stack = LocalStack(home / "stack")

        project = work / "orders-api"
        with prefect_settings(stack), get_client(sync_client=True) as client:
            done = wait(client, run_id, timeout=600)
            assert done.state is not None and done.state.type == StateType.COMPLETED, done.state
            assert done.run_count == 1  # the first try
            tasks = client.read_task_runs()
            assert [t.run_count for t in tasks if t.flow_run_id == run_id] == [1]
            folders = {d.name: working_dir(d.pull_steps) for d in client.read_deployments()}
            assert folders.pop("orders_api-daily") == str(project.resolve()), folders
            # the platform's deployments (made by `flows stack up`) stayed in their checkout
            assert folders and set(folders.values()) == {str(readme.REPO)}, folders
        assert api.refused == 0 and api.requests["/items"] == 3  # 250 items, 100 a page

        # the same with a wrong token: one request, Failed (not Crashed), one line
        (project / ".dlt" / "secrets.toml").write_text("[sources.orders_api]\ntoken = 'wrong'\n")
        run_line = next(x for x in lines if x.startswith("prefect deployment run"))
        again = subprocess.run(
            ["bash", "-c", f'eval "$(flows stack env)" && {run_line.split("#")[0]}'],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert again.returncode == 0, again.stderr[-2000:]
        failed_id = UUID(re.findall(r"UUID: ([0-9a-f-]{36})", again.stdout)[-1])
        with prefect_settings(stack), get_client(sync_client=True) as client:
            failed = wait(client, failed_id, timeout=300)
            assert failed.state is not None and failed.state.type == StateType.FAILED
            message = failed.state.message or ""
            tasks = [t for t in client.read_task_runs() if t.flow_run_id == failed_id]
            assert [t.run_count for t in tasks] == [1], "a 401 is not retried by Prefect"
            task_message = tasks[0].state.message if tasks[0].state else ""
        assert api.refused == 1, "one request with the wrong token"
        line = task_message or message
        assert "401" in line and f"{api.url}items" in line, (message, task_message)
    finally:
        subprocess.run(
            [sys.executable, "-m", "flows", "stack", "down", "--dir", str(home / "stack")],
            env=env,
            capture_output=True,
            timeout=120,
        )
