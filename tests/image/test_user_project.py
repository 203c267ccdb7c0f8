"""A user's own project, from `flows init` to a flow-run Job, through the docs' commands.

The commands of the docs page "Your own pipelines" (docs/own-pipelines.md) are taken from the
page itself (tests/readme.py) and run here with these substitutions only, for what this
machine has instead of a cluster:

- `registry.example.com/data/prefect-dlt:0.1.0` -> the platform image the session built;
- `registry.example.com/data` -> a real registry (Debian's docker-registry) on 127.0.0.1;
- the example DSN -> a PostgreSQL role and database made for the test (random password);
- the pool `dlt-k8s` -> `user-project` (`--set workPool.name`): the platform tests' pool
  keeps its template, which has no warehouse Secret in it.

`docker build` and `docker push` run as written. `kubectl create secret` gets
`--dry-run=client -o yaml`: the v1 Secret it would send, decoded the way the API server
stores it. `helm upgrade --reuse-values` is rendered with `helm template` and the same
`--set`/`--set-string` flags over the platform install's values (release `rel`: the
session's Secrets).
The deploy hook of that render runs from the project image and registers the project's
prefect.yaml; the page's `flows deploy` (from the project folder) registers the same
deployment again. A flow run's Job is built by prefect-kubernetes' own worker code and its
container run as a kubelet would: the destination DSN reaches it only through `envFrom`.
`flows doctor` runs in that Job's container setup, after one poll of the chart's worker.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import psycopg2
import pytest
import yaml
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.objects import StateType
from prefect.exceptions import ObjectNotFound

from flows import __version__
from tests import readme
from tests.chart.chart import FULLNAME, NAMESPACE, REPO, Rendered, render
from tests.image import kube_docker
from tests.image.conftest import IMAGE, IMAGE_REPOSITORY, IMAGE_TAG, BuiltImage, _script
from tests.image.test_flow_run_job import Worker, unique, wait_for_run, worker_pool

if TYPE_CHECKING:
    from devstack.stack import LocalStack

# one worker builds the image once (pytest-xdist --dist loadgroup)
pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(1200),
    pytest.mark.xdist_group("image"),
]

PAGE_PLATFORM_IMAGE = "registry.example.com/data/prefect-dlt:0.1.0"
PAGE_REGISTRY = "registry.example.com/data"
PAGE_DSN = "postgresql://loader:CHANGE-ME@warehouse.example.com:5432/analytics"
PAGE_POOL = "dlt-k8s"
POOL = "user-project"
PROJECT_DIR = "/opt/project"


# ---------- helpers ----------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def run(argv: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    """Runs a command to its end; a non-zero exit fails the test with its output."""
    done = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    output = done.stdout[-2000:] + done.stderr[-3000:]
    assert done.returncode == 0, f"{' '.join(argv)[:200]} exited {done.returncode}:\n{output}"
    return done.stdout


def kubectl() -> Path:
    path = REPO / ".tools" / "bin" / "kubectl"
    if not os.access(path, os.X_OK):
        _script("install-helm.sh", timeout=300)
    return path


@dataclass(frozen=True)
class Warehouse:
    dsn: str
    password: str


@dataclass
class ProjectImage:
    ref: str
    seconds: float
    push: subprocess.Popen[str]  # the page's docker push, running while the Job runs


# ---------- fixtures ----------


@pytest.fixture(scope="module")
def registry(docker_daemon: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A v2 registry on 127.0.0.1 (a plain process; Docker pushes to loopback without TLS)."""
    if shutil.which("docker-registry") is None:
        _script("install-registry.sh", timeout=300)
    root = tmp_path_factory.mktemp("registry")
    port = free_port()
    config = {
        "version": 0.1,
        "log": {"level": "warn"},
        "storage": {"filesystem": {"rootdirectory": str(root / "data")}},
        "http": {"addr": f"127.0.0.1:{port}"},
    }
    (root / "config.yml").write_text(yaml.safe_dump(config))
    with (root / "registry.log").open("w") as log:
        proc = subprocess.Popen(
            ["docker-registry", "serve", str(root / "config.yml")], stdout=log, stderr=log
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (root / "registry.log").read_text()[-2000:]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the registry did not answer in 30 s"
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def warehouse(stack: LocalStack) -> Warehouse:
    """A database owned by a role of its own, with a random password: the only secret."""
    role, database = f"loader_{secrets.token_hex(3)}", f"user_project_{secrets.token_hex(3)}"
    password = secrets.token_urlsafe(18)
    con = psycopg2.connect(stack.postgres.dsn())
    con.autocommit = True
    with con.cursor() as cur:
        cur.execute(f"CREATE ROLE {role} LOGIN PASSWORD %s", (password,))
        cur.execute(f"CREATE DATABASE {database} OWNER {role}")
    con.close()
    port = stack.postgres.listen_port
    return Warehouse(f"postgresql://{role}:{password}@127.0.0.1:{port}/{database}", password)


@pytest.fixture(scope="module")
def replacements(image: BuiltImage, registry: str, warehouse: Warehouse) -> dict[str, str]:
    return {
        PAGE_PLATFORM_IMAGE: image.ref,
        PAGE_REGISTRY: registry,
        PAGE_DSN: warehouse.dsn,
        PAGE_POOL: POOL,
    }


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The page's `flows init` project, unmodified (the page asks for no edit)."""
    root = tmp_path_factory.mktemp("user-project")
    init = readme.command(("flows", "init"))
    run([sys.executable, "-m", "flows", *init.argv[1:]], cwd=root)
    return root / readme.command(("cd",)).argv[1]


@pytest.fixture(scope="module")
def project_image(project: Path, replacements: dict[str, str]) -> Iterator[ProjectImage]:
    """The page's `docker build` of the generated Dockerfile, then its `docker push`
    started in the background (it compresses every layer: the slowest step here)."""
    build = readme.command(("docker", "build")).substituted(replacements)
    tags = build.options("-t")
    assert len(tags) == 1 and build.argv[-1] == ".", build
    started = time.monotonic()
    # no --network host: the generated Dockerfile downloads nothing
    run(build.argv, cwd=project, timeout=600)
    seconds = time.monotonic() - started
    push = readme.command(("docker", "push")).substituted(replacements)
    assert push.argv[2:] == tags, (push, tags)
    proc = subprocess.Popen(push.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        yield ProjectImage(tags[0], seconds, proc)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        kube_docker.docker("image", "rm", "--force", tags[0], check=False)


@pytest.fixture(scope="module")
def warehouse_secret(replacements: dict[str, str]) -> dict[str, Any]:
    """The v1 Secret the page's `kubectl create secret` sends (client-side dry run)."""
    create = readme.command(("kubectl", "create", "secret")).substituted(replacements)
    out = run(
        [str(kubectl()), *create.argv[1:], "--dry-run=client", "-o", "yaml"],
        cwd=REPO,
        env={**os.environ, "KUBECONFIG": os.devnull},
    )
    manifest: dict[str, Any] = yaml.safe_load(out)
    return manifest


@pytest.fixture(scope="module")
def project_chart(replacements: dict[str, str]) -> Rendered:
    """The page's `helm upgrade`, rendered: its --set and --set-string flags over the
    platform install's; no other option is accepted unseen."""
    helm = readme.command(("helm", "upgrade")).substituted(replacements)
    assert helm.argv[2:4] == ["prefect-dlt", "charts/prefect-dlt"], helm
    assert (REPO / helm.argv[3] / "Chart.yaml").is_file(), helm
    assert helm.options("-n") == [NAMESPACE] and "--reuse-values" in helm.argv, helm
    rest = helm.argv[4:]
    while rest:
        flag = rest.pop(0)
        assert flag in ("-n", "--reuse-values", "--set", "--set-string"), f"{flag} not rendered"
        if flag != "--reuse-values":
            rest.pop(0)
    installed = [f"image.repository={IMAGE_REPOSITORY}", f"image.tag={IMAGE_TAG}"]
    manifests = render(
        set_values=[*installed, *helm.options("--set"), f"workPool.name={POOL}"],
        set_string_values=helm.options("--set-string"),
    )
    return Rendered("user-project", manifests)


@pytest.fixture(scope="module")
def project_node(
    node: kube_docker.Node,
    project_chart: Rendered,
    warehouse_secret: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> kube_docker.Node:
    """The session's "cluster" with the warehouse Secret and this render's ConfigMaps."""
    return kube_docker.Node(
        secrets={**node.secrets, **kube_docker.secret_data(warehouse_secret)},
        config_maps={m["metadata"]["name"]: m["data"] for m in project_chart.all("ConfigMap")},
        namespace=node.namespace,
        rewrites=node.rewrites,
        scratch=tmp_path_factory.mktemp("project-node"),
    )


@pytest.fixture(scope="module")
def client(stack: LocalStack) -> Iterator[SyncPrefectClient]:
    with get_client(sync_client=True) as c:
        yield c


@pytest.fixture(scope="module")
def hook_deployed(
    project_image: ProjectImage,
    project_chart: Rendered,
    project_node: kube_docker.Node,
    client: SyncPrefectClient,
    containers: list[str],
) -> Iterator[None]:
    """The render's deploy hook, run from the project image: the pool, the deployment.
    Removed at the end, so the platform tests see only their own deployments."""
    pod = project_chart.get("Job", f"{FULLNAME}-deploy-flows")["spec"]["template"]["spec"]
    pod_name = unique(f"{FULLNAME}-deploy-flows")
    for container in [*pod["initContainers"], *pod["containers"]]:
        name = f"{pod_name}-{container['name']}"
        containers.append(name)
        args = kube_docker.docker_run_args(pod, container, project_node, pod_name)
        result = kube_docker.run(name, args, timeout=300)
        assert result.code == 0, str(result)
    try:
        yield
    finally:
        for deployment in client.read_deployments():
            if deployment.work_pool_name == POOL:
                client.delete_deployment(deployment.id)
        with contextlib.suppress(ObjectNotFound):
            client.delete_work_pool(POOL)


# ---------- tests ----------


def test_project_image_has_the_project_compiled_and_runs_read_only(
    project_image: ProjectImage,
) -> None:
    config = kube_docker.image_config(project_image.ref)
    env = dict(item.split("=", 1) for item in config["Env"])
    assert config["User"] == "1001:1001", config["User"]
    assert config["WorkingDir"] == PROJECT_DIR and env["FLOWS_PROJECT_DIR"] == PROJECT_DIR
    script = (
        "id -u; test ! -e .dlt/secrets.toml; test ! -w .; test ! -w my_project; "
        "python -v -c 'import my_project.flows' 2>&1 "
        "| grep -o \"code object from '/opt/project/.*'\"; "
        "flows pipelines"
    )
    done = subprocess.run(
        [
            "docker", "run", "--rm", "--read-only",
            "--tmpfs", "/tmp:rw,exec,nosuid,nodev,mode=1777",
            "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--network", "none",
            project_image.ref, "sh", "-ec", script,
        ],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    out = done.stdout
    assert done.returncode == 0, f"exited {done.returncode}:\n{out}{done.stderr[-3000:]}"
    lines = out.splitlines()
    assert lines[0] == "1001", out
    compiled = sorted(line for line in lines if line.startswith("code object from"))
    assert compiled == [
        f"code object from '/opt/project/my_project/__pycache__/{m}.cpython-311.pyc'"
        for m in ("__init__", "flows", "sources")
    ], out
    assert any(
        line.startswith("my_project ") and "/opt/project/.dlt/config.toml" in line for line in lines
    ), out
    print(f"project image {project_image.ref} built in {project_image.seconds:.1f} s")


def test_readme_helm_values_point_the_hook_and_flow_runs_at_the_project(
    project_chart: Rendered, project_image: ProjectImage, warehouse_secret: dict[str, Any]
) -> None:
    hook = project_chart.get("Job", f"{FULLNAME}-deploy-flows")["spec"]["template"]["spec"]
    deploy = hook["containers"][0]
    env = {e["name"]: e.get("value") for e in deploy["env"]}
    assert deploy["image"] == project_image.ref
    assert deploy["workingDir"] == PROJECT_DIR
    assert env["FLOWS_IMAGE"] == project_image.ref and env["FLOWS_PROJECT_DIR"] == PROJECT_DIR
    assert env["FLOWS_REGISTER_EXAMPLES"] == "false"
    assert f"flows deploy --project-dir {PROJECT_DIR}" in deploy["args"][0]
    assert "/opt/flows" not in deploy["args"][0], deploy["args"]
    worker = project_chart.get("Deployment", f"{FULLNAME}-worker")["spec"]["template"]["spec"]
    assert {c["image"] for c in worker["containers"] + worker["initContainers"]} == {IMAGE}

    config = project_chart.get("ConfigMap", f"{FULLNAME}-base-job-template")
    variables = json.loads(config["data"]["base-job-template.json"])["variables"]["properties"]
    secret_name = warehouse_secret["metadata"]["name"]
    # flow runs of a deployment without an image run the platform's; the project's
    # deployment names its image (FLOWS_IMAGE), checked once registered
    assert variables["image"]["default"] == IMAGE
    assert variables["env_from_secrets"]["default"] == [{"secretRef": {"name": secret_name}}]
    assert variables["env"]["default"]["PIPELINES__DESTINATION"] == "postgres"
    assert "DESTINATION__POSTGRES__CREDENTIALS" not in json.dumps(variables)


def test_project_pipeline_runs_as_a_flow_run_job_with_credentials_from_a_secret(
    hook_deployed: None,
    project: Path,
    project_image: ProjectImage,
    project_chart: Rendered,
    project_node: kube_docker.Node,
    warehouse: Warehouse,
    warehouse_secret: dict[str, Any],
    replacements: dict[str, str],
    stack: LocalStack,
    client: SyncPrefectClient,
    containers: list[str],
    tmp_path: Path,
) -> None:
    assert warehouse_secret["metadata"] == {"name": "warehouse-credentials", "namespace": NAMESPACE}
    name = "my_project-daily"
    by_hook = client.read_deployment_by_name(f"{name}/{name}")
    registered = {
        "work_pool_name": POOL,
        "entrypoint": "my_project.flows:daily",
        "pull_steps": [
            {"prefect.deployments.steps.set_working_directory": {"directory": PROJECT_DIR}}
        ],
        "version": __version__,
    }
    assert {k: getattr(by_hook, k) for k in registered} == registered
    assert by_hook.job_variables["image"] == project_image.ref, by_hook.job_variables

    # the page's deploy from the project folder registers the same deployment
    deploy = readme.command(("flows", "deploy")).substituted(replacements)
    api = {"PREFECT_API_URL": stack.api_url, "PREFECT_API_AUTH_STRING": stack.auth_string}
    run(
        [sys.executable, "-m", "flows", *deploy.argv[1:]],
        cwd=project,
        env={**os.environ, **api, **deploy.env},
    )
    dep = client.read_deployment_by_name(f"{name}/{name}")
    assert dep.id == by_hook.id and dep.job_variables == by_hook.job_variables
    assert {k: getattr(dep, k) for k in registered} == registered

    flow_run = client.create_flow_run_from_deployment(dep.id)
    worker = Worker(project_chart, project_node, containers, tmp_path)
    assert worker_pool(project_chart) == POOL
    manifest = worker.manifest(flow_run.id)
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == project_image.ref
    # from the chart's default (flowRuns.envFromSecrets), not from the deployment or the run
    assert "env_from_secrets" not in dep.job_variables and not flow_run.job_variables
    assert container["envFrom"] == [{"secretRef": {"name": "warehouse-credentials"}}]
    env_names = {e["name"] for e in container["env"]}
    assert "DESTINATION__POSTGRES__CREDENTIALS" not in env_names, env_names
    assert warehouse.password not in json.dumps(manifest)

    # as the kubelet: no Secret, no container (unless the reference is optional)
    bare = kube_docker.Node(secrets=kube_docker.secret_data(), namespace=NAMESPACE)
    with pytest.raises(KeyError, match="secret 'warehouse-credentials'"):
        kube_docker.container_env({"envFrom": container["envFrom"]}, bare, "pod")
    optional = [{"secretRef": {"name": "warehouse-credentials", "optional": True}}]
    assert kube_docker.container_env({"envFrom": optional}, bare, "pod") == {}

    pod_name = worker.start(manifest)
    final = wait_for_run(client, flow_run.id, pod_name)
    assert final.state is not None and final.state.type == StateType.COMPLETED, final.state
    with psycopg2.connect(warehouse.dsn) as con, con.cursor() as cur:
        cur.execute("SELECT COUNT(*), COUNT(DISTINCT id), MIN(id), MAX(id) FROM my_project.items")
        assert cur.fetchall() == [(100, 100, 1, 100)]

    # the password is nowhere in Prefect: not the run, its deployment or the pool
    seen = {
        "flow run job_variables": json.dumps(client.read_flow_run(flow_run.id).job_variables),
        "deployment": client.read_deployment(dep.id).model_dump_json(),
        "work pool": client.read_work_pool(POOL).model_dump_json(),
    }
    leaked = [where for where, text in seen.items() if warehouse.password in text]
    assert leaked == [], f"the warehouse password is in the {leaked}"


def test_readme_doctor_passes_in_a_flow_run_container(
    hook_deployed: None,
    project_chart: Rendered,
    project_node: kube_docker.Node,
    client: SyncPrefectClient,
    containers: list[str],
    tmp_path: Path,
) -> None:
    """`flows doctor` with what a flow run has (project image, its Secrets), after one poll
    of the chart's worker (its observer off: no Kubernetes API here for it to watch)."""
    worker_pod = project_chart.get("Deployment", f"{FULLNAME}-worker")["spec"]["template"]["spec"]
    worker = next(c for c in worker_pod["containers"] if c["name"] == "worker")
    poll = [a for a in worker["command"] if a != "--with-healthcheck"] + ["--run-once"]
    name = unique(f"{FULLNAME}-worker")
    containers.append(name)
    args = kube_docker.docker_run_args(
        worker_pod,
        worker,
        project_node,
        name,
        command=poll,
        extra_env={"PREFECT_INTEGRATIONS_KUBERNETES_OBSERVER_ENABLED": "false"},
    )
    polled = kube_docker.run(name, args, timeout=180)
    assert polled.code == 0, str(polled)

    deployment = client.read_deployment_by_name("my_project-daily/my_project-daily")
    flow_run = client.create_flow_run_from_deployment(deployment.id)
    manifest = Worker(project_chart, project_node, containers, tmp_path).manifest(flow_run.id)
    client.delete_flow_run(flow_run.id)  # only its Job's setup is wanted, not a run
    pod = manifest["spec"]["template"]["spec"]
    doctor = readme.command(("flows", "doctor"))
    name = unique("doctor")
    containers.append(name)
    args = kube_docker.docker_run_args(
        pod,
        pod["containers"][0],
        project_node,
        name,
        command=doctor.argv,
        extra_env={"FLOWS_WORK_POOL": POOL},  # the image says dlt-k8s, the page's pool
    )
    result = kube_docker.run(name, args, timeout=180)
    assert result.code == 0 and "8 of 8 checks passed" in result.logs, str(result)
    # the project's pipeline and the platform's own (entry points of the flows package)
    assert re.search(
        r"^\[ok  \] pipelines: \d+ declared, each imports and reaches its destination$",
        result.logs,
        re.M,
    ), result.logs


def test_readme_push_put_the_image_in_the_registry(
    project_image: ProjectImage, registry: str
) -> None:
    """The pushed manifest's config is the image the Jobs ran (the same image ID)."""
    out, _ = project_image.push.communicate(timeout=600)
    assert project_image.push.returncode == 0, f"docker push failed:\n{out[-3000:]}"
    repository, _, tag = project_image.ref.removeprefix(f"{registry}/").partition(":")
    answer = httpx.get(
        f"http://{registry}/v2/{repository}/manifests/{tag}",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    image_id = kube_docker.docker("image", "inspect", "--format", "{{.Id}}", project_image.ref)
    assert answer.json()["config"]["digest"] == image_id.strip()
