"""Parts of one pipeline migrate the shared dataset's schema one at a time.

Every part loads into the same dataset and may create a table or add a column at the moment
another part does. dlt reads the destination's tables and issues `CREATE TABLE` / `ALTER
TABLE ADD COLUMN` for whatever it finds missing, with no lock: two parts creating one table at
once fail (`relation already exists`, or a duplicate `CREATE SCHEMA`), and a DDL generated
from a stale read may miss the other part's columns. So before its load step a part takes a
lease in the state store (`<pipeline>/schema-lock.json`, next to the whole pipeline's own
state) and applies the schema of each pending package itself; dlt's load then finds that
schema version already stored in `_dlt_version` and migrates nothing. Loading itself runs in
parallel; only the migration is serialised, and it takes well under a second.
"""

from __future__ import annotations

import logging
from typing import Any

import dlt

from flows import dlt_internals
from flows.config.settings import default_state_url
from flows.durable.runner import RunCallbacks
from flows.state import open_store
from flows.state.config import state_config, url_origin
from flows.state.lease import Lease

log = logging.getLogger(__name__)

LOCK_FILE = "schema-lock.json"
LOCK_WAIT = 900.0  # seconds a part waits for the others' migrations


class SharedSchemaLock(RunCallbacks):
    """Before each load attempt: under the pipeline's schema lock, migrate the destination to
    every pending package's schema."""

    def __init__(self, pipeline: str, state_url: str | None = None) -> None:
        self.pipeline = pipeline
        self.state_url = state_url

    def on_before_step(self, pipeline: dlt.Pipeline, step: str) -> None:
        if step != "load" or not pipeline.list_normalized_load_packages():
            return
        store = open_store(self.state_url or default_state_url(), origin=url_origin(None))
        lease = Lease(
            store,
            store.path(self.pipeline, LOCK_FILE),
            ttl=state_config().lease_ttl,
            run_id=None,
            wait=LOCK_WAIT,
            poll=0.25,
            say=log.info,
        )
        with lease:
            migrate_pending(pipeline)


def migrate_pending(pipeline: dlt.Pipeline) -> list[str]:
    """Applies the schema of each normalized package to the destination, as dlt's loader
    would (dataset, tables, columns, the stored version); returns the load ids."""
    load_schema = dlt_internals.normalized_schema_loader(pipeline)
    done: list[str] = []
    for load_id in pipeline.list_normalized_load_packages():
        schema = load_schema(load_id)
        client: Any = dlt_internals.destination_client(pipeline, schema)
        with client:
            client.initialize_storage()
            client.update_stored_schema()
        done.append(load_id)
    log.info("%s: schema of %d packages applied", pipeline.pipeline_name, len(done))
    return done
