"""The alert rules (charts/prefect-dlt/files/alerts.yaml) through promtool: they parse, and
every alert has unit tests (tests/chart/promtool/alerts_test.yaml) where it fires and where
it does not."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.chart.chart import CHART
from tests.integration.prometheus import binary

RULES = CHART / "files" / "alerts.yaml"
UNIT_TESTS = CHART.parents[1] / "tests" / "chart" / "promtool" / "alerts_test.yaml"


def _alerts() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule["alert"] for group in groups for rule in group["rules"]]


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary("promtool"), *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_promtool_checks_the_rules() -> None:
    done = _promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(_alerts())} rules found" in done.stdout


def test_promtool_unit_tests_pass() -> None:
    done = _promtool("test", "rules", str(UNIT_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    cases = [
        case
        for test in yaml.safe_load(UNIT_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    ]
    fires = {c["alertname"] for c in cases if c.get("exp_alerts")}
    quiet = {c["alertname"] for c in cases if not c.get("exp_alerts")}
    assert set(_alerts()) == fires == quiet


def test_a_broken_expectation_fails_promtool(tmp_path: Path) -> None:
    """The unit tests can fail: expecting nothing where an alert fires is reported."""
    tests = yaml.safe_load(UNIT_TESTS.read_text())
    tests["rule_files"] = [str(RULES)]
    first = tests["tests"][0]
    for case in first["alert_rule_test"]:
        case["exp_alerts"] = []
    broken = tmp_path / "broken_test.yaml"
    broken.write_text(yaml.safe_dump(tests))
    done = _promtool("test", "rules", str(broken))
    assert done.returncode != 0 and "FAILED" in done.stdout + done.stderr
