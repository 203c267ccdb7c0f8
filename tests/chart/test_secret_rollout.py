"""Rotating a Secret rolls the pods that read it: every pod template carries one
checksum/secret-<name> annotation per Secret it reads. A Secret the chart writes is hashed
as rendered; one it only names (an existingSecret value) is hashed by name and
secrets.revision, which an operator bumps after rotating it."""

from __future__ import annotations

from typing import Any

import pytest

from tests.chart.chart import Rendered, render

SERVER = ("Deployment", "rel-prefect-dlt-server")
SERVICES = ("Deployment", "rel-prefect-dlt-server-services")
WORKER = ("Deployment", "rel-prefect-dlt-worker")
STORE = ("StatefulSet", "rel-prefect-dlt-storage")
POSTGRES = ("StatefulSet", "rel-prefect-dlt-postgresql")
HA = {
    "server": {"ha": {"enabled": True}},
    "postgresql": {"enabled": False},
    "externalDatabase": {"host": "db", "existingSecret": "prefect-db"},
    "redis": {"bundled": {"enabled": False}, "external": {"existingSecret": "prefect-redis"}},
}
EXISTING = {
    "auth": {"existingSecret": "my-auth"},
    "postgresql": {"auth": {"existingSecret": "my-db"}},
    "storage": {"existingSecret": "my-s3"},
}


def _checksums(rendered: Rendered, workload: tuple[str, str]) -> dict[str, str]:
    annotations = rendered.get(*workload)["spec"]["template"]["metadata"].get("annotations", {})
    return {k: v for k, v in annotations.items() if k.startswith("checksum/secret-")}


def _render(values: dict[str, Any], name: str = "set") -> Rendered:
    return Rendered(name, render(values=values))


def test_each_pod_carries_the_secrets_it_reads(default: Rendered) -> None:
    assert set(_checksums(default, SERVER)) == {"checksum/secret-api", "checksum/secret-database"}
    assert set(_checksums(default, WORKER)) == {"checksum/secret-api"}
    assert set(_checksums(default, STORE)) == {"checksum/secret-storage"}
    # POSTGRES_PASSWORD is read at initdb only: restarting PostgreSQL would change nothing
    assert _checksums(default, POSTGRES) == {}
    ha = _render(HA, "ha")
    assert set(_checksums(ha, SERVER)) == {
        "checksum/secret-api",
        "checksum/secret-database",
        "checksum/secret-redis",
    }
    assert set(_checksums(ha, SERVICES)) == {"checksum/secret-database", "checksum/secret-redis"}


def test_one_render_hashes_the_one_generated_value() -> None:
    """A generated value is made once per render: the server and the worker hash the same
    auth string, and a new render (new throwaway passwords) changes both."""
    first, second = _render({}), _render({})
    for rendered in (first, second):
        assert (
            _checksums(rendered, SERVER)["checksum/secret-api"]
            == (_checksums(rendered, WORKER)["checksum/secret-api"])
        )
    secret = "rel-prefect-dlt-api"
    assert first.get("Secret", secret)["data"] != second.get("Secret", secret)["data"]
    assert _checksums(first, WORKER) != _checksums(second, WORKER)


def test_a_chart_owned_secret_change_rolls_its_readers_only() -> None:
    base = {**EXISTING, "postgresql": {"enabled": False}}
    before = _render({**base, "externalDatabase": {"host": "db", "password": "one"}})
    after = _render({**base, "externalDatabase": {"host": "db", "password": "two"}})
    assert (
        _checksums(before, SERVER)["checksum/secret-database"]
        != (_checksums(after, SERVER)["checksum/secret-database"])
    )
    assert _checksums(before, WORKER) == _checksums(after, WORKER), "the worker reads no database"
    assert (
        _checksums(before, SERVER)["checksum/secret-api"]
        == (_checksums(after, SERVER)["checksum/secret-api"])
    )


@pytest.mark.parametrize(
    ("change", "rolled", "kept"),
    [
        ({"secrets": {"revision": "2026-12-07"}}, [SERVER, WORKER, STORE], []),
        ({"auth": {"existingSecret": "my-auth-v2"}}, [SERVER, WORKER], [STORE]),
        ({"storage": {"existingSecret": "my-s3-v2"}}, [STORE], [SERVER, WORKER]),
    ],
)
def test_existing_secrets_roll_by_name_or_revision(
    change: dict[str, Any], rolled: list[tuple[str, str]], kept: list[tuple[str, str]]
) -> None:
    before = _render(EXISTING)
    assert _render(EXISTING) == Rendered("set", before.manifests), "stable without a change"
    after = _render({**EXISTING, **change})
    for workload in rolled:
        assert _checksums(before, workload) != _checksums(after, workload), workload
    for workload in kept:
        assert _checksums(before, workload) == _checksums(after, workload), workload


def test_redis_revision_rolls_the_ha_server_and_services() -> None:
    before, after = _render(HA), _render({**HA, "secrets": {"revision": 7}})
    for workload in (SERVER, SERVICES):
        assert (
            _checksums(before, workload)["checksum/secret-redis"]
            != (_checksums(after, workload)["checksum/secret-redis"])
        )
