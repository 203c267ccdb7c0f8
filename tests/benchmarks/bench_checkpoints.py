"""No work done twice, measured (the `checkpoints` suite of `python -m tests.benchmarks`):

1. the cost of checkpointing: the same uninterrupted run of a 1M-row ordered source with
   `--checkpoint-every 60` and with `--checkpoint-every 0`, wall and cgroup peak (goal at
   most 1.10x), and with a short interval for reference;
2. the share of the source read again after a kill at 80% of a checkpointed extract (a slow
   ordered HTTP API: ordered_api.py), against one interval's pages (goal: at most that);
3. the load jobs reloaded after a kill at 60% of a load into PostgreSQL, against the jobs
   that had not completed when it died (goal: only those).
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from tests.benchmarks.harness import REPO, Comparison, Variant
from tests.integration.ordered_api import OrderedApi

ORDERED = "tests.integration.ordered_synthetic:ordered"
ORDERED_HTTP = "tests.integration.ordered_source:ordered"
KILLER = REPO / "tests" / "integration" / "killer.py"


def cost_variants(rows: int) -> tuple[list[Variant], list[Comparison]]:
    """The same run of `rows` ordered rows without checkpoints, every 60 s and every 5 s."""
    env = {
        "STATE__URL": "s3://bench/{run}",
        "SOURCES__ORDERED__ROWS": str(rows),
        "SOURCES__ORDERED__PAUSE": "0",
        "SOURCES__ORDERED__BATCH_SIZE": "5000",
    }
    args = {"pipeline": ORDERED, "name": "ordered"}

    def run(every: str) -> Variant:
        extra = {"extra": ["--checkpoint-every", every]}
        return Variant(f"flows run, checkpoint_every={every}", "flows_run", args | extra, env)

    off, every_60, every_5 = run("0"), run("60"), run("5")
    comparisons = [
        Comparison("checkpoint_every=60 / off, wall", every_60.name, off.name, "wall", 1.10),
        Comparison("checkpoint_every=60 / off, cgroup peak", every_60.name, off.name, "peak", 1.10),
        Comparison("checkpoint_every=5 / off, wall", every_5.name, off.name, "wall", None),
        Comparison("checkpoint_every=5 / off, cgroup peak", every_5.name, off.name, "peak", None),
    ]
    return [off, every_60, every_5], comparisons


def _flows(args: list[str], env: dict[str, str], killer: str | None = None) -> Any:
    cmd = [sys.executable, str(KILLER), killer] if killer else [sys.executable, "-m", "flows"]
    return subprocess.run(
        [*cmd, *args], env=env, capture_output=True, text=True, timeout=3600, cwd=REPO
    )


def reread_after_kill(base: Path, env: dict[str, str]) -> tuple[str, str]:
    """Pages asked for again by the rerun after a kill at 80% of the extract: a table row and
    a comparison row."""
    rows, page, delay, every = 2000, 20, 0.05, 2.0
    api = OrderedApi(rows, page, delay).start()
    work = base / f"reread-{uuid.uuid4().hex[:6]}"
    run_env = {
        **env,
        "SOURCES__ORDERED__URL": api.url,
        "DESTINATION__DUCKDB__CREDENTIALS": str(work / "warehouse.duckdb"),
        "FLOWS_HOME": str(work / "home"),
    }
    state = f"s3://bench/{work.name}"

    def args(pod: str) -> list[str]:
        return [
            "run", ORDERED_HTTP, "--name", "ordered", "--state-url", state,
            "--pipelines-dir", str(work / pod), "--checkpoint-every", str(every), "--json",
        ]  # fmt: skip

    try:
        total = 2 * (api.pages_per_resource + 1)
        first = api.run_killed_at(round(0.8 * total), args("pod1"), run_env)
        if first.returncode != -signal.SIGKILL:
            raise RuntimeError(f"the kill at 80% of extract missed: {first.stderr[-2000:]}")
        before = set(api.pages_served())
        del api.served[:]
        rerun = _flows(args("pod2"), run_env)
        if rerun.returncode != 0:
            raise RuntimeError(f"the rerun failed: {rerun.stderr[-3000:]}")
        again = sum(1 for key in api.pages_served() if key in before)
    finally:
        api.stop()
    interval = math.ceil(every / delay)
    verdict = "met" if again <= interval + 3 else "MISSED"
    row = (
        f"| kill at 80% of a checkpointed extract ({total} pages, {delay:g} s each, every "
        f"{every:g} s), rerun on a fresh pod | 1 | {again} pages read again "
        f"({again / total:.1%} of the source) | - |"
    )
    ratio = (
        f"| pages read again after a kill at 80% of extract | {again} of {total} "
        f"({again / total:.1%}) | <= one interval ({interval} pages + the page each resource "
        f"was reading + the page the kill cut) | {verdict} |"
    )
    return row, ratio


def jobs_after_load_kill(base: Path, env: dict[str, str], dsn: str) -> tuple[str, str]:
    """Load jobs reloaded after a kill at 60% of a load into PostgreSQL."""
    rows = 100_000
    work = base / f"jobs-{uuid.uuid4().hex[:6]}"
    run_env = {
        **env,
        "SOURCES__SYNTHETIC__ROWS": str(rows),
        "DATA_WRITER__FILE_MAX_ITEMS": "1000",
        "LOAD__WORKERS": "2",
        "PIPELINES__DESTINATION": "postgres",
        "DESTINATION__POSTGRES__CREDENTIALS": dsn,
        "FLOWS_HOME": str(work / "home"),
        "STATE__URL": f"s3://bench/{work.name}",
    }
    args = ["run", "synthetic", "--json", "--pipelines-dir"]
    first = _flows([*args, str(work / "pod1")], run_env, killer="load-60")
    line = next((x for x in first.stderr.splitlines() if x.startswith("killer: SIGKILL")), "")
    if first.returncode != -9 or not line:
        raise RuntimeError(f"the kill at 60% of load missed: {first.stderr[-2000:]}")
    done, _, total = line.rsplit("(", 1)[1].split()[:3]
    rerun = _flows([*args, str(work / "pod2")], run_env)
    if rerun.returncode != 0:
        raise RuntimeError(f"the rerun failed: {rerun.stderr[-3000:]}")
    resume = json.loads(rerun.stdout)["resume"]
    reloaded, skipped = resume["jobs_reloaded"], resume["jobs_skipped"]
    not_done = int(total) - int(done)
    verdict = "met" if reloaded <= not_done and not resume["reset"] else "MISSED"
    row = (
        f"| kill at 60% of a load into PostgreSQL ({total} jobs, {done} completed), rerun "
        f"on a fresh pod | 1 | {reloaded} jobs reloaded, {skipped} not loaded again | - |"
    )
    ratio = (
        f"| load jobs reloaded after a kill at 60% of load | {reloaded} of {total} | <= the "
        f"{not_done} not completed at the kill | {verdict} |"
    )
    return row, ratio
