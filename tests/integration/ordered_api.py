"""A slow, ordered JSON API on loopback: ascending ids, a delay per page, as a remote API with
a cursor parameter behaves. It records every page it served, so a test can tell which pages
a rerun asked for again.

    GET /items?after=40&limit=20     -> {"rows": [{"id": 41, ...}, ...]}   (ids 41..60)
    GET /accounts?after=40&limit=20  -> the same ids; `accounts` is a merge table, and its
                                        `version` says which serve it came from

`on_page(count)` is called before each answer (the test kills the run from there).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from tests.integration.json_api import JsonApi


class OrderedApi(JsonApi):
    def __init__(self, rows: int, page_size: int, delay: float) -> None:
        super().__init__()
        self.rows, self.page_size, self.delay = rows, page_size, delay
        self.served: list[tuple[str, int]] = []  # (path, after) of every page, in order
        self.on_page: Callable[[int], None] = lambda count: None
        self._lock = threading.Lock()

    @property
    def pages_per_resource(self) -> int:
        return -(-self.rows // self.page_size)

    def answer(self, path: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        after = int(query.get("after", ["0"])[0])
        limit = min(int(query.get("limit", [str(self.page_size)])[0]), self.page_size)
        with self._lock:
            self.served.append((path, after))
            count = len(self.served)
        self.on_page(count)
        time.sleep(self.delay)
        ids = range(after + 1, min(after + limit, self.rows) + 1)
        if path == "/accounts":
            return 200, {"rows": [{"id": i, "name": f"a{i}", "version": count} for i in ids]}
        return 200, {"rows": [{"id": i, "value": i * 7 % 1000, "tags": [i % 3]} for i in ids]}

    def pages_served(self) -> list[tuple[str, int]]:
        with self._lock:
            return list(self.served)

    def run_killed_at(
        self, page: int, args: list[str], env: dict[str, str], timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        """Runs `flows ARGS` in a process group of its own and SIGKILLs the whole group when
        page number `page` is asked for (counted over all resources), before it is served."""
        proc = subprocess.Popen(
            [sys.executable, "-m", "flows", *args],
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

        def kill(count: int) -> None:
            if count == page and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)

        self.on_page = kill
        try:
            out, err = proc.communicate(timeout=timeout)
        finally:
            self.on_page = lambda count: None
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
