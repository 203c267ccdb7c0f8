"""Fixtures every integration module with a `stack` fixture of its own shares."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prefect.client.orchestration import SyncPrefectClient, get_client

from tests.integration.shop_api import ShopApi

# the bearer token a module's `api` serves with (set API_TOKEN in the module to change it)
API_TOKEN = "s3cret"


@pytest.fixture
def client(stack: object) -> Iterator[SyncPrefectClient]:
    """A client of the module's stack (its `stack` fixture points Prefect's settings at it)."""
    with get_client(sync_client=True) as c:
        yield c


@pytest.fixture
def api(request: pytest.FixtureRequest) -> Iterator[ShopApi]:
    """A local REST API of 250 items behind a bearer token (the module's API_TOKEN)."""
    server = ShopApi(items=250)
    server.token = getattr(request.module, "API_TOKEN", API_TOKEN)
    server.start()
    try:
        yield server
    finally:
        server.stop()
