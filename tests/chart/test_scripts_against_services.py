"""The commands and scripts the chart renders into its pods, run as rendered against a real
Prefect 3.8.8 server and a real SeaweedFS: the wait, the work-pool sync (install, then
upgrade), the helm test, and the bucket hook."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import httpx
import pytest

from devstack.seaweedfs import SeaweedFS
from tests.chart.chart import (
    REPO,
    Rendered,
    helm_template,
    load_manifests,
    named_container,
    pod_spec,
)
from tests.chart.services import AUTH_STRING, PrefectServer, api_get, run_rendered

pytestmark = pytest.mark.integration


def test_work_pool_sync_then_helm_test(
    prefect_server: PrefectServer, default: Rendered, tmp_path: Path
) -> None:
    template_json = default.get("ConfigMap", "rel-prefect-dlt-base-job-template")["data"][
        "base-job-template.json"
    ]
    template_file = tmp_path / "base-job-template.json"
    template_file.write_text(template_json)
    sync = named_container(default, "Deployment", "rel-prefect-dlt-worker", "sync-work-pool")
    command = [
        str(template_file) if arg.startswith("/template/") else arg for arg in sync["command"]
    ]
    env = prefect_server.client_env()

    for attempt in ("install", "upgrade"):
        done = run_rendered(command, env)
        assert done.returncode == 0, f"{attempt}: {done.stdout}{done.stderr}"

    pool = api_get(prefect_server, "/work_pools/dlt-k8s").json()
    assert pool["type"] == "kubernetes"
    stored = pool["base_job_template"]["variables"]["properties"]
    assert stored["namespace"]["default"] == "pipelines"
    assert stored["state_url"]["default"] == "s3://prefect-dlt/state"
    assert pool["base_job_template"] == json.loads(template_json)

    test_pod = default.get("Pod", "rel-prefect-dlt-test-connection")["spec"]["containers"][0]
    passed = run_rendered(test_pod["command"], env)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "work pool 'dlt-k8s'" in passed.stdout

    wrong_auth = run_rendered(test_pod["command"], prefect_server.client_env("admin:wrong"))
    assert wrong_auth.returncode != 0
    assert "rejected the auth string" in wrong_auth.stderr

    missing = run_rendered([*test_pod["command"][:-1], "no-such-pool"], env)
    assert missing.returncode != 0
    assert "not found" in missing.stderr


def test_worker_start_leaves_the_pool_as_setup_made_it(
    prefect_server: PrefectServer, default: Rendered, tmp_path: Path
) -> None:
    """Defect: the init container ran `prefect work-pool create --overwrite`, which cleared
    the concurrency limit and unpaused the pool on every worker restart. `flows setup` owns
    the pool's settings; the worker's start-up commands change the template at most."""
    pool = "dlt-owned"
    template_file = tmp_path / "base-job-template.json"
    template = json.loads(
        default.get("ConfigMap", "rel-prefect-dlt-base-job-template")["data"][
            "base-job-template.json"
        ]
    )
    template_file.write_text(json.dumps(template))
    env = prefect_server.client_env()
    setup = run_rendered(
        [
            "flows",
            "setup",
            "--pool",
            pool,
            "--pool-concurrency",
            "3",
            "--base-job-template",
            str(template_file),
        ],
        env,
    )
    assert setup.returncode == 0, setup.stdout + setup.stderr
    paused = run_rendered(["prefect", "work-pool", "pause", pool], env)
    assert paused.returncode == 0, paused.stdout + paused.stderr
    before = api_get(prefect_server, f"/work_pools/{pool}").json()
    assert (before["concurrency_limit"], before["status"]) == (3, "PAUSED")

    # a new chart version changed the template: the worker rolls and re-syncs
    template["variables"]["properties"]["cpu_request"]["default"] = "750m"
    template_file.write_text(json.dumps(template))
    worker = pod_spec(default, "Deployment", "rel-prefect-dlt-worker")
    for init in worker["initContainers"]:
        command = [str(template_file) if a.startswith("/template/") else a for a in init["command"]]
        command = [pool if a == "dlt-k8s" else a for a in command]
        if command[-2:] == ["--timeout", "600"]:
            command[-1] = "30"
        for _restart in range(2):
            done = run_rendered(command, env)
            assert done.returncode == 0, f"{init['name']}: {done.stdout}{done.stderr}"

    after = api_get(prefect_server, f"/work_pools/{pool}").json()
    assert after["concurrency_limit"] == 3, "the limit flows setup set survives"
    assert after["status"] == "PAUSED", "a paused pool stays paused"
    assert after["base_job_template"] == template, "the template is synced"


def test_deploy_hook_registers_the_deployments(
    prefect_server: PrefectServer, default: Rendered, tmp_path: Path
) -> None:
    """The hook's default command, as rendered, from the source tree's prefect.yaml (the
    image has it in the hook's workingDir) with the rendered template at /template."""
    template_file = tmp_path / "base-job-template.json"
    template_file.write_text(
        default.get("ConfigMap", "rel-prefect-dlt-base-job-template")["data"][
            "base-job-template.json"
        ]
    )
    hook = named_container(default, "Job", "rel-prefect-dlt-deploy-flows", "deploy-flows")
    args = [  # the image's /opt/flows is this tree
        arg.replace("/template/base-job-template.json", str(template_file)).replace(
            "/opt/flows", str(REPO)
        )
        for arg in hook["args"]
    ]
    literal_env = {e["name"]: e["value"] for e in hook["env"] if "value" in e}
    literal_env.pop("HOME")
    assert literal_env["FLOWS_PROJECT_DIR"] == hook["workingDir"] == "/opt/flows"
    literal_env["FLOWS_PROJECT_DIR"] = str(REPO)  # the image's /opt/flows is this tree
    done = run_rendered(
        hook["command"] + args,
        {**literal_env, **prefect_server.client_env()},
        timeout=300,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    pool = api_get(prefect_server, "/work_pools/dlt-k8s").json()
    defaults = pool["base_job_template"]["variables"]["properties"]
    assert defaults["namespace"]["default"] == "pipelines", "setup kept the chart's template"
    user, _, password = AUTH_STRING.partition(":")
    found = httpx.post(
        f"{prefect_server.api_url}/deployments/filter", json={}, auth=(user, password), timeout=10
    ).json()
    names = {(d["name"], d["work_pool_name"]) for d in found}
    assert ("synthetic-daily", "dlt-k8s") in names, names


def _pause_pool_command(rendered: Rendered, pool: str) -> list[str]:
    """The pre-delete hook's command as rendered, for `pool` instead of dlt-k8s."""
    command = named_container(rendered, "Job", "rel-prefect-dlt-pause-pool", "pause-pool")
    return [arg.replace("dlt-k8s", pool) for arg in command["command"]]


def test_uninstall_hook_pauses_the_pool(prefect_server: PrefectServer, default: Rendered) -> None:
    env = prefect_server.client_env()
    pool = "dlt-uninstall"
    created = run_rendered(["prefect", "work-pool", "create", pool, "--type", "kubernetes"], env)
    assert created.returncode == 0, created.stdout + created.stderr
    assert api_get(prefect_server, f"/work_pools/{pool}").json()["status"] != "PAUSED"
    for attempt in ("uninstall", "uninstall again"):
        done = run_rendered(_pause_pool_command(default, pool), env)
        assert done.returncode == 0, f"{attempt}: {done.stdout}{done.stderr}"
        assert api_get(prefect_server, f"/work_pools/{pool}").json()["status"] == "PAUSED"
    missing = run_rendered(_pause_pool_command(default, "no-such-pool"), env)
    assert missing.returncode == 0, "a missing pool never holds the uninstall"
    assert "work pool no-such-pool not paused" in missing.stdout


def test_uninstall_hook_gives_up_on_a_server_that_is_gone(tmp_path: Path) -> None:
    """Rendered with hooks.waitSeconds=3: the hook waits that long, says so, succeeds."""
    rendered = Rendered(
        "short wait",
        load_manifests(
            helm_template(
                set_values=["hooks.waitSeconds=3"],
                show_only=["templates/worker/pause-pool-job.yaml"],
            )
        ),
    )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]  # nothing listens once the socket is closed
    env = {
        "PREFECT_API_URL": f"http://127.0.0.1:{closed}/api",
        "PREFECT_API_AUTH_STRING": AUTH_STRING,
        "PREFECT_HOME": str(tmp_path),
        "HOME": str(tmp_path),
    }
    done = run_rendered(_pause_pool_command(rendered, "dlt-k8s"), env, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "server unreachable after 3 s: work pool dlt-k8s not paused" in done.stdout


def test_bucket_hook_creates_the_bucket_once(seaweed: SeaweedFS, default: Rendered) -> None:
    hook = named_container(default, "Job", "rel-prefect-dlt-create-bucket", "create-bucket")
    bucket = "chart-hook-bucket"
    env = {**seaweed.env(), "HOME": "/tmp"}
    command = [bucket if a == "prefect-dlt" else a for a in hook["command"]]
    first = run_rendered(command, env)
    assert first.returncode == 0, first.stderr
    assert f"bucket {bucket}: created" in first.stdout
    again = run_rendered(command, env)
    assert again.returncode == 0, again.stderr
    assert f"bucket {bucket}: exists" in again.stdout


def test_bucket_hook_gives_up_on_bad_credentials(seaweed: SeaweedFS, default: Rendered) -> None:
    hook = named_container(default, "Job", "rel-prefect-dlt-create-bucket", "create-bucket")
    env = {**seaweed.env(), "AWS_SECRET_ACCESS_KEY": "wrong"}
    command = [*hook["command"][:2], "never-made", "--timeout", "0"]
    done = run_rendered(command, env)
    assert done.returncode != 0
    assert "not ready after 0 s" in done.stderr


def test_tune_apply_refuses_a_request_above_the_pools_default_limit(
    prefect_server: PrefectServer,
    default: Rendered,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`flows tune --apply` writes job_variables the server would accept (each quantity is
    valid) but Kubernetes would not: the request is above the pool's default limit."""
    from prefect.client.orchestration import SyncPrefectClient

    from flows.errors import ConfigError
    from flows.kube.tuning import Recommendation, apply

    template_file = tmp_path / "base-job-template.json"
    template_file.write_text(
        default.get("ConfigMap", "rel-prefect-dlt-base-job-template")["data"][
            "base-job-template.json"
        ]
    )
    pool = "dlt-tune"
    setup = run_rendered(
        ["flows", "setup", "--pool", pool, "--base-job-template", str(template_file)],
        prefect_server.client_env(),
    )
    assert setup.returncode == 0, setup.stdout + setup.stderr
    # an explicit client: this process's Prefect settings may predate this server
    with SyncPrefectClient(prefect_server.api_url, auth_string=AUTH_STRING) as client:
        flow_id = client.create_flow_from_name("tune-check")
        deployment_id = client.create_deployment(
            flow_id=flow_id, name="tune-check", work_pool_name=pool, job_variables={}
        )
        deployment = client.read_deployment(deployment_id)
        too_big = Recommendation("tune-check", {}, {"memory_request": "3Gi"}, [])
        with pytest.raises(ConfigError, match=r"memory_request 3Gi is above memory_limit 2Gi"):
            apply(client, deployment, too_big)
        assert client.read_deployment(deployment_id).job_variables == {}, "nothing written"
        fits = Recommendation("tune-check", {}, {"memory_request": "1536Mi"}, [])
        apply(client, deployment, fits)
        assert client.read_deployment(deployment_id).job_variables == {"memory_request": "1536Mi"}
