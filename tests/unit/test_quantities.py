"""One Kubernetes quantity grammar (flows/system/quantities.py) for the pool template and the chart,
checked against the kubernetes client's parser; requests above limits refused in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from kubernetes.utils.quantity import parse_quantity

from flows.errors import EXIT_CONFIG, ConfigError
from flows.kube.deploy_check import check_project
from flows.kube.pool_template import base_job_template
from flows.system.quantities import (
    QUANTITY_PATTERN,
    check_pod_resources,
    check_requests_within_limits,
    is_quantity,
)
from tests.chart.chart import schema_nodes

REPO = Path(__file__).resolve().parents[2]
CHART_SCHEMA = json.loads((REPO / "charts/prefect-dlt/values.schema.json").read_text())

# Accepted by Kubernetes and by parse_quantity (the Kubernetes docs' own examples first).
GOOD = [
    "129e6",
    "129M",
    "128974848",
    "123Mi",
    "0.5Gi",
    "1500m",
    "1",
    "1.5",
    ".5",
    "2.",
    "1E3",
    "1e-3",
    "2Ki",
    "3Ti",
    "1k",
    "500u",
    "10n",
    "+1",
    "4Pi",
    "1Ei",
    "7E",
]
# Refused by parse_quantity
BAD_FOR_BOTH = ["abc", "", "1Gb", "1ki", "Mi", "1.2.3", "1e", "0x10", "1Mb"]
# parse_quantity takes Python's Decimal syntax as well; Kubernetes refuses these
BAD_FOR_KUBERNETES = ["-1", "1 Gi", "NaN", "Infinity", "1_000", " 1", "1e3Mi"]


def _parses(text: str) -> bool:
    try:
        parse_quantity(text)
    except ValueError:
        return False
    return True


def _template_quantity_variables() -> dict[str, dict[str, Any]]:
    props = base_job_template()["variables"]["properties"]
    return {k: v for k, v in props.items() if v.get("pattern") == QUANTITY_PATTERN}


def _chart_quantity_nodes() -> list[tuple[str, dict[str, Any]]]:
    return [(p, n) for p, n in schema_nodes(CHART_SCHEMA) if n.get("pattern") == QUANTITY_PATTERN]


def test_quantities_parse_as_the_kubernetes_client_does_without_its_package() -> None:
    """flows.system.quantities runs the client's own parser without importing the `kubernetes`
    package (its `__init__` loads the whole API client into every flow-run process)."""
    code = (
        "import sys, json; from flows.system.quantities import parse_quantity; "
        f"print(json.dumps([str(parse_quantity(t)) for t in {GOOD!r}]), "
        "'kubernetes' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    parsed, package_imported = out.stdout.rsplit(" ", 1)
    assert json.loads(parsed) == [str(parse_quantity(t)) for t in GOOD]
    assert package_imported.strip() == "False"


def test_every_quantity_takes_the_one_pattern() -> None:
    assert set(_template_quantity_variables()) == {
        "cpu_request",
        "cpu_limit",
        "memory_request",
        "memory_limit",
        "tmp_size_limit",
        "ephemeral_storage_request",
        "ephemeral_storage_limit",
    }
    paths = [p for p, _ in _chart_quantity_nodes()]
    assert "#/definitions/quantity" in paths
    assert len(paths) == 8, paths  # the definition and flowRuns.resourceDefaults' seven
    # no other quantity-looking pattern survives in the chart's schema
    text = json.dumps(CHART_SCHEMA)
    assert "Ki|Mi" not in text.replace(json.dumps(QUANTITY_PATTERN)[1:-1], "")


@pytest.mark.parametrize("text", GOOD)
def test_good_quantities_parse_and_pass_every_schema(text: str) -> None:
    assert _parses(text) and is_quantity(text)
    template = base_job_template()["variables"]
    for name in _template_quantity_variables():
        jsonschema.validate({name: text}, template)
    for _path, node in _chart_quantity_nodes():
        jsonschema.validate(text, node)


@pytest.mark.parametrize("text", BAD_FOR_BOTH + BAD_FOR_KUBERNETES)
def test_bad_quantities_fail_every_schema(text: str) -> None:
    if text in BAD_FOR_BOTH:
        assert not _parses(text)
    else:
        assert _parses(text), "parse_quantity is laxer than Kubernetes here"
    assert not is_quantity(text)
    template = base_job_template()["variables"]
    for name in _template_quantity_variables():
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({name: text}, template)
    for _, node in _chart_quantity_nodes():
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(text, node)


DEFAULTS = {"cpu_request": "500m", "cpu_limit": "2", "memory_request": "1Gi", "memory_limit": "2Gi"}


@pytest.mark.parametrize(
    ("job_variables", "message"),
    [
        (
            {"memory_request": "3Gi", "memory_limit": "2Gi"},
            "memory_request 3Gi is above memory_limit 2Gi",
        ),
        ({"memory_request": "3Gi"}, "memory_limit 2Gi (the pool default)"),
        ({"cpu_request": "2500m"}, "cpu_request 2500m is above cpu_limit 2 (the pool default)"),
        (
            {"ephemeral_storage_request": "12Gi", "ephemeral_storage_limit": "11Gi"},
            "ephemeral_storage_request 12Gi is above ephemeral_storage_limit 11Gi",
        ),
        (
            {
                "cpu_request": "1.5",
                "cpu_limit": "1500m",
                "memory_request": "129e6",
                "memory_limit": "128974848",
            },
            "memory_request 129e6 is above memory_limit 128974848",
        ),
    ],
)
def test_request_above_limit_is_one_line_naming_both(
    job_variables: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        check_requests_within_limits(job_variables, DEFAULTS)
    text = str(caught.value)
    assert message in text and "\n" not in text
    assert caught.value.exit_code == EXIT_CONFIG


def test_requests_within_limits_pass() -> None:
    check_requests_within_limits({"memory_request": "0.5Gi", "memory_limit": "512Mi"}, DEFAULTS)
    check_requests_within_limits({"cpu_request": "2", "cpu_limit": "2000m"}, DEFAULTS)
    check_requests_within_limits({}, DEFAULTS)
    with pytest.raises(ConfigError, match="cpu_limit='lots'"):
        check_requests_within_limits({"cpu_limit": "lots"}, DEFAULTS)


def test_the_pods_own_resources_at_attempt_start() -> None:
    check_pod_resources({"FLOWS_CPU_REQUEST": "500m", "FLOWS_CPU_LIMIT": "1"})
    with pytest.raises(ConfigError, match="flow-run pod: memory_request 2Gi is above"):
        check_pod_resources({"FLOWS_MEMORY_REQUEST": "2Gi", "FLOWS_MEMORY_LIMIT": "1Gi"})


def _project(tmp_path: Path, job_variables: dict[str, str]) -> Path:
    (tmp_path / "prefect.yaml").write_text(
        json.dumps(
            {
                "deployments": [
                    {"name": "ok", "work_pool": {"name": "p", "job_variables": {}}},
                    {"name": "greedy", "work_pool": {"name": "p", "job_variables": job_variables}},
                ]
            }
        )
    )
    return tmp_path


def test_deploy_check_reads_the_projects_deployments(tmp_path: Path) -> None:
    import yaml

    deployments = yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]
    checked = check_project(REPO, lambda pool: DEFAULTS)
    assert checked == len(deployments) >= 6, "the platform's own prefect.yaml"
    project = _project(tmp_path, {"memory_request": "4Gi"})
    with pytest.raises(ConfigError) as caught:
        check_project(project, lambda pool: DEFAULTS)
    assert "deployment 'greedy': memory_request 4Gi is above memory_limit 2Gi" in str(caught.value)
    check_project(project, lambda pool: {**DEFAULTS, "memory_limit": "8Gi"})


def test_flows_deploy_refuses_before_prefect_deploy_runs(tmp_path: Path) -> None:
    """No server answers here: the pool defaults come from the packaged template (limit
    2Gi), and `prefect deploy` is never started."""
    project = _project(tmp_path, {"memory_request": "3Gi"})
    env = {
        **os.environ,
        "PREFECT_API_URL": "http://127.0.0.1:9/api",
        "PREFECT_CLIENT_MAX_RETRIES": "0",
        "PREFECT_HOME": str(tmp_path / "home"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "flows", "deploy", "--project-dir", str(project)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == EXIT_CONFIG, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines == [
        "error: ConfigError: prefect.yaml deployment 'greedy': memory_request 3Gi is above "
        "memory_limit 2Gi (the pool default): Kubernetes refuses to create the pod"
    ], done.stderr
