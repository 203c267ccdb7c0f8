"""Fixtures of the chart tests: helm itself, and each value set rendered once per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chart.chart import CHART, VALUES_DIR, Rendered, helm_binary, render
from tests.chart.services import PrefectServer, prefect_server_for

# name -> values files; "default" is the chart's values.yaml (plus tests/chart/base-values.yaml,
# like every set but the GitOps one, which must render with no cluster and nothing ephemeral).
VALUE_SETS: dict[str, list[Path]] = {
    "default": [],
    **{path.stem: [path] for path in sorted(VALUES_DIR.glob("*.yaml"))},
    "production-example": [CHART / "values-production.yaml"],
}

NO_BASE = {"gitops-secrets"}


@pytest.fixture(scope="session", autouse=True)
def helm() -> Path:
    """The helm binary; its absence fails the chart tests, it never skips them."""
    try:
        return helm_binary()
    except FileNotFoundError as err:
        pytest.fail(str(err), pytrace=False)


@pytest.fixture(scope="session")
def rendered_sets(helm: Path) -> dict[str, Rendered]:
    return {
        name: Rendered(name, render(files, base=name not in NO_BASE))
        for name, files in VALUE_SETS.items()
    }


@pytest.fixture(scope="session")
def default(rendered_sets: dict[str, Rendered]) -> Rendered:
    return rendered_sets["default"]


@pytest.fixture(params=sorted(VALUE_SETS))
def rendered(request: pytest.FixtureRequest, rendered_sets: dict[str, Rendered]) -> Rendered:
    """Each value set in turn."""
    return rendered_sets[request.param]


@pytest.fixture(scope="module")
def prefect_server(
    tmp_path_factory: pytest.TempPathFactory, default: Rendered
) -> Iterator[PrefectServer]:
    """A real Prefect server with basic auth, one per test module."""
    with prefect_server_for(tmp_path_factory.mktemp("prefect-home"), default) as server:
        yield server
