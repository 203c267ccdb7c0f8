"""`helm uninstall`: a pre-delete hook pauses the work pool so no new flow-run Job starts
against a server being deleted, and never holds the uninstall (its command runs against a
real server in tests/chart/test_scripts_against_services.py)."""

from __future__ import annotations

from tests.chart.chart import Rendered, env_of, named_container, render

JOB = "rel-prefect-dlt-pause-pool"


def test_pre_delete_hook_pauses_the_pool(default: Rendered) -> None:
    job = default.get("Job", JOB)
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-delete"
    assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    assert job["spec"]["backoffLimit"] == 0, "one bounded try"
    assert job["spec"]["activeDeadlineSeconds"] < 300, "under Helm's default --timeout"
    container = named_container(default, "Job", JOB, "pause-pool")
    script = container["command"][-1]
    assert 'prefect work-pool pause "dlt-k8s"' in script, "Prefect's own CLI"
    assert "flows wait-for-server --timeout 150" in script, "a bounded wait"
    env = env_of(container)
    assert env["PREFECT_API_AUTH_STRING"]["valueFrom"]["secretKeyRef"]["name"] == (
        "rel-prefect-dlt-api"
    )
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == "pause-pool"


def test_the_hook_is_covered_by_the_hook_policies() -> None:
    rendered = Rendered("egress", render(values={"networkPolicy": {"egress": {"enabled": True}}}))
    for name in ("rel-prefect-dlt-egress-hooks", "rel-prefect-dlt-no-ingress"):
        selector = rendered.get("NetworkPolicy", name)["spec"]["podSelector"]
        components = {e["key"]: e["values"] for e in selector["matchExpressions"]}
        assert "pause-pool" in components["app.kubernetes.io/component"], name


def test_the_hook_can_be_turned_off() -> None:
    rendered = Rendered("off", render(values={"workPool": {"pauseOnUninstall": False}}))
    assert rendered.find("Job", JOB) is None
