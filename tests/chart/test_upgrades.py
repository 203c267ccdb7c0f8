"""Upgrading from an earlier release: the chart's version, its changelog, today's chart over
the values an earlier release computed, and `--reuse-values`.

`helm upgrade --reuse-values` replaces the new chart's defaults by the values the earlier
release computed (Helm's upgrade action coalesces the old chart's values with the old user
values and makes them the chart's values), so every value added since is missing. The chart
then fails with one line naming --reset-then-reuse-values, not with a schema's "missing
property" or a template's nil pointer.
"""

from __future__ import annotations

import re
import shutil
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.chart.chart import (
    CHART,
    KUBERNETES_VERSIONS,
    REPO,
    HelmError,
    Rendered,
    copy_chart,
    helm_template,
    render,
    schema_errors,
)

OLD_VALUES = Path(__file__).resolve().parent / "upgrade" / "values-0.1.0.yaml"
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?$")


def test_chart_version_is_semantic_and_in_the_changelog() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert SEMVER.match(chart["version"]), chart["version"]
    assert int(chart["version"].split(".")[0]) >= 1, "a released chart, not 0.x"
    package = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert chart["appVersion"] == package, "appVersion is the flows package's version"
    changelog = (CHART / "CHANGELOG.md").read_text()
    assert f"## [{chart['version']}]" in changelog, "every chart version has its entry"
    assert "## [0.1.0]" in changelog


@pytest.fixture(scope="module")
def over_old_values() -> Rendered:
    return Rendered("0.1.0 values", render([OLD_VALUES]))


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_todays_chart_over_an_earlier_releases_values(
    over_old_values: Rendered, version: str
) -> None:
    """`helm upgrade -f` with what `helm get values --all` printed for a 0.1.0 release."""
    errors = [
        f"{m['kind']}/{m['metadata']['name']}: {problem}"
        for m in over_old_values.manifests
        if (problem := schema_errors(m, version))
    ]
    assert not errors, "\n".join(errors)
    kinds = {m["kind"] for m in over_old_values.manifests}
    assert {"Deployment", "StatefulSet", "Secret", "ConfigMap", "Job", "NetworkPolicy"} <= kinds
    worker = over_old_values.get("Deployment", "rel-prefect-dlt-worker")
    assert worker["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "registry.example.com/data/prefect-dlt:0.1.0"
    ), "the earlier release's own value is kept"


def _reuse_values_chart(tmp_path: Path) -> Path:
    """Today's templates with the earlier release's computed values as the chart's defaults:
    what `helm upgrade --reuse-values` renders."""
    chart = copy_chart(tmp_path)
    shutil.copy(OLD_VALUES, chart / "values.yaml")
    return chart


def test_reuse_values_fails_with_one_line_naming_the_way_out(tmp_path: Path) -> None:
    with pytest.raises(HelmError) as caught:
        helm_template(chart=_reuse_values_chart(tmp_path), base=False)
    stderr = caught.value.stderr
    error = [line for line in stderr.splitlines() if line.startswith("Error:")]
    assert len(error) == 1, stderr
    assert "--reset-then-reuse-values" in error[0], stderr
    assert re.search(r"values missing: .*\bredis\b", error[0]), stderr
    assert "missing property" not in stderr and "nil pointer" not in stderr, stderr


def test_reset_then_reuse_values_renders(tmp_path: Path) -> None:
    """--reset-then-reuse-values: today's defaults, then the earlier release's values."""
    chart = copy_chart(tmp_path)
    manifests = render([OLD_VALUES], chart=chart)
    assert any(m["kind"] == "Deployment" for m in manifests)


def test_a_missing_nested_value_is_named(tmp_path: Path) -> None:
    chart = copy_chart(tmp_path)
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    del values["server"]["ha"]["pdb"]
    (chart / "values.yaml").write_text(yaml.safe_dump(values))
    with pytest.raises(HelmError) as caught:
        helm_template(chart=chart)
    assert "values missing: server.ha.pdb:" in caught.value.stderr


def test_renamed_working_dir_is_refused_unless_it_agrees() -> None:
    helm_template(set_values=["deployFlows.workingDir=/opt/flows"])
    with pytest.raises(HelmError) as caught:
        helm_template(set_values=["deployFlows.workingDir=/srv/project"])
    assert "deployFlows.workingDir (/srv/project) was renamed deployFlows.projectDir" in (
        caught.value.stderr
    )
