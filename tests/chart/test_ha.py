"""The HA server option: API replicas, a services Deployment, Redis, a migration hook, a PDB.
(tests/integration/test_ha_server.py runs the same processes for real.)"""

from __future__ import annotations

import socket
import subprocess
import sys
import urllib.parse
from typing import Any

import pytest

from tests.chart.chart import (
    HelmError,
    Rendered,
    containers,
    env_of,
    helm_template,
    pod_spec,
    render,
)

HA_ENV = {
    "PREFECT_MESSAGING_BROKER": "prefect_redis.messaging",
    "PREFECT_MESSAGING_CACHE": "prefect_redis.messaging",
    "PREFECT_SERVER_EVENTS_CAUSAL_ORDERING": "prefect_redis.ordering",
    "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect_redis.lease_storage",
    "PREFECT_SERVER_DATABASE_MIGRATE_ON_START": "false",
    "PREFECT_SERVER_REGISTER_BLOCKS_ON_START": "false",
}
REDIS = "rel-prefect-dlt-redis.pipelines.svc.cluster.local:6379"


def _main(rendered: Rendered, kind: str, name: str) -> dict:
    return containers(pod_spec(rendered, kind, name))[-1]


def test_ha_objects(rendered_sets: dict[str, Rendered]) -> None:
    ha = rendered_sets["ha"]
    server = ha.get("Deployment", "rel-prefect-dlt-server")
    assert server["spec"]["replicas"] == 3
    assert server["spec"]["strategy"]["type"] == "RollingUpdate"
    api = _main(ha, "Deployment", "rel-prefect-dlt-server")
    assert api["args"][-1] == "--no-services"
    assert api["image"] == "prefect-dlt:0.1.0", "the platform image has prefect-redis"
    services = ha.get("Deployment", "rel-prefect-dlt-server-services")
    assert services["spec"]["replicas"] == 1, "one scheduler"
    assert _main(ha, "Deployment", "rel-prefect-dlt-server-services")["args"] == [
        "prefect",
        "server",
        "services",
        "start",
    ]
    migrate = ha.get("Job", "rel-prefect-dlt-migrate")
    assert migrate["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert _main(ha, "Job", "rel-prefect-dlt-migrate")["command"] == ["flows", "server-migrate"]
    for kind, name in (
        ("Deployment", "rel-prefect-dlt-server"),
        ("Deployment", "rel-prefect-dlt-server-services"),
        ("Job", "rel-prefect-dlt-migrate"),
    ):
        env = env_of(_main(ha, kind, name))
        for key, value in HA_ENV.items():
            assert env[key]["value"] == value, (name, key)
        assert env["PREFECT_REDIS_MESSAGING_URL"]["value"] == f"redis://{REDIS}/0"
        assert env["PREFECT_SERVER_DOCKET_URL"]["value"] == f"redis://{REDIS}/1"
        assert env["PREFECT_SERVER_DATABASE_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == (
            "prefect-db"
        )
    pdb = ha.get("PodDisruptionBudget", "rel-prefect-dlt-server")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "server"
    policy = ha.get("NetworkPolicy", "rel-prefect-dlt-redis")["spec"]
    allowed = policy["ingress"][0]["from"][0]["podSelector"]["matchExpressions"][1]["values"]
    assert allowed == ["server", "server-services"]
    egress = ha.get("NetworkPolicy", "rel-prefect-dlt-egress-server")["spec"]["egress"]
    assert any({"protocol": "TCP", "port": 6379} in rule["ports"] for rule in egress)


def test_single_replica_stays_the_default(default: Rendered) -> None:
    server = default.get("Deployment", "rel-prefect-dlt-server")
    assert server["spec"]["replicas"] == 1
    assert "--no-services" not in _main(default, "Deployment", "rel-prefect-dlt-server")["args"]
    for kind, name in (
        ("Deployment", "rel-prefect-dlt-server-services"),
        ("Deployment", "rel-prefect-dlt-redis"),
        ("Job", "rel-prefect-dlt-migrate"),
        ("PodDisruptionBudget", "rel-prefect-dlt-server"),
    ):
        assert default.find(kind, name) is None, name


def test_external_redis_through_a_secret() -> None:
    values = {
        "server": {"ha": {"enabled": True}},
        "postgresql": {"enabled": False},
        "externalDatabase": {"host": "db", "existingSecret": "db"},
        "redis": {"bundled": {"enabled": False}, "external": {"existingSecret": "prefect-redis"}},
    }
    found = Rendered("ext", render(values=values))
    assert found.find("Deployment", "rel-prefect-dlt-redis") is None
    env = env_of(_main(found, "Deployment", "rel-prefect-dlt-server"))
    assert env["PREFECT_REDIS_MESSAGING_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "prefect-redis",
        "key": "url",
    }
    assert env["PREFECT_SERVER_DOCKET_URL"]["valueFrom"]["secretKeyRef"]["key"] == "docket-url"


@pytest.mark.parametrize(
    ("set_values", "message"),
    [
        (["server.ha.enabled=true"], "needs an external PostgreSQL"),
        (
            [
                "server.ha.enabled=true",
                "postgresql.enabled=false",
                "externalDatabase.host=db",
                "externalDatabase.existingSecret=db",
                "redis.bundled.enabled=false",
            ],
            "redis.external.existingSecret is required",
        ),
    ],
)
def test_ha_says_what_it_needs(set_values: list[str], message: str) -> None:
    with pytest.raises(HelmError) as caught:
        helm_template(set_values=set_values)
    assert message in caught.value.stderr


def _ha(**more: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "server": {"ha": {"enabled": True, **more}},
        "postgresql": {"enabled": False},
        "externalDatabase": {"host": "db", "existingSecret": "db"},
    }
    return values


def test_one_api_replica_gets_no_pdb_that_would_block_drains() -> None:
    found = Rendered("one", render(values=_ha(replicas=1)))
    assert found.find("PodDisruptionBudget", "rel-prefect-dlt-server") is None
    two = Rendered("two", render(values=_ha(replicas=2)))
    assert two.get("PodDisruptionBudget", "rel-prefect-dlt-server")["spec"]["minAvailable"] == 1
    share = Rendered("pct", render(values=_ha(replicas=2, pdb={"minAvailable": "50%"})))
    assert share.get("PodDisruptionBudget", "rel-prefect-dlt-server")["spec"]["minAvailable"] == (
        "50%"
    )


def test_a_pdb_no_replica_may_leave_is_refused() -> None:
    with pytest.raises(HelmError) as caught:
        render(values=_ha(replicas=2, pdb={"minAvailable": 2}))
    assert "server.ha.pdb.minAvailable (2) must be below server.ha.replicas (2)" in (
        caught.value.stderr
    )


def test_api_replicas_prefer_different_nodes(rendered_sets: dict[str, Rendered]) -> None:
    affinity = pod_spec(rendered_sets["ha"], "Deployment", "rel-prefect-dlt-server")["affinity"]
    (term,) = affinity["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    selector = term["podAffinityTerm"]["labelSelector"]["matchLabels"]
    assert selector["app.kubernetes.io/component"] == "server"
    assert "affinity" not in pod_spec(
        rendered_sets["default"], "Deployment", "rel-prefect-dlt-server"
    )
    own = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}}
    values = _ha()
    values["server"]["affinity"] = own
    found = Rendered("own", render(values=values))
    assert pod_spec(found, "Deployment", "rel-prefect-dlt-server")["affinity"] == own


