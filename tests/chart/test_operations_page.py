"""Every command of docs/operations.md, read from the page.

- `flows` and `prefect` commands run, in the page's order, against a real Prefect server on
  which the chart's deploy hook (as rendered) registered the platform's deployments and
  where the synthetic pipeline has run records;
- `helm install|upgrade` render the chart with the same flags (`helm template`; the reuse
  flags only choose which values Helm starts from) and every object validates against the
  Kubernetes 1.35 schema;
- the commands that need a Kubernetes API server, which these machines do not have, are
  checked against the rendered chart: the hooks they trigger exist for the right phases and
  the objects they name exist (those hooks' commands run against real services in
  test_releases.py and test_scripts_against_services.py); `kubectl create ... --dry-run=client`
  runs for real.

A command the page gains that none of these recognise fails the test."""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

from flows.prefect.records import write_record
from flows.progress.records import RunRecord
from tests.chart.chart import (
    BASE_VALUES,
    CHART,
    REPO,
    Rendered,
    helm_binary,
    load_manifests,
    run_helm,
    schema_errors,
)
from tests.chart.services import (
    AUTH_STRING,
    BIN,
    PrefectServer,
    release,
    run_deploy_hook,
    run_rendered,
)
from tests.readme import run_script

pytestmark = pytest.mark.integration

PAGE = REPO / "docs" / "operations.md"
RELEASE, NAMESPACE = "prefect-dlt", "pipelines"


def page_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", PAGE.read_text(), flags=re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def rendered_as(args: list[str]) -> Rendered:
    """`helm install|upgrade RELEASE CHART -n NS FLAGS` as `helm template`."""
    assert args[:2] in (["helm", "upgrade"], ["helm", "install"]), args
    assert args[2:4] == [RELEASE, "charts/prefect-dlt"], args
    template = ["template", RELEASE, str(CHART), "--values", str(BASE_VALUES)]
    rest = args[4:]
    while rest:
        flag, *rest = rest
        if flag in ("--reset-then-reuse-values", "--reset-values", "--reuse-values"):
            continue
        value, *rest = rest
        template += [flag, value]
    return Rendered(" ".join(args), load_manifests(run_helm(*template)))


def hook_phases(rendered: Rendered, kind: str, name: str) -> set[str]:
    hook = rendered.get(kind, name)["metadata"].get("annotations", {}).get("helm.sh/hook", "")
    return set(hook.split(","))


@pytest.fixture(scope="module")
def operated(prefect_server: PrefectServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The platform's deployments registered by the deploy hook, run records for one."""
    tmp = tmp_path_factory.mktemp("operations")
    run_deploy_hook(release({}), prefect_server, REPO, tmp)
    with (
        temporary_settings(
            {PREFECT_API_URL: prefect_server.api_url, PREFECT_API_AUTH_STRING: AUTH_STRING}
        ),
        get_client(sync_client=True) as client,
    ):
        deployment = client.read_deployment_by_name("synthetic-daily/synthetic-daily")
        for peak in (600, 700, 650):
            run = client.create_flow_run_from_deployment(deployment.id)
            record = RunRecord(
                "synthetic-daily",
                "synthetic",
                str(run.id),
                1,
                "completed",
                40.0,
                30.0,
                peak * 2**20,
            )
            write_record(record, run.id, None)
    (tmp / "my-values.yaml").write_text(BASE_VALUES.read_text())
    return tmp


def test_every_command_of_the_operations_page(
    operated: Path, prefect_server: PrefectServer
) -> None:
    env = {
        **prefect_server.client_env(),
        "PATH": f"{BIN}:/usr/bin:/bin",
        "FLOWS_PROJECT_DIR": str(REPO),  # the project the deploy hook registered
    }
    kubectl = helm_binary().parent / "kubectl"
    default = release({})

    def cli(line: str) -> None:
        """Exit 0; `flows doctor` fails here on what only a cluster has (a worker polling
        the pool): its concurrency-slots check must pass."""
        done = run_script(["set -o pipefail", line], operated, env, timeout=300)
        said = f"{line}\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
        if line == "flows doctor":
            assert "[ok  ] concurrency slots: no leaked tag slots" in done.stdout, said
        else:
            assert done.returncode == 0, said

    def helm_render(line: str) -> None:
        args = shlex.split(line.replace("tuning-values.yaml", str(operated / "tuning-values.yaml")))
        args = [str(operated / a) if a == "my-values.yaml" else a for a in args]
        rendered = rendered_as(args)
        errors = [e for m in rendered.manifests if (e := schema_errors(m, "1.35")) is not None]
        assert not errors, f"{line}: {errors[:3]}"

    def rollback(line: str) -> None:
        assert hook_phases(default, "Job", "rel-prefect-dlt-rollback-check") == {"pre-rollback"}
        assert "post-rollback" in hook_phases(default, "Job", "rel-prefect-dlt-deploy-flows")

    def uninstall(line: str) -> None:
        assert hook_phases(default, "Job", "rel-prefect-dlt-pause-pool") == {"pre-delete"}

    def kubectl_secret(line: str) -> None:
        create = line.split("|")[0].split()
        assert create[:4] == ["kubectl", "-n", NAMESPACE, "create"], create
        done = subprocess.run(
            [str(kubectl), *create[1:]], capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0 and "kind: Secret" in done.stdout, done.stderr
        assert line.split("|")[1].split() == ["kubectl", "apply", "-f", "-"]

    def names(kind: str, name: str) -> Callable[[str], None]:
        def check(line: str) -> None:
            assert default.find(kind, name.replace(RELEASE, "rel-prefect-dlt")), line

        return check

    cluster_only: dict[str, Callable[[str], None]] = {
        "helm rollback prefect-dlt": rollback,
        "helm uninstall prefect-dlt": uninstall,
        "kubectl -n pipelines create secret generic": kubectl_secret,
        "kubectl -n pipelines exec statefulset/prefect-dlt-postgresql": names(
            "StatefulSet", "prefect-dlt-postgresql"
        ),
        "kubectl -n pipelines patch secret prefect-dlt-database": names(
            "Secret", "prefect-dlt-database"
        ),
        # no object of the chart: a node of the cluster
        "kubectl drain node-1": lambda line: None,
    }
    seen = []
    for line in page_commands():
        if line.startswith(("flows ", "prefect ")):
            cli(line)
        elif line.startswith(("helm upgrade ", "helm install ")):
            helm_render(line)
        else:
            known = [prefix for prefix in cluster_only if line.startswith(prefix)]
            assert known, f"docs/operations.md: no test covers {line!r}"
            cluster_only[known[0]](line)
        seen.append(line.split()[0])
    assert {"flows", "prefect", "helm", "kubectl"} <= set(seen)
    tuned = (operated / "tuning-values.yaml").read_text()
    assert "synthetic-daily/synthetic-daily" in tuned and "memory_limit" in tuned, tuned
    pool = run_rendered(["prefect", "work-pool", "inspect", "dlt-k8s"], env)
    assert "concurrency_limit=12" in pool.stdout.replace(" ", ""), pool.stdout
