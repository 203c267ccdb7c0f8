"""Which errors no retry can fix, decided by type (flows/errors.py): HTTP client errors by
their response's status, refused logins by SQLSTATE class, dlt's config families, the user's
own classes; wrapped or not."""

from __future__ import annotations

import httpx
import pytest
import requests
import sqlalchemy.exc

from flows.errors import (
    EXIT_CONFIG,
    LoginRefused,
    exit_code_for,
    is_terminal,
    is_transient,
    one_line,
)


def requests_error(status: int) -> requests.HTTPError:
    response = requests.Response()
    response.status_code, response.url = status, "http://api.example.com/orders"
    response.reason = "Reason"
    try:
        response.raise_for_status()
    except requests.HTTPError as err:
        return err
    raise AssertionError(status)


def httpx_error(status: int) -> httpx.HTTPStatusError:
    request = httpx.Request("GET", "http://api.example.com/orders")
    response = httpx.Response(status, request=request)
    try:
        response.raise_for_status()
    except httpx.HTTPStatusError as err:
        return err
    raise AssertionError(status)


def wrapped(error: BaseException) -> BaseException:
    """As dlt's extract raises it: another error raised from (or while handling) this one."""
    try:
        try:
            raise error
        except BaseException:
            raise RuntimeError("extract failed")  # noqa: B904 (implicit context, as dlt does)
    except RuntimeError as outer:
        return outer


@pytest.mark.parametrize("make", [requests_error, httpx_error])
@pytest.mark.parametrize(
    ("status", "terminal"),
    [
        *[(400, True), (401, True), (403, True), (404, True), (422, True)],
        *[(408, False), (425, False), (429, False), (500, False), (503, False)],
    ],
)
def test_http_client_errors_by_status(make: object, status: int, terminal: bool) -> None:
    error = make(status)  # type: ignore[operator]
    assert is_terminal(error) is terminal
    assert is_terminal(wrapped(error)) is terminal  # found through __context__


def test_http_error_line_names_status_and_url() -> None:
    line = one_line(wrapped(requests_error(401)))
    assert "401" in line and "http://api.example.com/orders" in line


class FakeDriverError(Exception):
    """Not a driver's class: a `pgcode` on an unknown type decides nothing."""

    pgcode = "28P01"


def test_login_refused_by_sqlstate_class() -> None:
    import psycopg2.errors

    refused = psycopg2.errors.lookup("28P01")("password authentication failed")
    assert is_terminal(refused)
    assert is_terminal(sqlalchemy.exc.OperationalError("connect", {}, refused))
    lost = psycopg2.errors.lookup("57P01")("terminating connection")  # admin shutdown
    assert not is_terminal(lost)
    assert is_terminal(LoginRefused("PostgreSQL refused", "28000"))
    assert not is_terminal(FakeDriverError())


def test_unknown_destination_is_config() -> None:
    import dlt

    with pytest.raises(Exception) as caught:
        dlt.pipeline("typo", destination="duckbd")
    assert is_terminal(caught.value) and exit_code_for(caught.value) == EXIT_CONFIG
    line = one_line(caught.value)
    assert "'duckbd'" in line and "duckdb, " in line and "\n" not in line


def test_missing_field_line_names_env_and_toml_keys() -> None:
    import dlt

    @dlt.source(name="orders_api", section="orders_api")
    def orders(api_key: str = dlt.secrets.value) -> object:
        return dlt.resource([1], name="a")

    with pytest.raises(Exception) as caught:
        orders()
    line = one_line(caught.value)
    assert exit_code_for(caught.value) == EXIT_CONFIG
    assert "SOURCES__ORDERS_API__API_KEY" in line and "sources.orders_api.api_key" in line, line


class QuotaExceeded(Exception):
    pass


class DailyQuota(QuotaExceeded):
    pass


def test_user_classes_by_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not is_terminal(DailyQuota()) and not is_transient(DailyQuota())
    monkeypatch.setenv("FLOWS_TERMINAL_ERRORS", f"other.Error, {__name__}.QuotaExceeded")
    assert is_terminal(DailyQuota())  # a subclass of a named class
    assert is_terminal(wrapped(DailyQuota()))


def test_user_classes_by_dlt_base() -> None:
    from dlt.common.exceptions import TerminalException

    class Banned(TerminalException, Exception):
        pass

    assert is_terminal(Banned())
