"""Fixtures of the image tests: a Docker daemon, the platform image built once, the chart
rendered for it, and the local stack (Prefect server, PostgreSQL, SeaweedFS) on the host.

Nothing is skipped: no Docker daemon, no base image or a failed build fails the tests. The
fixtures install what they need (scripts/install-docker.sh, scripts/make-base-image.sh,
scripts/install-helm.sh), so a fresh machine works.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devstack.ports import free_port
from devstack.stack import LocalStack
from tests.chart.chart import FULLNAME, NAMESPACE, Rendered, helm_binary, render
from tests.image import kube_docker
from tests.integration.helpers import serving

REPO = Path(__file__).resolve().parents[2]
IMAGE_REPOSITORY = "prefect-dlt"
IMAGE_TAG = "image-test"
IMAGE = f"{IMAGE_REPOSITORY}:{IMAGE_TAG}"
# The local debootstrap image (no registry here); IMAGE_TEST_BASE_IMAGE=python:3.11-slim-bookworm
# builds on the official one where a registry is reachable.
BASE_IMAGE = os.environ.get("IMAGE_TEST_BASE_IMAGE", "flows-base:bookworm")
EXTRA_CA_DIR = REPO / "docker" / "extra-ca"
# The host's CA bundle goes in under this name for the build (a TLS-inspecting proxy's CA
# is in it), and is removed right after.
EXTRA_CA_NAME = "image-test-host-ca.crt"
CLUSTER_SERVER_URL = f"http://{FULLNAME}-server.{NAMESPACE}.svc.cluster.local:4200"


def _script(name: str, timeout: float) -> None:
    """Runs scripts/<name>; its failure fails the test (never a skip)."""
    try:
        done = subprocess.run(
            ["bash", str(REPO / "scripts" / name)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"scripts/{name} did not finish in {timeout:.0f} s", pytrace=False)
    if done.returncode != 0:
        pytest.fail(
            f"scripts/{name} exited {done.returncode}:\n{done.stdout[-2000:]}{done.stderr[-3000:]}",
            pytrace=False,
        )


def host_ca_bundle() -> Path | None:
    for candidate in (os.environ.get("SSL_CERT_FILE"), "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


@dataclass(frozen=True)
class BuiltImage:
    ref: str
    seconds: float
    size_bytes: int
    extra_ca: Path | None  # the host bundle that was trusted during the build


@pytest.fixture(scope="session")
def docker_daemon() -> None:
    """A Docker daemon that answers (installed and started when missing)."""
    if (
        shutil.which("docker") is None
        or subprocess.run(["docker", "info"], capture_output=True, check=False).returncode
    ):
        _script("install-docker.sh", timeout=600)


@pytest.fixture(scope="session")
def image(docker_daemon: None, tmp_path_factory: pytest.TempPathFactory) -> BuiltImage:
    """The platform image, built once per session from docker/Dockerfile."""
    if BASE_IMAGE == "flows-base:bookworm":
        _script("make-base-image.sh", timeout=600)
    ca = host_ca_bundle()
    copied = EXTRA_CA_DIR / EXTRA_CA_NAME
    log = tmp_path_factory.mktemp("image-build") / "build.log"
    started = time.monotonic()
    try:
        if ca is not None:
            shutil.copyfile(ca, copied)
        with log.open("w") as out:
            done = subprocess.run(
                [
                    "docker",
                    "build",
                    "--network",
                    "host",
                    "--build-arg",
                    f"BASE_IMAGE={BASE_IMAGE}",
                    "--file",
                    str(REPO / "docker" / "Dockerfile"),
                    "--tag",
                    IMAGE,
                    str(REPO),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=900,
                check=False,
            )
    finally:
        copied.unlink(missing_ok=True)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        pytest.fail(f"docker build failed:\n{log.read_text()[-5000:]}", pytrace=False)
    size = int(kube_docker.docker("image", "inspect", "--format", "{{.Size}}", IMAGE).strip())
    return BuiltImage(IMAGE, seconds, size, ca)


@pytest.fixture(scope="session")
def chart() -> Rendered:
    """The chart rendered with the test image as the platform image (release "rel")."""
    try:
        helm_binary()
    except FileNotFoundError:
        _script("install-helm.sh", timeout=300)
    manifests = render(
        set_values=[f"image.repository={IMAGE_REPOSITORY}", f"image.tag={IMAGE_TAG}"]
    )
    return Rendered("image-test", manifests)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """PostgreSQL, SeaweedFS and a Prefect server (auth on) on the host; no worker, no
    deployments: the chart's deploy hook registers those from inside the image."""
    stack = LocalStack(tmp_path_factory.mktemp("image-stack"), api_port=free_port(avoid_plus=None))
    with serving(stack, deploy=False, worker=False):
        yield stack


@pytest.fixture(scope="session")
def node(
    chart: Rendered, stack: LocalStack, tmp_path_factory: pytest.TempPathFactory
) -> kube_docker.Node:
    """The "cluster" the chart's pods and the flow-run Jobs get: the chart's Secret names
    holding the stack's real credentials, its ConfigMaps, the server's Service address
    mapped to the host's API port."""
    api_secret = chart.get("Secret", f"{FULLNAME}-api")
    storage_secret = chart.get("Secret", f"{FULLNAME}-storage")
    secrets = {
        api_secret["metadata"]["name"]: {"PREFECT_API_AUTH_STRING": stack.auth_string},
        storage_secret["metadata"]["name"]: stack.seaweed.env(),
    }
    for manifest in (api_secret, storage_secret):
        keys = set(manifest.get("data") or {}) | set(manifest.get("stringData") or {})
        provided = set(secrets[manifest["metadata"]["name"]])
        assert keys == provided, f"{manifest['metadata']['name']}: chart {keys}, test {provided}"
    return kube_docker.Node(
        secrets=secrets,
        config_maps={m["metadata"]["name"]: m["data"] for m in chart.all("ConfigMap")},
        namespace=NAMESPACE,
        rewrites={CLUSTER_SERVER_URL: f"http://127.0.0.1:{stack.api_port}"},
        scratch=tmp_path_factory.mktemp("node"),
    )


@pytest.fixture(scope="session")
def containers() -> Iterator[list[str]]:
    """Names of the containers the tests started; whatever is left is removed at the end."""
    names: list[str] = []
    yield names
    kube_docker.remove(*names)
