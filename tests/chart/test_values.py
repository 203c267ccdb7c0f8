"""values.yaml and values.schema.json: bad values fail with the schema's message; every key
is documented; the schema closes every object."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from flows.system.quantities import QUANTITY_PATTERN
from tests.chart.chart import ALLOWED_VOLUME_TYPES, CHART, HelmError, helm_template, schema_nodes

SCHEMA = json.loads((CHART / "values.schema.json").read_text())


def _template_error(*set_values: str) -> str:
    with pytest.raises(HelmError) as caught:
        helm_template(set_values=set_values)
    return caught.value.stderr


def _names_path(stderr: str, dotted: str) -> bool:
    """Helm 4 names the value '/a/b', Helm 3 'a.b'."""
    return dotted in stderr or "/" + dotted.replace(".", "/") in stderr


def test_unknown_top_level_key_fails() -> None:
    stderr = _template_error("unknownKey=1")
    assert "unknownKey" in stderr
    assert re.search(r"additional propert", stderr, re.IGNORECASE), stderr


def test_unknown_nested_key_fails() -> None:
    stderr = _template_error("server.replicas=3")
    assert "replicas" in stderr and re.search(r"additional propert", stderr, re.IGNORECASE)


def test_bad_pull_policy_fails() -> None:
    stderr = _template_error("image.pullPolicy=Sometimes")
    assert _names_path(stderr, "image.pullPolicy"), stderr
    assert "Always" in stderr and "IfNotPresent" in stderr and "Never" in stderr, stderr
    assert re.search(r"must be one of", stderr, re.IGNORECASE), stderr


@pytest.mark.parametrize(
    "key",
    [
        "server.resources.limits.cpu",
        "postgresql.resources.requests.cpu",
        "worker.resources.requests.cpu",
        "storage.bundled.createBucketJob.resources.limits.cpu",
    ],
)
def test_bad_cpu_quantity_fails(key: str) -> None:
    stderr = _template_error(f"{key}=abc")
    assert _names_path(stderr, key), stderr
    assert re.search(r"does not match pattern", stderr, re.IGNORECASE), stderr


def test_bad_memory_quantity_fails() -> None:
    stderr = _template_error("deployFlows.resources.limits.memory=lots")
    assert _names_path(stderr, "deployFlows.resources.limits.memory"), stderr
    assert re.search(r"does not match pattern", stderr, re.IGNORECASE), stderr


@pytest.mark.parametrize(
    ("set_value", "needle"),
    [
        ("server.service.type=ExternalName", "type"),
        ("postgresql.securityContext.runAsUser=0", "runAsUser"),
        ("storage.bundled.bucket=Not_A_Bucket", "bucket"),
    ],
)
def test_other_bad_values_fail(set_value: str, needle: str) -> None:
    assert needle in _template_error(set_value)


@pytest.mark.parametrize(
    ("set_values", "message"),
    [
        (["postgresql.enabled=false"], "externalDatabase.host is required"),
        (
            ["postgresql.enabled=false", "externalDatabase.host=db"],
            "externalDatabase.password or externalDatabase.existingSecret is required",
        ),
        (["storage.bundled.enabled=false"], "storage.external.bucket is required"),
        (
            ["storage.bundled.enabled=false", "storage.external.bucket=b-1"],
            "storage.external.endpoint is required",
        ),
        (
            ["server.ingress.enabled=true", "server.ingress.tls.enabled=true"],
            "server.ingress.tls.secretName is required",
        ),
    ],
)
def test_missing_required_values_fail(set_values: list[str], message: str) -> None:
    assert message in _template_error(*set_values)


def test_good_quantities_pass() -> None:
    helm_template(
        set_values=[
            "server.resources.limits.cpu=1.5",
            "server.resources.requests.cpu=250m",
            "server.resources.limits.memory=2Gi",
            "server.resources.requests.memory=512M",
        ]
    )


def _objects(schema: Any) -> list[tuple[str, dict[str, Any]]]:
    return [
        (p, n) for p, n in schema_nodes(schema) if n.get("type") == "object" or "properties" in n
    ]


# Objects whose keys are not ours: Helm's globals and the inner Kubernetes affinity terms
# (the rendered objects are validated against the Kubernetes schemas instead).
OPEN_OBJECTS = {
    "#/properties/global",
    "#/definitions/affinity/properties/nodeAffinity/properties/"
    "requiredDuringSchedulingIgnoredDuringExecution",
    # Kubernetes objects passed through whole (the rendered pods are validated strictly
    # against the Kubernetes schemas): an EnvVarSource and the allowed volume sources
    "#/definitions/envVar/properties/valueFrom",
    *(f"#/definitions/volume/properties/{kind}" for kind in ALLOWED_VOLUME_TYPES),
}


def test_schema_is_draft_07_and_closes_every_object() -> None:
    assert SCHEMA["$schema"] == "http://json-schema.org/draft-07/schema#"
    for path, node in _objects(SCHEMA):
        if path in OPEN_OBJECTS:
            continue
        closed = node.get("additionalProperties")
        assert closed is False or isinstance(closed, dict), f"{path} accepts unknown keys"


def test_every_resources_block_uses_the_quantity_patterns() -> None:
    definitions = SCHEMA["definitions"]
    for kind in ("cpu", "memory"):
        assert definitions["cpuMemory"]["properties"][kind] == {"$ref": "#/definitions/quantity"}
    assert definitions["quantity"]["pattern"] == QUANTITY_PATTERN
    assert definitions["resources"]["properties"] == {
        "requests": {"$ref": "#/definitions/cpuMemory"},
        "limits": {"$ref": "#/definitions/cpuMemory"},
    }
    in_schema = [n for p, n in schema_nodes(SCHEMA) if p.endswith("/properties/resources")]
    assert all(node == {"$ref": "#/definitions/resources"} for node in in_schema)

    def in_values(node: Any) -> int:
        if not isinstance(node, dict):
            return 0
        return ("resources" in node) + sum(in_values(v) for v in node.values())

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert in_values(values) == len(in_schema) == 11


def test_every_value_is_documented() -> None:
    """Each key of values.yaml has a comment right above it. A "# --" comment documents the
    whole value, so the keys inside a default (resources: requests: ...) need none; a section
    without one is documented by its first child's comment."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    documented_values: list[int] = []  # indents of enclosing keys documented with "# --"
    undocumented = []
    for number, line in enumerate(lines):
        match = re.match(r"^(\s*)([A-Za-z][\w-]*):", line)
        if not match:
            continue
        indent = len(match.group(1))
        documented_values = [i for i in documented_values if i < indent]
        if documented_values:
            continue  # inside a documented default
        above = lines[number - 1].strip() if number else ""
        below = lines[number + 1].strip() if number + 1 < len(lines) else ""
        if above.startswith("# --"):
            documented_values.append(indent)
        elif not (above.startswith("#") or (line.rstrip().endswith(":") and below.startswith("#"))):
            undocumented.append(f"line {number + 1}: {line.strip()}")
    assert not undocumented, "\n".join(undocumented)


# Values handed to Kubernetes whole (toYaml): their inner keys are Kubernetes', not ours.
WHOLE_VALUES = {"resources", "nodeSelector", "tolerations", "affinity", "annotations"}
WHOLE_VALUES |= {"namespaceSelector", "extraEnv", "command", "args", "imagePullSecrets"}
WHOLE_VALUES |= {"startup", "liveness", "readiness", "podSelector", "podAnnotations", "podLabels"}


def test_every_value_is_read_by_a_template() -> None:
    """No dead values (a static check): the name of every leaf of values.yaml, or of the
    block it belongs to when the block goes to Kubernetes whole, is read by a template."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    templates = "\n".join(p.read_text() for p in (CHART / "templates").rglob("*") if p.is_file())

    def leaves(node: Any, path: tuple[str, ...]) -> list[tuple[str, ...]]:
        if isinstance(node, dict) and node and path[-1:] != ("resources",):
            if path and path[-1] in WHOLE_VALUES:
                return [path]
            return [leaf for k, v in node.items() for leaf in leaves(v, (*path, k))]
        return [path]

    unread = [
        ".".join(path)
        for path in leaves(values, ())
        if not re.search(rf"\.{re.escape(path[-1])}\b", templates)
    ]
    assert not unread, unread
