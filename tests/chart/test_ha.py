"""The HA server option: API replicas, a services Deployment, Redis, a migration hook, a PDB.
(tests/integration/test_ha_server.py runs the same processes for real.)"""

from __future__ import annotations

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
