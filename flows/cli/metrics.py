"""`flows metrics serve`: the Prometheus exporter (flows/observe/), a long-running process
that reads the Prefect API (PREFECT_API_URL, PREFECT_API_AUTH_STRING) and serves /metrics."""

from __future__ import annotations

import argparse
import threading
from typing import Any

from flows.errors import ConfigError

PORT = 9464  # the port OpenTelemetry's and Prometheus' exporters conventionally use
LOOKBACK_HOURS = 24.0
MIN_INTERVAL = 5.0


def register(sub: Any) -> None:
    metrics = sub.add_parser("metrics", help="the Prometheus exporter")
    metrics_sub = metrics.add_subparsers(dest="metrics_command", required=True)
    serve = metrics_sub.add_parser("serve", help="serve /metrics from the Prefect API")
    serve.add_argument("--port", type=int, default=PORT, help=f"default: {PORT}")
    serve.add_argument("--address", default="0.0.0.0", help="default: 0.0.0.0")
    serve.add_argument(
        "--lookback-hours",
        type=float,
        default=LOOKBACK_HOURS,
        help=f"at start, count runs and records this far back (default: {LOOKBACK_HOURS:g})",
    )
    serve.add_argument(
        "--min-interval",
        type=float,
        default=MIN_INTERVAL,
        help=f"scrapes closer than this many seconds share one read (default: {MIN_INTERVAL:g})",
    )
    serve.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    if not 0 < args.port < 65536:
        raise ConfigError(f"--port {args.port} is not a TCP port: give 1-65535")
    if args.lookback_hours < 0 or args.min_interval < 0:
        raise ConfigError("--lookback-hours and --min-interval take a number >= 0")
    from datetime import timedelta

    from prefect.client.orchestration import get_client
    from prometheus_client import CollectorRegistry, start_http_server

    from flows.observe.collector import PlatformCollector
    from flows.observe.reader import Reader

    reader = Reader(
        lambda: get_client(sync_client=True),
        lookback=timedelta(hours=args.lookback_hours),
        min_interval=args.min_interval,
    )
    reader.refresh()  # the lookback's read, before the first scrape waits for it
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PlatformCollector(reader))
    server, _thread = start_http_server(args.port, args.address, registry)
    print(f"serving /metrics on {args.address}:{server.server_port}", flush=True)
    threading.Event().wait()
    return 0
