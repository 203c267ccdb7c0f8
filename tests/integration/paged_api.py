"""A latency-bound paginated JSON API on loopback: every page answers after a fixed delay, as
a remote API does. Rows are a function of the day, so the expected rows of any range are known.

    GET /events?day=2024-01-01&page=1  -> {"rows": [{"id", "day", "seq", "value"}], "next": 2}

It counts pages served and the most requests it served at once (parts that overlap).
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from datetime import date, timedelta
from typing import Any
from urllib.parse import parse_qs, urlparse


class PagedApi:
    def __init__(self, rows_per_day: int = 60, page_size: int = 20, delay: float = 0.3) -> None:
        self.rows_per_day, self.page_size, self.delay = rows_per_day, page_size, delay
        self.pages = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                with api._lock:
                    api.in_flight += 1
                    api.max_in_flight = max(api.max_in_flight, api.in_flight)
                try:
                    time.sleep(api.delay)
                    body = api.page(date.fromisoformat(query["day"]), int(query.get("page", 1)))
                finally:
                    with api._lock:
                        api.in_flight -= 1
                        api.pages += 1
                payload = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> PagedApi:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def rows(self, day: date) -> list[dict[str, Any]]:
        base = day.toordinal() * 100_000
        return [
            {"id": base + n, "day": day.isoformat(), "seq": n, "value": (base + n * 7) % 1000}
            for n in range(self.rows_per_day)
        ]

    def page(self, day: date, page: int) -> dict[str, Any]:
        rows = self.rows(day)[(page - 1) * self.page_size : page * self.page_size]
        more = page * self.page_size < self.rows_per_day
        return {"rows": rows, "next": page + 1 if more else None}

    def ids(self, start: date, end: date) -> set[int]:
        days = (end - start).days + 1
        return {r["id"] for d in range(days) for r in self.rows(start + timedelta(days=d))}
