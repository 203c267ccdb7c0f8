"""checkov (the scanner Helm users run) on the chart and on the rendered manifests.

Every failed check is either fixed or listed with its reason in
charts/prefect-dlt/checkov-skips.yaml; an unlisted failure fails. checkov lives in its own
venv (scripts/install-checkov.sh): its dependencies clash with requirements.lock. It prints
a traceback when it cannot reach its vendor's API; that is harmless and ignored here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.chart import BASE_VALUES, CHART, REPO, helm_binary, helm_template

SKIPS: dict[str, Any] = yaml.safe_load((CHART / "checkov-skips.yaml").read_text())
VALUE_SETS = {
    "default": [],
    "production": [CHART / "values-production.yaml"],
    "ha": [REPO / "tests" / "chart" / "values" / "ha.yaml"],
}


@pytest.fixture(scope="module")
def checkov() -> Path:
    path = Path(os.environ.get("CHECKOV") or REPO / ".tools" / "checkov-venv" / "bin" / "checkov")
    if not path.is_file():
        done = subprocess.run(
            ["bash", str(REPO / "scripts" / "install-checkov.sh")],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if done.returncode != 0:
            pytest.fail(f"install-checkov.sh failed:\n{done.stderr[-3000:]}", pytrace=False)
    return path


def _scan(checkov: Path, args: list[str], cwd: Path) -> list[tuple[str, str]]:
    """(check id, resource) of every failed check."""
    env = {**os.environ, "PATH": f"{helm_binary().parent}:{os.environ['PATH']}"}
    done = subprocess.run(
        [str(checkov), *args, "--compact", "--quiet", "-o", "json", "--skip-download"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
        env=env,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr[-3000:]
    reports = json.loads(done.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    assert reports and all(r["summary"]["parsing_errors"] == 0 for r in reports), done.stdout[:2000]
    assert sum(r["summary"]["passed"] for r in reports) > 100, "checkov checked something"
    return [(c["check_id"], c["resource"]) for r in reports for c in r["results"]["failed_checks"]]


def _unlisted(failures: list[tuple[str, str]]) -> list[str]:
    out = []
    for check, resource in failures:
        skip = SKIPS.get(check)
        only = skip.get("only") if isinstance(skip, dict) else None
        if skip is None or (only and not any(part in resource for part in only)):
            out.append(f"{check} {resource}")
    return sorted(set(out))


def test_every_skip_has_a_one_line_reason() -> None:
    for check, skip in SKIPS.items():
        reason = skip["reason"] if isinstance(skip, dict) else skip
        assert check.startswith("CKV_K8S_") and isinstance(reason, str) and len(reason) > 20
        assert "\n" not in reason


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_rendered_manifests(checkov: Path, tmp_path: Path, value_set: str) -> None:
    manifest = tmp_path / f"{value_set}.yaml"
    manifest.write_text(helm_template(VALUE_SETS[value_set]))
    failures = _scan(checkov, ["-f", manifest.name, "--framework", "kubernetes"], tmp_path)
    assert not _unlisted(failures), "\n".join(_unlisted(failures))


def test_the_chart(checkov: Path, tmp_path: Path) -> None:
    """checkov's helm framework renders the chart with its own values.yaml: a copy whose
    values carry what a real install sets (tests/chart/base-values.yaml)."""
    chart = tmp_path / CHART.name
    shutil.copytree(CHART, chart)
    values = yaml.safe_load((chart / "values.yaml").read_text())
    base = yaml.safe_load(BASE_VALUES.read_text())
    values["image"].update(base["image"])
    values["generatedSecrets"].update(base["generatedSecrets"])
    (chart / "values.yaml").write_text(yaml.safe_dump(values))
    failures = _scan(checkov, ["-d", chart.name, "--framework", "helm"], tmp_path)
    assert not _unlisted(failures), "\n".join(_unlisted(failures))


def test_an_unlisted_failure_fails(checkov: Path, tmp_path: Path) -> None:
    """The check is live: a privileged container is reported and not excused."""
    manifest = tmp_path / "bad.yaml"
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "bad", "namespace": "x"},
        "spec": {
            "containers": [
                {
                    "name": "c",
                    "image": "i@sha256:" + "0" * 64,
                    "securityContext": {"privileged": True},
                }
            ]
        },
    }
    manifest.write_text(yaml.safe_dump(pod))
    failures = _scan_any(checkov, manifest)
    assert any(check == "CKV_K8S_16" for check, _ in failures), failures  # privileged
    assert "CKV_K8S_16 Pod.x.bad" in _unlisted(failures)


def _scan_any(checkov: Path, manifest: Path) -> list[tuple[str, str]]:
    done = subprocess.run(
        [
            str(checkov),
            "-f",
            manifest.name,
            "--framework",
            "kubernetes",
            "--compact",
            "--quiet",
            "-o",
            "json",
            "--skip-download",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=manifest.parent,
        check=False,
    )
    report = json.loads(done.stdout)
    report = report[0] if isinstance(report, list) else report
    return [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
