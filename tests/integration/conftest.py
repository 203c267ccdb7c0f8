"""Fixtures every integration module with a `stack` fixture of its own shares."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prefect.client.orchestration import SyncPrefectClient, get_client


@pytest.fixture
def client(stack: object) -> Iterator[SyncPrefectClient]:
    """A client of the module's stack (its `stack` fixture points Prefect's settings at it)."""
    with get_client(sync_client=True) as c:
        yield c
