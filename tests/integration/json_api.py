"""A JSON HTTP server on loopback for the tests' APIs (shop_api.py, paged_api.py): a subclass
answers `(path, query) -> (status, body)`; requests are served on threads of their own.
With `token` set, a request without `Authorization: Bearer <token>` is answered 401 and
counted in `refused`."""

from __future__ import annotations

import http.server
import json
import threading
from typing import Any, Self
from urllib.parse import parse_qs, urlparse


class JsonApi:
    def __init__(self) -> None:
        api = self
        self.token: str | None = None
        self.refused = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlparse(self.path)
                if api.token and self.headers.get("Authorization") != f"Bearer {api.token}":
                    api.refused += 1
                    status, body = 401, {"error": "invalid token"}
                else:
                    status, body = api.answer(url.path, parse_qs(url.query))
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def answer(self, path: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        raise NotImplementedError

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
