"""A refused database login told apart from a lost connection, by the server's SQLSTATE.

psycopg2 (dlt's PostgreSQL driver) raises a failed connect as `OperationalError` without a
`pgcode`: libpq keeps the server's SQLSTATE out of a connection failure, so a wrong password
and a database that is restarting look alike. When that happens, one more login with the
same credentials through asyncpg (already installed with Prefect's server), which reads the
server's answer itself, names the SQLSTATE; class 28 ("invalid authorization specification":
a wrong password, an unknown user) becomes `LoginRefused`, terminal (flows/errors.py), so no
retry repeats it. Any other answer leaves the original error as it was.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from flows import dlt_internals
from flows.errors import LOGIN_REFUSED_SQLSTATE_CLASS, LoginRefused, sqlstate

# seconds the probe may take (a server that does not answer is not a refused login)
PROBE_TIMEOUT = 10.0

_lock = threading.Lock()
_installed = False


def probe_sqlstate(dsn: str, timeout: float = PROBE_TIMEOUT) -> str | None:
    """The SQLSTATE the server answers a login to `dsn` with; None when it accepts it or
    cannot be reached. Runs on its own thread: the caller may be inside an event loop."""

    async def login() -> str | None:
        import asyncpg

        try:
            conn = await asyncpg.connect(dsn, timeout=timeout)
        except asyncpg.PostgresError as err:
            return sqlstate(err)
        except (TimeoutError, OSError):
            return None
        await conn.close()
        return None

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, login()).result()


def _explained(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def open_connection(self: Any) -> Any:
        import psycopg2

        try:
            return method(self)
        except psycopg2.OperationalError as err:
            if err.pgcode is not None:
                raise
            credentials = self.credentials
            code = probe_sqlstate(credentials.to_native_representation())
            if code is None or not code.startswith(LOGIN_REFUSED_SQLSTATE_CLASS):
                raise
            raise LoginRefused(
                f"PostgreSQL at {credentials.host}:{credentials.port} refused the login of "
                f"user {credentials.username!r} to database {credentials.database!r} "
                f"(SQLSTATE {code}): check the destination's credentials "
                "(DESTINATION__POSTGRES__CREDENTIALS or .dlt/secrets.toml)",
                code,
            ) from err

    return open_connection


def install() -> None:
    """Explains refused logins of dlt's PostgreSQL client, once per process (idempotent)."""
    global _installed
    with _lock:
        if not _installed:
            dlt_internals.wrap_postgres_connect(_explained)
            _installed = True
