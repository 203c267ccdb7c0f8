"""A real Prometheus server (Debian's `prometheus`, scripts/install-services.sh) scraping
given targets every second, and PromQL through its HTTP API."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from devstack.ports import free_port


def binary(name: str) -> str:
    found = shutil.which(name)
    assert found, f"{name} not found: run scripts/install-services.sh (Debian's prometheus)"
    return found


@dataclass
class Prometheus:
    url: str

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The instant vector's samples; fails on a query Prometheus refuses."""
        address = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(address, timeout=10) as answer:
            body = json.load(answer)
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def value(self, promql: str) -> float | None:
        """The one sample's value (None when the vector is empty)."""
        found = self.query(promql)
        assert len(found) <= 1, found
        return float(found[0]["value"][1]) if found else None

    def until(self, promql: str, expected: float, timeout: float = 60) -> float | None:
        """Waits until the query's one value is `expected` (scrapes are a second apart)."""
        deadline = time.monotonic() + timeout
        while (found := self.value(promql)) != expected and time.monotonic() < deadline:
            time.sleep(0.5)
        return found


@contextmanager
def prometheus(root: Path, targets: list[str], rules: Path | None = None) -> Iterator[Prometheus]:
    root.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "flows", "static_configs": [{"targets": targets}]}],
    }
    if rules is not None:
        config["rule_files"] = [str(rules)]
    (root / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port(avoid_plus=None)
    log = (root / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [
            binary("prometheus"),
            f"--config.file={root / 'prometheus.yml'}",
            f"--storage.tsdb.path={root / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = Prometheus(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (root / "prometheus.log").read_text()[-2000:]
            try:
                urllib.request.urlopen(f"{server.url}/-/ready", timeout=2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "prometheus not ready after 60 s"
                time.sleep(0.3)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
