"""Run records: one compact resource record per task attempt, kept as a keyed table artifact
per deployment (`run-record-<deployment>`), so its versions are the deployment's history.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from flows.errors import CONFIG_ERROR as CONFIG_ERROR  # the outcomes are named there
from flows.progress.artifacts import artifact_key
from flows.system.quantities import cpu_cores, memory_bytes, pod_resources


def record_key(deployment_or_flow: str) -> str:
    return artifact_key("run-record", deployment_or_flow)


@dataclass
class RunRecord:
    deployment: str
    pipeline: str
    flow_run_id: str
    attempt: int
    outcome: str  # completed | failed | killed | config-error (the pipeline never ran)
    wall_seconds: float
    cpu_seconds: float
    peak_rss_bytes: int
    rows: int = 0
    step_seconds: dict[str, float] = field(default_factory=dict)
    cpu_limit: float | None = None
    memory_limit: int | None = None
    cpu_request: float | None = None
    memory_request: int | None = None
    cpu_throttled_seconds: float = 0.0
    finished_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    # what the exporter (flows/observe/) turns into metrics; absent from older records
    tables: dict[str, int] = field(default_factory=dict)  # rows loaded per table
    packages: int = 0  # load packages loaded
    schema_changes: int = 0  # tables whose destination schema changed
    step_attempts: dict[str, int] = field(default_factory=dict)
    resumed_packages: int = 0  # packages found pending at the start and finished
    resumed_rows: int = 0  # rows those packages loaded: not extracted again
    lease_takeover: bool = False  # took the state's lease over from a holder that left it
    snapshots: int = 0
    snapshot_bytes: int = 0
    snapshot_seconds: float = 0.0
    oom_killed: bool = False  # the kernel OOM-killed a process of the pod during the attempt
    error: str = ""  # the class name of what the attempt failed on

    @property
    def average_cores(self) -> float:
        return self.cpu_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def warnings(self) -> list[str]:
        """What an operator should look at: near the memory limit, throttled, over-requested."""
        found = []
        if self.memory_limit and self.peak_rss_bytes > 0.8 * self.memory_limit:
            found.append(
                f"peak memory {self.peak_rss_bytes / 2**20:,.0f} MiB is "
                f"{100 * self.peak_rss_bytes / self.memory_limit:.0f}% of the "
                f"{self.memory_limit / 2**20:,.0f} MiB limit"
            )
        if self.cpu_throttled_seconds > max(1.0, 0.05 * self.wall_seconds):
            found.append(f"CPU throttled for {self.cpu_throttled_seconds:.1f} s")
        if self.memory_request and self.peak_rss_bytes * 4 < self.memory_request:
            found.append(
                f"memory request {self.memory_request / 2**20:,.0f} MiB is over 4x the peak "
                f"{self.peak_rss_bytes / 2**20:,.0f} MiB"
            )
        if (
            self.cpu_request
            and self.average_cores * 4 < self.cpu_request
            and self.wall_seconds > 30
        ):
            found.append(
                f"CPU request {self.cpu_request:g} is over 4x the {self.average_cores:.2f} "
                "cores used on average"
            )
        return found

    @classmethod
    def from_artifact_data(cls, data: Any) -> RunRecord:
        rows = json.loads(data) if isinstance(data, str) else data
        raw = rows[0] if isinstance(rows, list) else rows
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in raw.items() if k in known})


def requests_from_env() -> tuple[float | None, int | None]:
    """The pod's requests, passed by the base job template (cgroups do not show them)."""
    given = pod_resources()
    cpu, memory = given.get("cpu_request"), given.get("memory_request")
    return (cpu_cores(cpu) if cpu else None, memory_bytes(memory) if memory else None)
