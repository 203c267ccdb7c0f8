"""Loopback TCP ports for local services, picked free and remembered across restarts."""

from __future__ import annotations

import json
import socket
from collections.abc import Mapping
from pathlib import Path

_ATTEMPTS = 200


def free_port(avoid_plus: int | None = 10000) -> int:
    """A loopback port nobody listens on; with `avoid_plus`, port + avoid_plus is free too.

    SeaweedFS opens each gRPC port at its HTTP port + 10000, so a port is only usable there
    when both are free.
    """
    for _ in range(_ATTEMPTS):
        port = _bind_any()
        if avoid_plus is None or _is_free(port + avoid_plus):
            return port
    raise RuntimeError(f"no free loopback port p with p+{avoid_plus} free too")


def remembered_ports(
    state_file: Path, wanted: Mapping[str, int | None], avoid_plus: int | None = 10000
) -> dict[str, int]:
    """A port per name: the wanted one, else the one recorded in `state_file`, else a new one.

    The result is written back so that a service restarted on the same data dir keeps its
    addresses (clients configured against it keep working).
    """
    recorded: dict[str, int] = json.loads(state_file.read_text()) if state_file.exists() else {}
    known = {name: port or recorded.get(name) for name, port in wanted.items()}
    taken = {p + offset for p in known.values() if p for offset in (0, avoid_plus or 0)}
    result: dict[str, int] = {}
    for name, port in known.items():
        if port is None:
            port = _free_port_outside(taken, avoid_plus)
            taken |= {port, port + (avoid_plus or 0)}
        result[name] = port
    state_file.parent.mkdir(parents=True, exist_ok=True)
    state_file.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return result


def _free_port_outside(taken: set[int], avoid_plus: int | None) -> int:
    """A free port whose own and +avoid_plus numbers collide with no port already chosen."""
    for _ in range(_ATTEMPTS):
        port = free_port(avoid_plus)
        if port not in taken and port + (avoid_plus or 0) not in taken:
            return port
    raise RuntimeError("no free loopback port outside the ones already chosen")


def _bind_any() -> int:
    """A port the kernel hands out as free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _is_free(port: int) -> bool:
    if port > 65535:
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True
