"""What each component renders to, across the value sets."""

from __future__ import annotations

import base64

import pytest

from tests.chart.chart import (
    BASE_VALUES,
    CHART,
    Rendered,
    containers,
    dry_run_install,
    env_of,
    helm_template,
    load_manifests,
    named_container,
    pod_spec,
    pod_specs,
    render,
    run_helm,
)

API_URL = "http://rel-prefect-dlt-server.pipelines.svc.cluster.local:4200/api"


def _secret_data(rendered: Rendered, name: str) -> dict[str, str]:
    secret = rendered.get("Secret", name)
    return {k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()}


def _secret_ref(entry: dict) -> tuple[str, str]:
    ref = entry["valueFrom"]["secretKeyRef"]
    return ref["name"], ref["key"]


# ---------- server ----------


def test_server(default: Rendered) -> None:
    server = named_container(default, "Deployment", "rel-prefect-dlt-server", "server")
    assert server["image"] == "prefecthq/prefect:3.8.8-python3.11"
    assert server["args"] == ["prefect", "server", "start", "--host", "0.0.0.0", "--port", "4200"]
    assert server["startupProbe"]["httpGet"] == {"path": "/api/health", "port": "http"}
    assert server["livenessProbe"]["httpGet"] == {"path": "/api/health", "port": "http"}
    assert server["readinessProbe"]["httpGet"] == {"path": "/api/ready", "port": "http"}
    assert server["ports"] == [{"name": "http", "containerPort": 4200, "protocol": "TCP"}]
    env = env_of(server)
    assert env["PREFECT_SERVER_ANALYTICS_ENABLED"]["value"] == "false"
    assert env["PREFECT_UI_API_URL"]["value"] == "http://localhost:4200/api"
    assert _secret_ref(env["PREFECT_SERVER_DATABASE_CONNECTION_URL"]) == (
        "rel-prefect-dlt-database",
        "connection-url",
    )
    assert _secret_ref(env["PREFECT_SERVER_DATABASE_PASSWORD"]) == (
        "rel-prefect-dlt-database",
        "password",
    )
    assert _secret_ref(env["PREFECT_SERVER_API_AUTH_STRING"]) == (
        "rel-prefect-dlt-api",
        "PREFECT_API_AUTH_STRING",
    )
    service = default.get("Service", "rel-prefect-dlt-server")
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"][0]["port"] == 4200
    assert service["spec"]["selector"] == {
        "app.kubernetes.io/name": "prefect-dlt",
        "app.kubernetes.io/instance": "rel",
        "app.kubernetes.io/component": "server",
    }


def test_no_secret_value_in_plain_env(rendered: Rendered) -> None:
    """Credentials reach containers only through Secrets."""
    for manifest in rendered.manifests:
        for label, pod in pod_specs(manifest):
            for container in containers(pod):
                for name, entry in env_of(container).items():
                    if any(
                        word in name for word in ("PASSWORD", "SECRET", "AUTH_STRING", "KEY_ID")
                    ):
                        if name.endswith(("_SECRET_NAME", "_SECRET_KEY")):
                            continue  # names of Secrets, not their contents
                        assert "valueFrom" in entry, f"{label}/{container['name']}: {name}"


def test_generated_auth_string(default: Rendered) -> None:
    auth = _secret_data(default, "rel-prefect-dlt-api")["PREFECT_API_AUTH_STRING"]
    user, _, password = auth.partition(":")
    assert user == "admin" and len(password) == 32 and password.isalnum()


def test_database_secret_and_url(default: Rendered) -> None:
    data = _secret_data(default, "rel-prefect-dlt-database")
    assert data["connection-url"] == (
        "postgresql+asyncpg://prefect:${PREFECT_SERVER_DATABASE_PASSWORD}"
        "@rel-prefect-dlt-postgresql.pipelines.svc.cluster.local:5432/prefect"
    )
    assert len(data["password"]) == 32
    annotations = default.get("Secret", "rel-prefect-dlt-database")["metadata"]["annotations"]
    assert annotations["helm.sh/resource-policy"] == "keep"


