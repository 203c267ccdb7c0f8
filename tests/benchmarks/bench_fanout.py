"""Wall time of a 12-part backfill at parallelism 4 vs 1, on the local stack.

    python -m tests.benchmarks.bench_fanout [--parts 12] [--pages 20] [--delay 1.5]

A latency-bound HTTP source on loopback (each page answers after `delay` seconds, `pages`
pages a day) into PostgreSQL; each part is one day, its own flow run of fanout-part run by a
process worker. Both backfills run on the same stack, on different days (nothing cached),
and the ratio of the parents' wall times is printed; the goal is at most 0.40.
"""

from __future__ import annotations

import argparse
import tempfile
from datetime import date, timedelta
from pathlib import Path

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType

from tests.integration.fanout_stack import run_parent, start_stack
from tests.integration.helpers import prefect_settings
from tests.integration.paged_api import PagedApi

GOAL = 0.40


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", type=int, default=12)
    parser.add_argument("--pages", type=int, default=20, help="pages per part (day)")
    parser.add_argument("--delay", type=float, default=1.5, help="seconds per page")
    args = parser.parse_args()
    api = PagedApi(rows_per_day=20 * args.pages, page_size=20, delay=args.delay).start()
    with tempfile.TemporaryDirectory(prefix="bench-fanout-") as root:
        stack = start_stack(Path(root), api)
        try:
            with prefect_settings(stack), get_client(sync_client=True) as client:
                walls: dict[int, float] = {}
                for parallelism, first in ((4, date(2024, 1, 1)), (1, date(2024, 6, 1))):
                    last = first + timedelta(days=args.parts - 1)
                    run = run_parent(
                        client,
                        "backfill",
                        {
                            "pipeline": "paged",
                            "start_date": str(first),
                            "end_date": str(last),
                            "chunk_days": 1,
                            "parallelism": parallelism,
                        },
                        timeout=3600,
                    )
                    assert run.state is not None and run.state.type == StateType.COMPLETED, (
                        run.state
                    )
                    assert run.start_time and run.end_time
                    walls[parallelism] = (run.end_time - run.start_time).total_seconds()
                    print(
                        f"parallelism {parallelism}: {args.parts} parts in "
                        f"{walls[parallelism]:.1f} s",
                        flush=True,
                    )
        finally:
            stack.down()
            api.stop()
    ratio = walls[4] / walls[1]
    latency = args.pages * args.delay
    print(
        f"{args.parts} parts x {args.pages} pages x {args.delay} s ({latency:.0f} s of latency a "
        f"part): parallelism 4 {walls[4]:.1f} s / parallelism 1 {walls[1]:.1f} s = {ratio:.2f}x "
        f"(goal <= {GOAL:.2f}x: {'met' if ratio <= GOAL else 'NOT met'})"
    )
    return 0 if ratio <= GOAL else 1


if __name__ == "__main__":
    raise SystemExit(main())
