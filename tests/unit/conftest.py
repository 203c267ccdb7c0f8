"""What every unit test shares."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def flows_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The platform's home (the local state store, the DuckDB warehouse) is the test's own
    folder, and no state URL from the environment sends the state elsewhere."""
    monkeypatch.setenv("FLOWS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("STATE__URL", raising=False)