def test_secrets_are_generated_with_lookup() -> None:
    """Two renders without a cluster differ: the values come from randAlphaNum, which the
    templates only use when lookup finds no live Secret."""
    template = (CHART / "templates" / "_helpers.tpl").read_text()
    assert 'lookup "v1" "Secret"' in template
    first = helm_template(show_only=["templates/secrets/api-secret.yaml"])
    assert first != helm_template(show_only=["templates/secrets/api-secret.yaml"])


def test_ui_api_url(rendered_sets: dict[str, Rendered]) -> None:
    def ui_url(name: str) -> str:
        server = named_container(
            rendered_sets[name], "Deployment", "rel-prefect-dlt-server", "server"
        )
        return env_of(server)["PREFECT_UI_API_URL"]["value"]

    assert ui_url("ingress") == "https://prefect.acme.test/api"
    assert ui_url("production-example") == "https://prefect.example.com/api"


# ---------- PostgreSQL ----------


def test_postgresql(default: Rendered) -> None:
    statefulset = default.get("StatefulSet", "rel-prefect-dlt-postgresql")
    assert statefulset["spec"]["serviceName"] == "rel-prefect-dlt-postgresql"
    claim = statefulset["spec"]["volumeClaimTemplates"][0]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["resources"]["requests"]["storage"] == "8Gi"
    postgres = named_container(default, "StatefulSet", "rel-prefect-dlt-postgresql", "postgresql")
    assert postgres["image"] == "postgres:16.10-alpine3.22", "a patch release, not a floating tag"
    env = env_of(postgres)
    assert _secret_ref(env["POSTGRES_PASSWORD"]) == ("rel-prefect-dlt-database", "password")
    assert env["PGDATA"]["value"].startswith("/var/lib/postgresql/data/")
    service = default.get("Service", "rel-prefect-dlt-postgresql")
    assert service["spec"]["clusterIP"] == "None"


def test_external_database(rendered_sets: dict[str, Rendered]) -> None:
    rendered = rendered_sets["external-database"]
    assert rendered.find("StatefulSet", "rel-prefect-dlt-postgresql") is None
    assert rendered.find("Service", "rel-prefect-dlt-postgresql") is None
    assert rendered.find("NetworkPolicy", "rel-prefect-dlt-postgresql") is None
    data = _secret_data(rendered, "rel-prefect-dlt-database")
    assert data == {
        "connection-url": "postgresql+asyncpg://prefect_app:${PREFECT_SERVER_DATABASE_PASSWORD}"
        "@pg.databases.svc.cluster.local:6432/orchestration",
        "password": "from-values",
    }


def test_existing_secrets(rendered_sets: dict[str, Rendered]) -> None:
    rendered = rendered_sets["existing-secrets"]
    secrets = {m["metadata"]["name"] for m in rendered.all("Secret")}
    assert secrets == {"rel-prefect-dlt-database"}
    assert "password" not in _secret_data(rendered, "rel-prefect-dlt-database")
    server = env_of(named_container(rendered, "Deployment", "rel-prefect-dlt-server", "server"))
    assert _secret_ref(server["PREFECT_SERVER_API_AUTH_STRING"]) == (
        "my-prefect-auth",
        "PREFECT_API_AUTH_STRING",
    )
    assert _secret_ref(server["PREFECT_SERVER_DATABASE_PASSWORD"]) == (
        "my-postgres-password",
        "password",
    )
    postgres = env_of(
        named_container(rendered, "StatefulSet", "rel-prefect-dlt-postgresql", "postgresql")
    )
    assert _secret_ref(postgres["POSTGRES_PASSWORD"]) == ("my-postgres-password", "password")
    store = env_of(named_container(rendered, "StatefulSet", "rel-prefect-dlt-storage", "seaweedfs"))
    assert _secret_ref(store["AWS_ACCESS_KEY_ID"]) == ("my-s3-credentials", "AWS_ACCESS_KEY_ID")
    worker = env_of(named_container(rendered, "Deployment", "rel-prefect-dlt-worker", "worker"))
    assert _secret_ref(worker["PREFECT_API_AUTH_STRING"]) == (
        "my-prefect-auth",
        "PREFECT_API_AUTH_STRING",
    )
    assert worker["PREFECT_INTEGRATIONS_KUBERNETES_WORKER_API_AUTH_STRING_SECRET_NAME"] == {
        "name": "PREFECT_INTEGRATIONS_KUBERNETES_WORKER_API_AUTH_STRING_SECRET_NAME",
        "value": "my-prefect-auth",
    }


