"""What an isolated attempt tells its parent: one JSON message per line on the child's channel.

The child never calls Prefect (a forked child's inherited client belongs to the engine's
threads; a spawned child does not even import prefect, about 100 MB): its collector writes
artifacts as messages, and the parent, which holds the Prefect client anyway, writes them to
the API. Log lines go to the child's log stream, which the parent forwards to the task's
logger.

Messages: `create` / `update` / `create_once` (artifacts; a handle is the child's number
for an artifact it updates later), then exactly one `report` or `error` at the end.
Parent and child run the same code, so the format has no version.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import IO, Any

from flows.progress.artifacts import ArtifactHandle, Sink

PARENT_PID = "FLOWS_ATTEMPT_PARENT"  # the engine's pid, for the spawned child to die with it
WARM_WAIT_SECONDS = 120.0  # how long a prewarmed child waits for its attempt


class MessageSink:
    """The child's side: a Sink that writes artifacts to the parent instead of the API."""

    def __init__(self, channel: IO[str]) -> None:
        self.channel = channel
        self.calls = 0
        self.failures = 0
        self._lock = threading.Lock()  # the progress ticker writes from its own thread
        self._handles = 0

    def send(self, op: str, **fields: Any) -> None:
        line = json.dumps({"op": op, **fields}, default=str)
        with self._lock:
            self.calls += 1
            self.channel.write(line + "\n")
            self.channel.flush()

    def create(
        self, key: str, kind: str, data: Any, description: str, flow_level: bool = False
    ) -> ArtifactHandle:
        with self._lock:
            self._handles += 1
            handle = ArtifactHandle()
            handle.number = self._handles
        self.send(
            "create",
            handle=handle.number,
            key=key,
            kind=kind,
            data=data,
            description=description,
            flow_level=flow_level,
        )
        return handle

    def update(self, handle: ArtifactHandle, data: Any, description: str) -> None:
        self.send("update", handle=handle.number, data=data, description=description)

    def create_once(self, key: str, kind: str, data: Any, description: str, marker: str) -> None:
        self.send(
            "create_once", key=key, kind=kind, data=data, description=description, marker=marker
        )

    def flush(self, timeout: float = 30.0) -> None:
        """Every message is flushed as it is sent."""

    def close(self) -> None:
        """The channel belongs to the process."""


@dataclass
class Relay:
    """The parent's side: applies the child's messages to a real sink, keeps the outcome."""

    sink: Sink
    report: dict[str, Any] | None = None
    failure: dict[str, Any] | None = None
    _handles: dict[int, ArtifactHandle] = field(default_factory=dict)

    def handle(self, line: str) -> None:
        message = json.loads(line)
        op = message.pop("op")
        if op == "create":
            number = message.pop("handle")
            self._handles[number] = self.sink.create(**message)
        elif op == "update":
            handle = self._handles.get(message.pop("handle"))
            if handle is not None:
                self.sink.update(handle, **message)
        elif op == "create_once":
            self.sink.create_once(**message)
        elif op == "report":
            self.report = message["report"]
        elif op == "error":
            self.failure = message
        else:
            raise ValueError(f"unknown attempt message {op!r}")