def _listener() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def test_services_liveness_probe_runs_as_rendered(rendered_sets: dict[str, Rendered]) -> None:
    """The probe's command, run with the services container's URLs pointed at local ports:
    it passes while both accept connections and fails when one does not."""
    container = _main(rendered_sets["ha"], "Deployment", "rel-prefect-dlt-server-services")
    probe = container["livenessProbe"]
    assert probe["periodSeconds"] * probe["failureThreshold"] >= 60, "no restart on a blip"
    env = env_of(container)
    with _listener() as database, _listener() as redis:
        urls = {
            "PREFECT_SERVER_DATABASE_CONNECTION_URL": database.getsockname()[1],
            "PREFECT_REDIS_MESSAGING_URL": redis.getsockname()[1],
        }
        local = {}
        for name, port in urls.items():
            parts = urllib.parse.urlsplit(env[name]["value"])
            netloc = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
            local[name] = parts._replace(netloc=f"{netloc}127.0.0.1:{port}").geturl()
        command = [sys.executable, *probe["exec"]["command"][1:]]
        alive = subprocess.run(command, env=local, capture_output=True, text=True, check=False)
        assert alive.returncode == 0, alive.stderr
    dead = subprocess.run(command, env=local, capture_output=True, text=True, check=False)
    assert dead.returncode != 0 and "ConnectionRefusedError" in dead.stderr
