"""The platform image itself: what it contains, who it runs as, that it works with a
read-only root filesystem and /tmp as its only writable place, and that the build left no
CA certificate or cache behind."""

from __future__ import annotations

import hashlib
import re
import subprocess
import tarfile
import uuid

import pytest

from tests.image import kube_docker
from tests.image.conftest import EXTRA_CA_NAME, BuiltImage

# one worker builds the image once (pytest-xdist --dist loadgroup)
pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(1200),
    pytest.mark.xdist_group("image"),
]

# How the chart runs the platform image (restricted pod security, emptyDir at /tmp).
LOCKED_DOWN = [
    "--read-only",
    "--tmpfs",
    "/tmp:rw,exec,nosuid,nodev,mode=1777",
    "--cap-drop",
    "ALL",
    "--security-opt",
    "no-new-privileges",
    "--network",
    "none",
]


def run_in(image: BuiltImage, *argv: str, options: list[str] = LOCKED_DOWN) -> str:
    done = subprocess.run(
        ["docker", "run", "--rm", *options, image.ref, *argv],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"{argv} exited {done.returncode}:\n{done.stdout}{done.stderr}"
    return done.stdout


def test_image_is_configured_for_the_chart(image: BuiltImage) -> None:
    config = kube_docker.image_config(image.ref)
    env = dict(item.split("=", 1) for item in config["Env"])
    assert config["User"] == "1001:1001"
    assert config["WorkingDir"] == "/opt/flows"
    assert env["FLOWS_PROJECT_DIR"] == "/opt/flows"
    assert env["FLOWS_WORK_POOL"] == "dlt-k8s"
    assert env["HOME"] == "/tmp"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["PATH"].startswith("/opt/venv/bin:")
    print(f"image {image.ref}: {image.size_bytes / 1e6:.0f} MB, built in {image.seconds:.0f} s")


def test_runs_as_non_root_with_what_the_chart_needs(image: BuiltImage) -> None:
    """No --user: the image's own user. Everything the chart's pods call is there."""
    out = run_in(
        image,
        "sh",
        "-ec",
        "id -u; id -g; prefect version; flows --version; "
        "python -c 'import flows, httpx, botocore, obstore, prefect_kubernetes, sys; "
        'print("python", sys.version.split()[0]); print("flows at", flows.__file__)\'; '
        "test -f /opt/flows/prefect.yaml; test -f /opt/flows/flows/prefect/flows.py; "
        "python -c 'from prefect.settings import get_current_settings as s; "
        'print("PREFECT_HOME", s().home)\'',
    )
    lines = out.splitlines()
    assert lines[:2] == ["1001", "1001"], out
    assert re.search(r"^Version:\s+3\.8\.8$", out, re.M), out
    assert re.search(r"prefect-kubernetes:\s+0\.8\.0", out), out
    assert re.search(r"^python 3\.11\.\d+$", out, re.M), out
    assert "PREFECT_HOME /tmp/.prefect" in out, out


def test_the_dev_stack_is_not_in_the_image(image: BuiltImage) -> None:
    """devstack (local services, `flows stack`) is dev tooling: not importable in the image,
    and the CLI there has no `stack` command."""
    out = run_in(
        image,
        "sh",
        "-ec",
        "if python -c 'import devstack' 2>/dev/null; then echo devstack importable; fi; "
        "flows --help",
    )
    choices = re.search(r"\{([a-z,-]+)\}", out)
    assert choices is not None, out
    commands = choices.group(1).split(",")
    assert "devstack importable" not in out and "run" in commands and "stack" not in commands, out


def test_demo_runs_read_only_as_the_pod_user(image: BuiltImage) -> None:
    out = run_in(
        image,
        "flows",
        "demo",
        "--rows",
        "5000",
        options=[*LOCKED_DOWN, "--user", "1001:1001", "-e", "FLOWS_HOME=/tmp/flows"],
    )
    assert "rows loaded: events 5,000, events__tags 10,000" in out, out
    assert re.search(r"^\s+events\s+5,000 rows$", out, re.M), out
    assert re.search(r"^\s+events__tags\s+10,000 rows$", out, re.M), out
    assert re.search(r"^\s+files_parquet\s+100 rows$", out, re.M), out


def test_nothing_is_written_outside_tmp(image: BuiltImage) -> None:
    """With a writable root filesystem, the demo and the CLIs change no file outside /tmp
    (so a read-only one never hides a failed write)."""
    name = f"flows-image-diff-{uuid.uuid4().hex[:8]}"
    options = [o for o in LOCKED_DOWN if o != "--read-only"]
    subprocess.run(
        [
            "docker",
            "run",
            "--name",
            name,
            *options,
            "-e",
            "FLOWS_HOME=/tmp/flows",
            image.ref,
            "sh",
            "-ec",
            "prefect version >/dev/null; flows pipelines >/dev/null; flows demo --rows 1000",
        ],
        capture_output=True,
        timeout=300,
        check=True,
    )
    try:
        changed = kube_docker.docker("diff", name).split("\n")
    finally:
        kube_docker.remove(name)
    assert [line for line in changed if line.strip()] == []


def test_no_build_ca_no_pip_cache_no_dev_tools_in_the_image(image: BuiltImage) -> None:
    assert image.extra_ca is not None, "the build ran without the host CA bundle"
    ca = image.extra_ca.read_bytes()
    ca_digest = hashlib.sha256(ca).hexdigest()
    name = f"flows-image-export-{uuid.uuid4().hex[:8]}"
    kube_docker.docker("create", "--name", name, image.ref)
    found: list[str] = []
    names: set[str] = set()
    try:
        proc = subprocess.Popen(["docker", "export", name], stdout=subprocess.PIPE)
        assert proc.stdout is not None
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            for member in tar:
                path = "/" + member.name.removeprefix("./").lstrip("/")
                names.add(path)
                if member.isfile() and member.size == len(ca):
                    handle = tar.extractfile(member)
                    assert handle is not None
                    if hashlib.sha256(handle.read()).hexdigest() == ca_digest:
                        found.append(path)
        assert proc.wait() == 0
    finally:
        kube_docker.remove(name)
    assert found == [], f"the build's CA bundle is in the image at {found}"
    assert not any(n.endswith("/" + EXTRA_CA_NAME) for n in names)
    leftovers = ("/root/.cache", "/tmp/extra-ca", "/tmp/build-tools", "/tmp/src", "/tmp/.cache")
    assert [n for n in names if n.startswith(leftovers)] == []
    assert [n for n in names if n.startswith("/tmp/")] == []
    assert [n for n in names if "/pip/http" in n or n.endswith("/selfcheck.json")] == []
    bin_dir = "/opt/venv/bin/"
    for tool in ("pytest", "mypy", "ruff", "weed", "mkdocs"):
        assert bin_dir + tool not in names, f"development tool {tool} is in the image"
    for needed in ("prefect", "flows", "python"):
        assert bin_dir + needed in names
    assert "/opt/flows/prefect.yaml" in names
