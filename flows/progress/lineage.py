"""OpenLineage events of a dlt run, sent with openlineage-python's client (off unless the
client is configured: OPENLINEAGE_URL, OPENLINEAGE_CONFIG, an `openlineage.yml` in the
working dir or in ~/.openlineage, or OPENLINEAGE__TRANSPORT__* variables).

One run id per dlt run, whatever its attempts and pods: it is derived (a UUIDv7 from
openlineage-python's `generate_static_uuid`) from the run's key, which the state store keeps
with the pipeline's state and every attempt of the run shares, and from the flow run's
creation time, which never changes. The first attempt sends START, a retry RUNNING, and
the run ends with COMPLETE, or FAIL when no retry follows (a terminal error or the last
try); a failure that Prefect retries sends OTHER with the error. The Prefect flow run is the
parent run; a fan-out part's root is the fan-out's parent flow run.

This module imports neither dlt nor the client (the flow run's engine builds a `LineageRun`);
flows/progress/lineage_events.py sends the events from the attempt's process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

NAMESPACE = "flows"  # the jobs' namespace unless OPENLINEAGE_NAMESPACE names one


def configured() -> bool:
    """True when openlineage-python's client would find a transport (and is not disabled)."""
    if os.environ.get("OPENLINEAGE_DISABLED", "").strip().lower() == "true":
        return False
    if any(k in os.environ for k in ("OPENLINEAGE_URL", "OPENLINEAGE_CONFIG")):
        return True
    if any(k.startswith("OPENLINEAGE__TRANSPORT") for k in os.environ):
        return True
    homes = (Path.cwd(), Path.home() / ".openlineage")
    return any((home / "openlineage.yml").is_file() for home in homes)


@dataclass(frozen=True)
class LineageRun:
    """What the attempt's process needs to name its run and its parents (picklable)."""

    run_id: str
    flow_run_id: str | None = None
    flow_name: str | None = None
    root_run_id: str | None = None  # a fan-out part's parent flow run
    root_flow_name: str | None = None
    first_attempt: bool = True
    last_try: bool = True

    @staticmethod
    def run_id_of(run_key: str, created: datetime) -> str:
        from openlineage.client.uuid import generate_static_uuid

        return str(generate_static_uuid(created, run_key.encode()))
