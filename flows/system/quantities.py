"""Kubernetes resource quantities: one grammar, parsed by the kubernetes client, written back
rounded up, and requests checked against limits (no JSON schema can compare two fields, so
the Prefect server accepts a request above its limit and only Job creation fails)."""

from __future__ import annotations

import importlib.util
import math
import os
import re
import sys
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from flows.errors import ConfigError

MiB = 2**20

# Kubernetes' quantity grammar (apimachinery resource.Quantity) for the non-negative values
# that requests and limits take: a decimal number (`1`, `1.5`, `.5`, `1.`) with one binary
# suffix (Ki Mi Gi Ti Pi Ei), one decimal suffix (n u m k M G T P E) or a decimal exponent
# (`129e6`, `1E-3`). It is the subset of what `kubernetes.utils.quantity.parse_quantity`
# accepts that the API server also accepts: parse_quantity takes Python's Decimal syntax too
# ("NaN", "-1", "1_000", " 1 "), which Kubernetes refuses. Used by the pool template's JSON
# schema and the chart's values.schema.json (a test keeps that copy equal to this one).
QUANTITY_PATTERN = r"^\+?([0-9]+(\.[0-9]*)?|\.[0-9]+)([KMGTPE]i|[numkMGTPE]|[eE][+-]?[0-9]+)?$"
QUANTITY_RE = re.compile(QUANTITY_PATTERN)

# (request, limit) job variables of the pool template
RESOURCE_PAIRS = (
    ("cpu_request", "cpu_limit"),
    ("memory_request", "memory_limit"),
    ("ephemeral_storage_request", "ephemeral_storage_limit"),
)


def _kubernetes_parse_quantity() -> Callable[[str], Decimal]:
    """`kubernetes.utils.quantity.parse_quantity`, loaded without the `kubernetes` package
    when that is not imported yet: the package's `__init__` imports the whole API client
    (6.5 MB and about 0.2 s in every flow-run process, which only parses quantities). The
    module itself imports only `decimal`."""
    loaded = sys.modules.get("kubernetes.utils.quantity")
    if loaded is None:
        package = importlib.util.find_spec("kubernetes")
        if package is None or not package.submodule_search_locations:
            raise ImportError("the kubernetes client is not installed")
        path = Path(package.submodule_search_locations[0], "utils", "quantity.py")
        spec = importlib.util.spec_from_file_location("flows._kubernetes_quantity", path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {path}")
        loaded = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(loaded)
    parse: Callable[[str], Decimal] = loaded.parse_quantity
    return parse


parse_quantity = _kubernetes_parse_quantity()


def cpu_cores(quantity: str | float | int) -> float:
    return float(parse_quantity(str(quantity)))


def memory_bytes(quantity: str | float | int) -> int:
    return int(parse_quantity(str(quantity)))


def format_cpu(cores: float, step_millicores: int = 50) -> str:
    """Cores rounded up to `step_millicores`: 0.23 -> "250m", 2.0 -> "2"."""
    millis = max(step_millicores, math.ceil(cores * 1000 / step_millicores) * step_millicores)
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"


def format_memory(size: float, step_mib: int = 64) -> str:
    """Bytes rounded up to `step_mib` MiB: 700 MB -> "704Mi", 2 GiB -> "2Gi"."""
    mib = max(step_mib, math.ceil(size / MiB / step_mib) * step_mib)
    return f"{mib // 1024}Gi" if mib % 1024 == 0 else f"{mib}Mi"


def is_quantity(text: str) -> bool:
    return QUANTITY_RE.match(text) is not None


def quantity(text: Any, setting: str) -> Decimal:
    """`text` as a number, or a ConfigError naming `setting`."""
    if not isinstance(text, str | int | float) or not is_quantity(str(text)):
        raise ConfigError(f"{setting}={text!r} is not a Kubernetes quantity (e.g. 500m, 1.5, 2Gi)")
    return Decimal(parse_quantity(str(text)))


def check_requests_within_limits(
    job_variables: Mapping[str, Any], defaults: Mapping[str, Any], where: str = "job_variables"
) -> None:
    """Raises ConfigError, in one line naming both values, when a request is above its limit.

    `job_variables` wins over `defaults` (the pool template's defaults), as on the server:
    a request above the pool's default limit fails too.
    """
    for request_key, limit_key in RESOURCE_PAIRS:
        request = job_variables.get(request_key, defaults.get(request_key))
        limit = job_variables.get(limit_key, defaults.get(limit_key))
        if request in (None, "") or limit in (None, ""):
            continue
        if quantity(request, f"{where}.{request_key}") > quantity(limit, f"{where}.{limit_key}"):
            source = "" if limit_key in job_variables else " (the pool default)"
            raise ConfigError(
                f"{where}: {request_key} {request} is above {limit_key} {limit}{source}: "
                "Kubernetes refuses to create the pod"
            )


def template_defaults(template: Mapping[str, Any]) -> dict[str, Any]:
    """The defaults of a base job template's variables."""
    properties = template.get("variables", {}).get("properties", {})
    return {name: spec["default"] for name, spec in properties.items() if "default" in spec}


# env the pool template gives the flow-run container (cgroups show limits, not requests)
POD_RESOURCE_ENV = {
    "cpu_request": "FLOWS_CPU_REQUEST",
    "cpu_limit": "FLOWS_CPU_LIMIT",
    "memory_request": "FLOWS_MEMORY_REQUEST",
    "memory_limit": "FLOWS_MEMORY_LIMIT",
}


def pod_resources(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The requests and limits the pool template gave this pod, by job variable (the
    environment is given whole: the names are the template's, not settings of their own)."""
    env = os.environ if env is None else env
    return {key: env[name] for key, name in POD_RESOURCE_ENV.items() if env.get(name)}


def check_pod_resources(env: Mapping[str, str] | None = None) -> None:
    """At the start of a flow-run attempt: the requests and limits the pod was given.

    Kubernetes never starts such a pod, but a process pool (the local stack) does, with the
    same job variables: the run fails there as it would on the cluster.
    """
    from flows.system.resources import container_limits

    given = pod_resources(env)
    cgroup = container_limits()  # what the kernel enforces, when the env does not say
    if "cpu_limit" not in given and cgroup.cpu_limit:
        given["cpu_limit"] = f"{cgroup.cpu_limit:g}"
    if "memory_limit" not in given and cgroup.memory_limit:
        given["memory_limit"] = str(cgroup.memory_limit)
    check_requests_within_limits(given, {}, where="flow-run pod")
