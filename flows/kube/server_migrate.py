"""`flows server-migrate`: what an HA Prefect server needs done once per install or upgrade,
before its API replicas start (the chart runs it in a pre-install/pre-upgrade Job).

Several `prefect server start --no-services` replicas starting together on a fresh database
race each other: each migrates and each registers the block types, and the losers die with a
unique violation on `block_type.slug`. So the replicas run with
PREFECT_SERVER_DATABASE_MIGRATE_ON_START=false and PREFECT_SERVER_REGISTER_BLOCKS_ON_START=false,
and this command does both, once.

A rollback must not run an older server against a newer schema: Prefect's migrations only go
forward when a server starts. `flows server-migrate --check` (the chart's pre-rollback hook,
the older release's image) and every `flows server-migrate` first compare the database's
Alembic revision with the migrations this Prefect knows; a revision it does not know is
newer, and the command refuses (exit 2) and says what to do, before anything is changed.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys

from flows.errors import ConfigError


class DatabaseAheadError(ConfigError):
    """The database was migrated by a newer Prefect than this one (a rollback across a
    migration): no retry helps; rolling forward or downgrading the database does."""


def known_revisions() -> tuple[set[str], str]:
    """Every migration this Prefect ships, and its newest (the head)."""
    from alembic.script import ScriptDirectory
    from prefect.server.database import provide_database_interface
    from prefect.server.database.alembic_commands import alembic_config

    config = alembic_config()
    script = ScriptDirectory.from_config(config)
    script.version_locations = [str(provide_database_interface().orm.versions_dir)]
    revisions = {r.revision for r in script.walk_revisions()}
    return revisions, script.get_current_head() or ""


async def _database_revision() -> str | None:
    from prefect.server.database import provide_database_interface
    from sqlalchemy import text
    from sqlalchemy.exc import ProgrammingError

    db = provide_database_interface()
    async with await db.session() as session:
        try:
            found = (await session.execute(text("SELECT version_num FROM alembic_version"))).all()
        except ProgrammingError:  # no table: an empty database
            return None
    return str(found[0][0]) if found else None


def check() -> list[str]:
    """Refuses a database that is ahead of this Prefect; says where it stands otherwise."""
    import prefect

    current = asyncio.run(_database_revision())
    known, head = known_revisions()
    if current is None:
        return ["database: not migrated yet"]
    if current not in known:
        raise DatabaseAheadError(
            f"the database is at migration {current}, which Prefect {prefect.__version__} "
            f"does not know (its newest is {head}): it was migrated by a newer release, and "
            "this server cannot run on it. Roll forward again, or downgrade the database "
            f"first with the newer release's image (prefect server database downgrade -r "
            f"{head} -y) and then roll back"
        )
    state = "up to date" if current == head else f"behind (this server migrates it to {head})"
    return [f"database at migration {current}: {state}"]


def migrate() -> list[str]:
    checked = check()
    done = subprocess.run(
        [sys.executable, "-m", "prefect", "server", "database", "upgrade", "-y"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"database upgrade failed: {(done.stderr or done.stdout)[-2000:]}")
    asyncio.run(_register_blocks())
    return [*checked, "database migrated", "block types registered"]


async def _register_blocks() -> None:
    from prefect.server.database import provide_database_interface
    from prefect.server.models.block_registration import run_block_auto_registration

    db = provide_database_interface()
    async with await db.session() as session:
        await run_block_auto_registration(session=session)
        await session.commit()