# ---------- object storage ----------


def test_bundled_storage(default: Rendered) -> None:
    data = _secret_data(default, "rel-prefect-dlt-storage")
    assert set(data) == {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_ENDPOINT_URL",
        "AWS_DEFAULT_REGION",
    }
    assert (
        data["AWS_ENDPOINT_URL"]
        == "http://rel-prefect-dlt-storage.pipelines.svc.cluster.local:8333"
    )
    bucket = named_container(default, "Job", "rel-prefect-dlt-create-bucket", "create-bucket")
    assert bucket["command"][:3] == ["flows", "create-bucket", "prefect-dlt"]
    store = named_container(default, "StatefulSet", "rel-prefect-dlt-storage", "seaweedfs")
    assert store["image"] == "chrislusf/seaweedfs:4.48"
    assert store["command"][:2] == ["weed", "server"]
    assert "-s3" in store["command"] and "-s3.port=8333" in store["command"]
    store_env = env_of(store)
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert _secret_ref(store_env[key]) == ("rel-prefect-dlt-storage", key)
    statefulset = default.get("StatefulSet", "rel-prefect-dlt-storage")
    assert statefulset["spec"]["volumeClaimTemplates"][0]["spec"]["resources"] == {
        "requests": {"storage": "10Gi"}
    }

    job = default.get("Job", "rel-prefect-dlt-create-bucket")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "post-install,post-upgrade"
    bucket = named_container(default, "Job", "rel-prefect-dlt-create-bucket", "create-bucket")
    assert bucket["image"] == "prefect-dlt:0.1.0"
    assert bucket["envFrom"] == [{"secretRef": {"name": "rel-prefect-dlt-storage"}}]


def test_external_storage(rendered_sets: dict[str, Rendered]) -> None:
    rendered = rendered_sets["external-s3"]
    for kind in ("StatefulSet", "Service", "Job", "NetworkPolicy"):
        assert rendered.find(kind, "rel-prefect-dlt-storage") is None
    assert rendered.find("Job", "rel-prefect-dlt-create-bucket") is None
    assert _secret_data(rendered, "rel-prefect-dlt-storage") == {
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "example-secret",
        "AWS_ENDPOINT_URL": "https://s3.eu-central-1.amazonaws.com",
        "AWS_DEFAULT_REGION": "eu-central-1",
    }
    production = rendered_sets["production-example"]
    assert production.find("Secret", "rel-prefect-dlt-storage") is None
    assert production.find("StatefulSet", "rel-prefect-dlt-storage") is None


# ---------- worker ----------


def test_worker(default: Rendered) -> None:
    worker = named_container(default, "Deployment", "rel-prefect-dlt-worker", "worker")
    assert worker["image"] == "prefect-dlt:0.1.0"
    assert worker["command"] == [
        "prefect",
        "worker",
        "start",
        "--type",
        "kubernetes",
        "--pool",
        "dlt-k8s",
        "--with-healthcheck",
    ]
    assert worker["livenessProbe"]["httpGet"] == {"path": "/health", "port": "healthcheck"}
    env = env_of(worker)
    assert env["PREFECT_API_URL"]["value"] == API_URL
    assert _secret_ref(env["PREFECT_API_AUTH_STRING"]) == (
        "rel-prefect-dlt-api",
        "PREFECT_API_AUTH_STRING",
    )


def test_platform_image_values() -> None:
    manifests = load_manifests(
        helm_template(
            set_values=[
                "image.repository=reg.example/flows",
                "image.tag=1.2.3",
                "workPool.name=etl",
            ],
            show_only=["templates/worker/deployment.yaml"],
        )
    )
    pod = manifests[0]["spec"]["template"]["spec"]
    assert {c["image"] for c in containers(pod)} == {"reg.example/flows:1.2.3"}
    assert pod["containers"][0]["command"][6] == "etl"
    assert pod["initContainers"][1]["command"][4] == "etl"


