"""A latency-bound paginated JSON API on loopback: every page answers after a fixed delay, as
a remote API does. Rows are a function of the day, so the expected rows of any range are known.

    GET /events?day=2024-01-01&page=1  -> {"rows": [{"id", "day", "seq", "value"}], "next": 2}

It counts pages served and the most requests it served at once (parts that overlap).
"""

from __future__ import annotations

import threading
import time
from datetime import date, timedelta
from typing import Any

from tests.integration.json_api import JsonApi


class PagedApi(JsonApi):
    def __init__(self, rows_per_day: int = 60, page_size: int = 20, delay: float = 0.3) -> None:
        super().__init__()
        self.rows_per_day, self.page_size, self.delay = rows_per_day, page_size, delay
        self.pages = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()

    def answer(self, path: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            time.sleep(self.delay)
            day = date.fromisoformat(query["day"][0])
            return 200, self.page(day, int(query.get("page", ["1"])[0]))
        finally:
            with self._lock:
                self.in_flight -= 1
                self.pages += 1

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
