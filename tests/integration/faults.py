"""Fault injection in front of real services: an HTTP proxy for the S3 state store and a TCP
proxy for a database.

    proxy = FaultProxy(seaweed.endpoint_url).start()
    env = {**seaweed.env(), "AWS_ENDPOINT_URL": proxy.url}
    proxy.add(Fault("503", method="PUT", path="/manifests/", after=1, times=None))
    ...
    proxy.clear(); proxy.stop()

The proxy runs in the test's own process, on 127.0.0.1, and forwards every request as it came
(the Host header included, so S3 signatures still match). A `Fault` matches requests by method
and substrings of the path and query; the first active fault that matches decides:

- `"503"`: answer 503 SlowDown without forwarding (the store never saw the request);
- `"drop"`: forward, read the store's reply, then close the client's connection without
  answering (the store committed; the client saw a lost reply);
- `"reset"`: close the connection at once (the store never saw the request);
- `"delay"`: wait `seconds`, then forward.

`TcpProxy` forwards raw bytes (PostgreSQL) and can `cut()` every connection and refuse new
ones for a while, as a server restart does.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

ACTIONS = ("503", "drop", "reset", "delay")
# the standing fault-injection test (test_fault_injection.py): its seed, drawn once per
# session unless set (tests/conftest.py), and how many scenarios it plays
SEED_VAR, COUNT_VAR, SCENARIOS = "FLOWS_FAULT_SEED", "FLOWS_FAULT_SCENARIOS", 12
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}


@dataclass
class Fault:
    """One rule: `action` for requests matching `method` and `path` (substrings of the target,
    query included), skipping the first `after` matches, then for `times` matches (None: every
    one) or until `until` (a `time.monotonic()` deadline), whichever ends first."""

    action: str
    method: str | None = None
    path: str = ""
    after: int = 0
    times: int | None = 1
    until: float | None = None
    seconds: float = 0.0
    seen: int = 0
    applied: int = 0

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"fault action {self.action!r}: one of {ACTIONS}")

    def take(self, method: str, target: str) -> bool:
        """True when this rule applies to the request (and counts it)."""
        if self.method is not None and method != self.method:
            return False
        if self.path not in target:
            return False
        if self.until is not None and time.monotonic() >= self.until:
            return False
        if self.times is not None and self.applied >= self.times:
            return False
        self.seen += 1
        if self.seen <= self.after:
            return False
        self.applied += 1
        return True


@dataclass
class Seen:
    method: str
    target: str
    outcome: str  # the upstream status, or the fault's action


@dataclass
class FaultProxy:
    """An HTTP/1.1 reverse proxy to `upstream` (e.g. SeaweedFS's S3 endpoint) with faults."""

    upstream: str
    faults: list[Fault] = field(default_factory=list)
    requests: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        parts = urlsplit(self.upstream)
        self._target = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the proxy first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FaultProxy:
        proxy = self

        class Handler(_Forward):
            owner = proxy

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()

    def decide(self, method: str, target: str) -> Fault | None:
        with self._lock:
            return next((f for f in self.faults if f.take(method, target)), None)

    def record(self, method: str, target: str, outcome: str) -> None:
        with self._lock:
            self.requests.append(Seen(method, target, outcome))

    def count(self, method: str | None = None, path: str = "", outcome: str | None = None) -> int:
        with self._lock:
            return sum(
                1
                for r in self.requests
                if (method is None or r.method == method)
                and path in r.target
                and (outcome is None or r.outcome == outcome)
            )

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Forward(BaseHTTPRequestHandler):
    owner: FaultProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: no access log
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        method, target = self.command, self.path
        body = self._body()
        fault = self.owner.decide(method, target)
        action = fault.action if fault else None
        if action == "reset":
            self.owner.record(method, target, "reset")
            self._abort()
            return
        if action == "503":
            self.owner.record(method, target, "503")
            payload = b"<Error><Code>SlowDown</Code><Message>injected</Message></Error>"
            self.send_response(503)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        if action == "delay" and fault is not None:
            time.sleep(fault.seconds)
        status, headers, data = self._forward(method, target, body)
        if action == "drop":
            self.owner.record(method, target, "drop")
            self._abort()
            return
        self.owner.record(method, target, str(status))
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(data)

    def _forward(self, method: str, target: str, body: bytes) -> tuple[int, Any, bytes]:
        host, port = self.owner._target
        conn = http.client.HTTPConnection(host, port, timeout=60)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            if body or method in ("PUT", "POST"):
                headers["Content-Length"] = str(len(body))
            conn.request(method, target, body=body or None, headers=headers)
            response = conn.getresponse()
            data = response.read()
            return response.status, response.getheaders(), data
        finally:
            conn.close()

    def _abort(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
            self.connection.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle


class TcpProxy:
    """Forwards 127.0.0.1:`port` to `upstream`; `cut(seconds)` drops every connection and
    refuses new ones for that long (a database restart, from the client's side)."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._down_until = 0.0
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopped = False
        self.cuts = 0

    def start(self) -> TcpProxy:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopped = True
        with contextlib.suppress(OSError):
            self._listener.close()
        self._close_all()

    def cut(self, seconds: float) -> None:
        self._down_until = time.monotonic() + seconds
        self.cuts += 1
        self._close_all()

    def wait_up(self) -> None:
        """Returns once a cut is over: the database is back."""
        time.sleep(max(0.0, self._down_until - time.monotonic()))

    def _close_all(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, set()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                conn.close()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if time.monotonic() < self._down_until:
                client.close()
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns |= {client, server}
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for conn in (source, sink):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
