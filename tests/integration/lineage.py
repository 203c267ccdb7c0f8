"""An OpenLineage receiver for tests (what openlineage-python's HTTP transport posts to), the
spec's requirements checked on each event, and events parsed back into the client's classes
(the client has no parser of its own)."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any
from uuid import UUID

from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import (
    error_message_run,
    job_type_job,
    output_statistics_output_dataset,
    parent_run,
    schema_dataset,
    tags_run,
)
from openlineage.client.serde import Serde

from devstack.ports import free_port

ENDPOINT = "/api/v1/lineage"  # the HTTP transport's default endpoint


class Receiver(http.server.ThreadingHTTPServer):
    events: list[dict[str, Any]]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        assert self.path == ENDPOINT, self.path
        self.server.events.append(json.loads(body))
        self.send_response(201)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """(the URL for OPENLINEAGE_URL, the events received so far)."""
    server = Receiver(("127.0.0.1", free_port(avoid_plus=None)), _Handler)
    server.events = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.events
    finally:
        server.shutdown()


def _facets(event: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    yield from (event["run"].get("facets") or {}).items()
    yield from (event["job"].get("facets") or {}).items()
    for dataset in [*(event.get("inputs") or []), *(event.get("outputs") or [])]:
        yield from (dataset.get("facets") or {}).items()
        yield from (dataset.get("outputFacets") or {}).items()
        yield from (dataset.get("inputFacets") or {}).items()


def spec_problems(event: dict[str, Any]) -> list[str]:
    """What a RunEvent lacks of the OpenLineage spec (2-0-2): required fields, formats, and
    `_producer` and `_schemaURL` on every facet."""
    problems = []
    if event.get("eventType") not in {s.value for s in RunState}:
        problems.append(f"eventType {event.get('eventType')!r}")
    for key in ("eventTime", "producer", "schemaURL", "run", "job"):
        if not event.get(key):
            problems.append(f"no {key}")
    try:
        datetime.fromisoformat(event["eventTime"])
        UUID(event["run"]["runId"])
    except (KeyError, ValueError) as err:
        problems.append(f"eventTime or runId: {err}")
    if not str(event.get("schemaURL", "")).startswith("https://openlineage.io/spec/"):
        problems.append(f"schemaURL {event.get('schemaURL')}")
    if not (event["job"].get("namespace") and event["job"].get("name")):
        problems.append("job without namespace or name")
    for dataset in [*(event.get("inputs") or []), *(event.get("outputs") or [])]:
        if not (dataset.get("namespace") and dataset.get("name")):
            problems.append(f"dataset without namespace or name: {dataset}")
    for name, facet in _facets(event):
        for key in ("_producer", "_schemaURL"):
            if not str(facet.get(key, "")).startswith("http"):
                problems.append(f"facet {name}: {key} {facet.get(key)!r}")
    return problems


def _plain(facet: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in facet.items() if not k.startswith("_")}


def _run_facet(name: str, facet: dict[str, Any]) -> Any:
    if name == "parent":
        root = facet.get("root")
        return parent_run.ParentRunFacet(
            run=parent_run.Run(**facet["run"]),
            job=parent_run.Job(**facet["job"]),
            root=parent_run.Root(
                run=parent_run.RootRun(**root["run"]), job=parent_run.RootJob(**root["job"])
            )
            if root
            else None,
        )
    if name == "tags":  # the client's own (its version)
        return tags_run.TagsRunFacet(tags=[tags_run.TagsRunFacetFields(**t) for t in facet["tags"]])
    if name == "errorMessage":
        return error_message_run.ErrorMessageRunFacet(**_plain(facet))
    raise AssertionError(f"unexpected run facet {name}")


def parse(event: dict[str, Any]) -> RunEvent:
    """The event as openlineage-python's classes (their validators run on the way)."""
    job_facets = {}
    for name, facet in (event["job"].get("facets") or {}).items():
        assert name == "jobType", name
        job_facets[name] = job_type_job.JobTypeJobFacet(**_plain(facet))
    outputs = []
    for o in event.get("outputs") or []:
        schema = o["facets"]["schema"]
        fields = [schema_dataset.SchemaDatasetFacetFields(**f) for f in schema["fields"]]
        stats = o["outputFacets"]["outputStatistics"]
        outputs.append(
            OutputDataset(
                namespace=o["namespace"],
                name=o["name"],
                facets={"schema": schema_dataset.SchemaDatasetFacet(fields=fields)},
                outputFacets={
                    "outputStatistics": (
                        output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
                            **_plain(stats)
                        )
                    )
                },
            )
        )
    parsed = RunEvent(
        eventType=RunState(event["eventType"]),
        eventTime=event["eventTime"],
        producer=event["producer"],
        run=Run(
            runId=event["run"]["runId"],
            facets={k: _run_facet(k, v) for k, v in (event["run"].get("facets") or {}).items()},
        ),
        job=Job(namespace=event["job"]["namespace"], name=event["job"]["name"], facets=job_facets),
        inputs=[InputDataset(namespace=i["namespace"], name=i["name"]) for i in event["inputs"]],
        outputs=outputs,
    )
    # nothing lost or added on the way (the serializer drops empty values on both sides)
    assert json.loads(Serde.to_json(parsed)) == json.loads(Serde.to_json(event))
    return parsed
