"""The values table of the chart README is generated from values.yaml's comments."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from types import ModuleType

from tests.chart.chart import CHART, REPO

SCRIPT = REPO / "scripts" / "chart-values-table.py"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("chart_values_table", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_table_is_up_to_date() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr


def test_check_fails_on_a_stale_table() -> None:
    module = _script()
    values = (CHART / "values.yaml").read_text()
    readme = (CHART / "README.md").read_text()
    changed = values.replace("# -- DNS domain of the cluster", "# -- The DNS domain")
    assert module.render_readme(readme, values) == readme
    assert module.render_readme(readme, changed) != readme
    assert '| `clusterDomain` | `"cluster.local"` | The DNS domain' in module.render_readme(
        readme, changed
    )


def test_every_documented_value_has_a_row() -> None:
    rows = {key for key, _, _ in _script().rows((CHART / "values.yaml").read_text())}
    for key in (
        "image.repository",
        "flowRuns.envFromSecrets",
        "hooks.activeDeadlineSeconds",
        "worker.queues",
        "server.ingress.extraHosts",
        "networkPolicy.egress.flowRuns",
        "postgresql.persistence.size",
        "generatedSecrets.allowEphemeral",
    ):
        assert key in rows, key