# ---------- flow deployments hook ----------


def test_deploy_flows_hook(default: Rendered) -> None:
    job = default.get("Job", "rel-prefect-dlt-deploy-flows")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "post-install,post-upgrade,post-rollback"
    assert int(annotations["helm.sh/hook-weight"]) > int(
        default.get("Job", "rel-prefect-dlt-create-bucket")["metadata"]["annotations"][
            "helm.sh/hook-weight"
        ]
    )
    deploy = named_container(default, "Job", "rel-prefect-dlt-deploy-flows", "deploy-flows")
    assert deploy["image"] == "prefect-dlt:0.1.0"
    assert deploy["workingDir"] == "/opt/flows"
    assert deploy["command"] == ["/bin/sh", "-ec"]
    assert deploy["args"] == [
        "flows setup --base-job-template /template/base-job-template.json"
        " && flows deploy --project-dir /opt/flows"
    ]
    mounts = {m["mountPath"]: m["name"] for m in deploy["volumeMounts"]}
    volumes = {
        v["name"]: v for v in pod_spec(default, "Job", "rel-prefect-dlt-deploy-flows")["volumes"]
    }
    assert volumes[mounts["/template"]]["configMap"]["name"] == "rel-prefect-dlt-base-job-template"
    env = env_of(deploy)
    assert env["FLOWS_PROJECT_DIR"]["value"] == "/opt/flows"
    assert env["FLOWS_IMAGE"]["value"] == "prefect-dlt:0.1.0"
    assert env["PREFECT_API_URL"]["value"] == API_URL
    assert env["FLOWS_WORK_POOL"]["value"] == "dlt-k8s"
    assert _secret_ref(env["PREFECT_API_AUTH_STRING"]) == (
        "rel-prefect-dlt-api",
        "PREFECT_API_AUTH_STRING",
    )
    init = pod_spec(default, "Job", "rel-prefect-dlt-deploy-flows")["initContainers"]
    assert [c["name"] for c in init] == ["wait-for-server"]


def test_deploy_hook_of_a_user_project() -> None:
    """Your image and prefect.yaml folder; the platform's examples only when asked."""
    values = {"deployFlows": {"image": {"repository": "reg.example/acme-flows", "tag": "7"}}}
    values["deployFlows"]["projectDir"] = "/srv/acme"
    for examples, expected in (
        (True, " && FLOWS_PROJECT_DIR=/opt/flows flows deploy --project-dir /opt/flows"),
        (False, ""),
    ):
        values["deployFlows"]["registerExamples"] = examples
        found = Rendered("project", render(values=values))
        deploy = named_container(found, "Job", "rel-prefect-dlt-deploy-flows", "deploy-flows")
        assert deploy["image"] == "reg.example/acme-flows:7"
        assert deploy["workingDir"] == "/srv/acme"
        assert env_of(deploy)["FLOWS_PROJECT_DIR"]["value"] == "/srv/acme"
        assert deploy["args"] == [
            "flows setup --base-job-template /template/base-job-template.json"
            " && flows deploy --project-dir /srv/acme" + expected
        ]


def test_hooks_finish_within_helms_timeout(rendered: Rendered) -> None:
    """Helm waits 300 s for a hook by default; a hook that waits 600 s for the server made
    Helm fail with "timed out" and no pod to look at."""
    for job in rendered.all("Job"):
        deadline = job["spec"]["activeDeadlineSeconds"]
        assert deadline < 300, job["metadata"]["name"]
        pod = job["spec"]["template"]["spec"]
        for container in containers(pod):
            if "--timeout" in container.get("command", []):
                wait = float(container["command"][container["command"].index("--timeout") + 1])
                assert wait < deadline, (job["metadata"]["name"], container["name"])


def test_notes_say_what_to_do_when_a_hook_times_out() -> None:
    notes = dry_run_install("--values", str(BASE_VALUES))
    assert "timed out" in notes
    assert "kubectl --namespace pipelines logs job/rel-prefect-dlt-deploy-flows" in notes
    assert "--timeout" in notes


