"""A paginated JSON HTTP API on loopback, the kind of server users point dlt's REST API
source at: `/items` (filtered by `updated_since`, sorted by `updated_at`) and `/customers`.

    GET /items?page=1&page_size=100&updated_since=2024-01-01T00:00:00Z
    -> {"data": [{"id": 1, "name": ..., "price": ..., "updated_at": ...}], "page": 1,
        "total_pages": 10}

The test changes items (`touch`) and adds items (`add`) between runs and counts requests.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.integration.json_api import JsonApi

EPOCH = datetime(2025, 1, 1, tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class ShopApi(JsonApi):
    def __init__(self, items: int = 1000, customers: int = 120) -> None:
        super().__init__()
        self.items: dict[int, dict[str, Any]] = {}
        self.customers = [
            {"id": i, "email": f"c{i}@example.com", "country": ["DE", "FR", "US"][i % 3]}
            for i in range(1, customers + 1)
        ]
        self.clock = 0
        self.requests: dict[str, int] = {}
        self._lock = threading.Lock()
        self.add(items)

    @property
    def url(self) -> str:
        return f"{super().url}/"

    def _tick(self) -> str:
        self.clock += 1
        return _iso(EPOCH + timedelta(seconds=self.clock))

    def add(self, count: int) -> list[int]:
        with self._lock:
            first = len(self.items) + 1
            for i in range(first, first + count):
                self.items[i] = {
                    "id": i,
                    "name": f"item {i}",
                    "price": round(1 + (i * 37 % 1000) / 10, 2),
                    "updated_at": self._tick(),
                }
            return list(range(first, first + count))

    def touch(self, ids: list[int]) -> None:
        """Changes the items: a new name and price, a later `updated_at`."""
        with self._lock:
            for i in ids:
                item = self.items[i]
                item.update(
                    name=f"{item['name']} (v2)", price=item["price"] + 1, updated_at=self._tick()
                )

    def rows(self) -> list[tuple[int, str, float, str]]:
        return sorted(
            (i["id"], i["name"], i["price"], i["updated_at"]) for i in self.items.values()
        )

    def answer(self, path: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        with self._lock:
            self.requests[path] = self.requests.get(path, 0) + 1
            page = int(query.get("page", ["1"])[0])
            size = int(query.get("page_size", ["100"])[0])
            if path == "/items":
                since = query.get("updated_since", [""])[0]
                found = sorted(
                    (i for i in self.items.values() if i["updated_at"] >= since),
                    key=lambda i: (i["updated_at"], i["id"]),
                )
            elif path == "/customers":
                found = list(self.customers)
            else:
                return 404, {"error": f"no such path {path}"}
            pages = max(1, -(-len(found) // size))
            data = [dict(i) for i in found[(page - 1) * size : page * size]]
            return 200, {"data": data, "page": page, "total_pages": pages}
