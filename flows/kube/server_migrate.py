"""`flows server-migrate`: what an HA Prefect server needs done once per install or upgrade,
before its API replicas start (the chart runs it in a pre-install/pre-upgrade Job).

Several `prefect server start --no-services` replicas starting together on a fresh database
race each other: each migrates and each registers the block types, and the losers die with a
unique violation on `block_type.slug`. So the replicas run with
PREFECT_SERVER_DATABASE_MIGRATE_ON_START=false and PREFECT_SERVER_REGISTER_BLOCKS_ON_START=false,
and this command does both, once.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys


def migrate() -> list[str]:
    done = subprocess.run(
        [sys.executable, "-m", "prefect", "server", "database", "upgrade", "-y"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"database upgrade failed: {(done.stderr or done.stdout)[-2000:]}")
    asyncio.run(_register_blocks())
    return ["database migrated", "block types registered"]


async def _register_blocks() -> None:
    from prefect.server.database import provide_database_interface
    from prefect.server.models.block_registration import run_block_auto_registration

    db = provide_database_interface()
    async with await db.session() as session:
        await run_block_auto_registration(session=session)
        await session.commit()