def test_deploy_flows_command_is_overridable() -> None:
    job = load_manifests(
        helm_template(
            set_values=["deployFlows.command={prefect}", "deployFlows.args={deploy,--all}"],
            show_only=["templates/flows/deploy-flows-job.yaml"],
        )
    )[0]
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["prefect"]
    assert container["args"] == ["deploy", "--all"]


def test_auth_off(rendered_sets: dict[str, Rendered]) -> None:
    rendered = rendered_sets["auth-off"]
    assert rendered.find("Secret", "rel-prefect-dlt-api") is None
    assert rendered.find("Job", "rel-prefect-dlt-deploy-flows") is None
    for manifest in rendered.manifests:
        for _, pod in pod_specs(manifest):
            for container in containers(pod):
                env = env_of(container)
                assert "PREFECT_API_AUTH_STRING" not in env
                assert "PREFECT_SERVER_API_AUTH_STRING" not in env
            assert pod.get("imagePullSecrets") == [{"name": "regcred"}]


# ---------- network ----------


def _policy(rendered: Rendered, name: str) -> dict:
    return rendered.get("NetworkPolicy", name)["spec"]


def test_network_policies(default: Rendered) -> None:
    assert len(default.all("NetworkPolicy")) == 4
    postgres = _policy(default, "rel-prefect-dlt-postgresql")
    assert postgres["policyTypes"] == ["Ingress"]
    assert postgres["ingress"] == [
        {
            "from": [
                {
                    "podSelector": {
                        "matchLabels": {
                            "app.kubernetes.io/name": "prefect-dlt",
                            "app.kubernetes.io/instance": "rel",
                            "app.kubernetes.io/component": "server",
                        }
                    }
                }
            ],
            "ports": [{"protocol": "TCP", "port": 5432}],
        }
    ]
    server = _policy(default, "rel-prefect-dlt-server")
    assert server["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "server"
    assert server["ingress"] == [
        {"from": [{"podSelector": {}}], "ports": [{"protocol": "TCP", "port": 4200}]}
    ]
    store = _policy(default, "rel-prefect-dlt-storage")
    assert store["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "storage"
    assert store["ingress"] == [
        {"from": [{"podSelector": {}}], "ports": [{"protocol": "TCP", "port": 8333}]}
    ]


def test_network_policy_selects_the_pods(default: Rendered) -> None:
    for component, kind in (
        ("postgresql", "StatefulSet"),
        ("server", "Deployment"),
        ("storage", "StatefulSet"),
    ):
        selector = _policy(default, f"rel-prefect-dlt-{component}")["podSelector"]["matchLabels"]
        labels = default.get(kind, f"rel-prefect-dlt-{component}")["spec"]["template"]["metadata"][
            "labels"
        ]
        assert selector.items() <= labels.items(), component


def test_network_policies_toggle(rendered_sets: dict[str, Rendered]) -> None:
    assert rendered_sets["no-network-policies"].all("NetworkPolicy") == []
    server = _policy(rendered_sets["ingress"], "rel-prefect-dlt-server")
    assert server["ingress"][0]["from"][:2] == [
        {"podSelector": {}},
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}},
    ]


def test_ingress_controller_reaches_the_server() -> None:
    """With the Ingress on, its controller (another namespace) is let in by default."""
    found = Rendered("ing", render(values={"server": {"ingress": {"enabled": True}}}))
    sources = _policy(found, "rel-prefect-dlt-server")["ingress"][0]["from"]
    assert {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}
    } in sources
    custom = {
        "server": {"ingress": {"enabled": True}},
        "networkPolicy": {
            "ingressController": {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "edge"}},
                "podSelector": {"matchLabels": {"app": "traefik"}},
            }
        },
    }
    sources = _policy(Rendered("ing", render(values=custom)), "rel-prefect-dlt-server")
    assert {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "edge"}},
        "podSelector": {"matchLabels": {"app": "traefik"}},
    } in sources["ingress"][0]["from"]


