"""A run with a lost state store and a fresh disk takes dlt's state from the destination.

Real `flows run` processes, a local store and DuckDB. The first run of a pipeline whose
DuckDB file does not exist yet skips that sync (there is nothing to read); a run whose
file exists must still find the incremental cursor there.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.helpers import duck, run_cli


def test_lost_store_and_fresh_disk_resume_from_the_destination_state(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {"FLOWS_HOME": str(home), "SOURCES__SYNTHETIC__ROWS": "500"}

    def run(store: str, pod: str) -> dict[str, int]:
        result = run_cli(
            ["run", "synthetic", "--json", "--pipelines-dir", str(tmp_path / pod)],
            {**env, "STATE__URL": f"file://{tmp_path / store}"},
        )
        assert result.code == 0, result.stderr
        rows: dict[str, int] = json.loads(result.stdout)["extracted_rows"]
        return rows

    warehouse = home / "warehouse" / "flows_synthetic.duckdb"
    assert not warehouse.exists()
    assert run("store1", "pod1").get("events") == 500
    # the store and the pod's disk are gone; the DuckDB file (the destination) is not
    assert run("store2", "pod2").get("events", 0) == 0
    with duck(warehouse) as con:
        assert con.sql("SELECT COUNT(*) FROM synthetic.events").fetchall() == [(500,)]
