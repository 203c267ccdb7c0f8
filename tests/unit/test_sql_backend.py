"""The platform's sql_database backend: connectorx where it reads the database, else pyarrow;
the pipeline's own option and dlt config win."""

from __future__ import annotations

import pytest
from dlt.sources.credentials import ConnectionStringCredentials

from flows.sources.sql import default_backend, sql_backend_options


def test_connectorx_for_postgresql_streamed_in_chunks() -> None:
    credentials = ConnectionStringCredentials("postgresql+psycopg://u:p@localhost:5432/db")
    assert sql_backend_options(credentials, chunk_size=1234) == {
        "backend": "connectorx",
        "backend_kwargs": {"return_type": "arrow_stream", "batch_size": 1234},
    }


def test_pyarrow_where_connectorx_does_not_read_the_database() -> None:
    assert default_backend("oracle+oracledb://u:p@host/db") == "pyarrow"
    assert default_backend("snowflake://u:p@account/db") == "pyarrow"


def test_override_from_argument_then_config(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "postgresql://u:p@localhost/db"
    monkeypatch.setenv("SOURCES__SQL_DATABASE__BACKEND", "pyarrow")
    assert sql_backend_options(url) == {"backend": "pyarrow"}
    assert sql_backend_options(url, backend="sqlalchemy") == {"backend": "sqlalchemy"}
    with pytest.raises(ValueError, match="unknown sql_database backend 'arrow'"):
        sql_backend_options(url, backend="arrow")