@pytest.mark.parametrize("service_type", ["NodePort", "LoadBalancer"])
def test_node_port_and_load_balancer_traffic_reaches_the_server(service_type: str) -> None:
    values = {"server": {"service": {"type": service_type}}}
    sources = _policy(Rendered("np", render(values=values)), "rel-prefect-dlt-server")
    assert {"ipBlock": {"cidr": "0.0.0.0/0"}} in sources["ingress"][0]["from"]
    default_sources = _policy(Rendered("ci", render()), "rel-prefect-dlt-server")
    assert {"ipBlock": {"cidr": "0.0.0.0/0"}} not in default_sources["ingress"][0]["from"]


def test_worker_and_flow_run_pods_take_no_ingress(default: Rendered) -> None:
    policy = _policy(default, "rel-prefect-dlt-no-ingress")
    assert policy["ingress"] == [] and policy["policyTypes"] == ["Ingress"]
    components = {e["key"]: e["values"] for e in policy["podSelector"]["matchExpressions"]}[
        "app.kubernetes.io/component"
    ]
    assert {"worker", "flow-run"} <= set(components)
    worker = default.get("Deployment", "rel-prefect-dlt-worker")
    labels = worker["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] in components


def test_egress_policies_are_opt_in(rendered_sets: dict[str, Rendered]) -> None:
    assert not [
        p
        for p in rendered_sets["default"].all("NetworkPolicy")
        if "Egress" in p["spec"]["policyTypes"]
    ]
    production = rendered_sets["production-example"]
    flow_run = _policy(production, "rel-prefect-dlt-egress-flow-run")
    rules = flow_run["egress"]
    assert {"protocol": "UDP", "port": 53} in rules[0]["ports"], "DNS first"
    assert any({"protocol": "TCP", "port": 4200} in r["ports"] for r in rules), "Prefect API"
    assert any({"protocol": "TCP", "port": 443} in r["ports"] for r in rules), "state bucket"
    assert {
        "to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}],
        "ports": [{"protocol": "TCP", "port": 5432}],
    } in rules
    worker = _policy(production, "rel-prefect-dlt-egress-worker")["egress"]
    assert {
        "to": [{"ipBlock": {"cidr": "10.0.0.1/32"}}],
        "ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 6443}],
    } in worker, "the Kubernetes API"
    server = _policy(production, "rel-prefect-dlt-egress-server")["egress"]
    assert any({"protocol": "TCP", "port": 5432} in r["ports"] for r in server), "database"


def test_ingress(rendered_sets: dict[str, Rendered]) -> None:
    assert rendered_sets["default"].all("Ingress") == []
    ingress = rendered_sets["ingress"].get("Ingress", "rel-prefect-dlt-server")
    spec = ingress["spec"]
    assert spec["ingressClassName"] == "nginx"
    assert spec["tls"] == [{"hosts": ["prefect.acme.test"], "secretName": "prefect-acme-test-tls"}]
    backend = spec["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "rel-prefect-dlt-server", "port": {"name": "http"}}
    assert ingress["metadata"]["annotations"] == {"cert-manager.io/cluster-issuer": "letsencrypt"}


# ---------- helm test ----------


def test_helm_testpod_spec(rendered: Rendered) -> None:
    pods = rendered.all("Pod")
    assert [p["metadata"]["name"] for p in pods] == ["rel-prefect-dlt-test-connection"]
    pod = pods[0]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    # Helm 3 deletes a hook-succeeded test pod before `helm test --logs` reads it
    assert "hook-succeeded" not in pod["metadata"]["annotations"]["helm.sh/hook-delete-policy"]
    container = pod["spec"]["containers"][0]
    assert container["command"] == ["flows", "check-release", "--pool", "dlt-k8s"]
    env = env_of(container)
    assert env["PREFECT_API_URL"]["value"] == API_URL


@pytest.mark.parametrize("name", ["flows", "a-very-long-release-name-that-goes-on-and-on-and-on"])
def test_names_fit(name: str) -> None:
    args = ["template", name, str(CHART), "--values", str(BASE_VALUES)]
    for manifest in load_manifests(run_helm(*args)):
        meta_name = manifest["metadata"]["name"]
        limit = 52 if manifest["kind"] == "StatefulSet" else 63
        assert len(meta_name) <= limit, meta_name
