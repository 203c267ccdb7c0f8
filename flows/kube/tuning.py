"""`flows tune FLOW/DEPLOYMENT` (or a bare deployment name): cpu/memory requests and limits
from the deployment's run records.

Memory: the limit covers every observed peak with headroom (max peak x 1.15, and the 95th
percentile x 1.3); the request is the median peak x 1.1. CPU: the request is the 90th
percentile of average cores used x 1.1; the limit is twice that, and more if a run was
throttled. All rounded up to Kubernetes quantities (50m, 64Mi steps).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from flows.errors import ConfigError
from flows.parts.plan import PART_SEPARATOR, is_part_of
from flows.prefect.records import read_records
from flows.progress.records import CONFIG_ERROR, RunRecord
from flows.system.quantities import (
    check_requests_within_limits,
    cpu_cores,
    format_cpu,
    format_memory,
    memory_bytes,
    template_defaults,
)

KEYS = ("cpu_request", "cpu_limit", "memory_request", "memory_limit")


class TuneError(ConfigError):
    """Bad input: unknown deployment, no records (exit 2)."""


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


@dataclass
class Recommendation:
    deployment: str
    current: dict[str, Any]
    recommended: dict[str, str]
    evidence: list[str]

    def changes(self) -> dict[str, str]:
        return {k: v for k, v in self.recommended.items() if str(self.current.get(k)) != v}


def recommend(deployment: str, records: list[RunRecord], current: dict[str, Any]) -> Recommendation:
    if not records:
        raise TuneError(
            f"no run records for {deployment!r} yet: run it at least once (records are written "
            "by every attempt of a dlt task)"
        )
    peaks = [float(r.peak_rss_bytes) for r in records]
    cores = [r.average_cores for r in records]
    throttled = [r for r in records if r.cpu_throttled_seconds > 1.0]
    killed = [r for r in records if r.outcome == "killed"]
    memory_limit = max(max(peaks) * 1.15, _percentile(peaks, 95) * 1.3)
    if killed:  # an OOM-killed attempt peaked at its limit at least: go well above it
        memory_limit = max(memory_limit, *(1.5 * (r.memory_limit or 0) for r in killed))
    memory_request = min(memory_limit, statistics.median(peaks) * 1.1)
    cpu_request = max(0.1, _percentile(cores, 90) * 1.1)
    cpu_limit = max(cpu_request * 2, max(cores) * 1.5, 0.5)
    if throttled:
        cpu_limit *= 1.5
    recommended = {
        "cpu_request": format_cpu(cpu_request),
        "cpu_limit": format_cpu(cpu_limit),
        "memory_request": format_memory(memory_request),
        "memory_limit": format_memory(memory_limit),
    }
    mib = 2**20
    evidence = [
        f"{len(records)} run records from {records[0].finished_at[:19]} to "
        f"{records[-1].finished_at[:19]} ({len(killed)} killed, {len(throttled)} throttled)",
        f"peak RSS: median {statistics.median(peaks) / mib:,.0f} MiB, p95 "
        f"{_percentile(peaks, 95) / mib:,.0f} MiB, max {max(peaks) / mib:,.0f} MiB",
        f"CPU: average cores median {statistics.median(cores):.2f}, p90 "
        f"{_percentile(cores, 90):.2f}, max {max(cores):.2f}",
    ]
    parts = sorted({r.pipeline for r in records if PART_SEPARATOR in r.pipeline})
    for whole in sorted({p.split(PART_SEPARATOR)[0] for p in parts}):  # one pod size for all
        of_whole = [p for p in parts if is_part_of(p, whole)]
        shown = ", ".join(of_whole[:4]) + (", ..." if len(of_whole) > 4 else "")
        evidence.append(f"parts of {whole}: {len(of_whole)} ({shown})")
    return Recommendation(deployment, {k: current.get(k) for k in KEYS}, recommended, evidence)


def covers(recommendation: Recommendation, records: list[RunRecord]) -> bool:
    """True when the recommended memory limit is above every observed peak."""
    limit = memory_bytes(recommendation.recommended["memory_limit"])
    return all(r.peak_rss_bytes < limit for r in records) and cpu_cores(
        recommendation.recommended["cpu_limit"]
    ) >= max(r.average_cores for r in records)


def format_recommendation(rec: Recommendation) -> str:
    lines = [f"{rec.deployment}: recommended job_variables", ""]
    lines.append(f"  {'variable':16} {'current':>10} {'recommended':>12}")
    for key in KEYS:
        mark = "  *" if key in rec.changes() else ""
        lines.append(
            f"  {key:16} {rec.current.get(key) or '-'!s:>10} {rec.recommended[key]:>12}{mark}"
        )
    lines += ["", "evidence:"] + [f"  {e}" for e in rec.evidence]
    return "\n".join(lines)


def load(
    client: Any, name: str, runs: int, pipeline: str | None = None
) -> tuple[Any | None, list[RunRecord]]:
    """The deployment (None for a flow run without one, e.g. on the embedded default) and
    its newest records. `name` is FLOW/DEPLOYMENT (as `prefect deployment run` takes it) or
    a bare deployment name. Attempts that failed on their config never ran the pipeline:
    they say nothing about its resources and are left out. `pipeline` keeps the records of
    that pipeline and its fan-out parts (a part deployment runs the parts of many)."""
    deployment = find_deployment(client, name)
    found = read_records(
        client, deployment.name if deployment else name, runs * 5 if pipeline else runs
    )
    records = [
        r
        for r in found
        if r.outcome != CONFIG_ERROR and (pipeline is None or is_part_of(r.pipeline, pipeline))
    ][-runs:]
    if deployment is None and not records:
        raise TuneError(f"no deployment and no run records named {name!r}")
    return deployment, records


def find_deployment(client: Any, name: str) -> Any | None:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
    from prefect.exceptions import ObjectNotFound

    if "/" in name:
        try:
            return client.read_deployment_by_name(name)
        except ObjectNotFound:
            raise TuneError(f"no deployment {name!r} (FLOW/DEPLOYMENT)") from None
    found = client.read_deployments(
        deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[name]))
    )
    if len(found) > 1:
        flows = {f.id: f.name for f in client.read_flows()}
        names = ", ".join(sorted(f"{flows.get(d.flow_id, '?')}/{d.name}" for d in found))
        raise TuneError(f"{len(found)} deployments are named {name!r}: give one of {names}")
    return found[0] if found else None


def apply(client: Any, deployment: Any, rec: Recommendation) -> dict[str, Any]:
    from prefect.client.schemas.actions import DeploymentUpdate

    merged = {**(deployment.job_variables or {}), **rec.recommended}
    pool = client.read_work_pool(deployment.work_pool_name) if deployment.work_pool_name else None
    defaults = template_defaults(pool.base_job_template) if pool else {}
    check_requests_within_limits(merged, defaults, where=f"{deployment.name} job_variables")
    client.update_deployment(deployment.id, DeploymentUpdate(job_variables=merged))
    return merged


def deployment_name(client: Any, deployment: Any | None, asked: str) -> str:
    """FLOW/DEPLOYMENT, as `flows deploy --release-job-variables` takes it."""
    if deployment is None:
        return asked
    return f"{client.read_flow(deployment.flow_id).name}/{deployment.name}"


def values_snippet(rec: Recommendation, name: str) -> str:
    """The recommendation as Helm values: committed to the release's values, the deploy hook
    applies it (`flows deploy --release-job-variables`) and later releases keep it."""
    import yaml

    values = {"deployFlows": {"jobVariables": {name: dict(rec.recommended)}}}
    return "\n".join(
        [f"# flows tune {rec.deployment}: {rec.evidence[0]}", yaml.safe_dump(values).rstrip()]
    )
