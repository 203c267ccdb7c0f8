"""Generated passwords and the GitOps path.

The chart keeps generated values across upgrades by reading the live Secret (`lookup`).
Without a cluster (helm template, --dry-run=client, Argo CD) lookup finds nothing: a new
password on every render would replace the one the database was initialised with. The
render fails instead, naming the way out; with every credential in existing Secrets the
chart renders anywhere and generates nothing.
"""

from __future__ import annotations

import pytest

from tests.chart.chart import (
    VALUES_DIR,
    HelmError,
    Rendered,
    dry_run_install,
    helm_template,
    load_manifests,
)

GITOPS = VALUES_DIR / "gitops-secrets.yaml"
IMAGE = "image.repository=prefect-dlt"


@pytest.mark.parametrize(
    "extra",
    [
        [],
        ["auth.existingSecret=a", "storage.existingSecret=s"],  # database password still generated
        ["auth.existingSecret=a", "postgresql.auth.existingSecret=p"],  # store keys generated
    ],
)
def test_generated_values_without_a_cluster_fail_loudly(extra: list[str]) -> None:
    with pytest.raises(HelmError) as caught:
        helm_template(set_values=[IMAGE, *extra], base=False)
    stderr = caught.value.stderr
    assert "cannot read the live Secret" in stderr, stderr
    assert "existingSecret" in stderr and "allowEphemeral" in stderr, stderr


def test_client_dry_run_fails_too() -> None:
    with pytest.raises(HelmError) as caught:
        dry_run_install("--set", IMAGE)
    assert "cannot read the live Secret" in caught.value.stderr


def test_gitops_values_render_without_a_cluster_and_generate_nothing() -> None:
    first = helm_template([GITOPS], base=False)
    assert helm_template([GITOPS], base=False) == first, "every render is the same"
    rendered = Rendered("gitops", load_manifests(first))
    secrets = {s["metadata"]["name"]: s for s in rendered.all("Secret")}
    assert set(secrets) == {"rel-prefect-dlt-database"}, "only the URL Secret, no password"
    assert set(secrets["rel-prefect-dlt-database"]["data"]) == {"connection-url"}


def test_ephemeral_renders_do_change() -> None:
    """What allowEphemeral accepts: a new password per render (so never for a real install)."""
    show = ["templates/secrets/api-secret.yaml"]
    one = helm_template(set_values=[IMAGE, "generatedSecrets.allowEphemeral=true"], show_only=show)
    two = helm_template(set_values=[IMAGE, "generatedSecrets.allowEphemeral=true"], show_only=show)
    assert one != two
