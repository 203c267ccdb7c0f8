"""Every ```python and ```bash block of the user-facing docs (README.md, docs/*.md) runs as
written: the blocks of a page run in order in one bash script, in an empty folder, on the
embedded default (no Prefect server configured: Prefect's ephemeral one). A block marked
right before it with `<!-- run-by: TEST -->` is run by that test, which must read the page;
`<!-- not-run: why -->` is for what cannot run here (a cluster, a server that never
returns), and says why. Pages other engineers own are left to them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import readme

OWNED_ELSEWHERE = {"operations.md", "observability.md"}
PAGES = [
    readme.REPO / "README.md",
    *(p for p in sorted(readme.DOCS.glob("*.md")) if p.name not in OWNED_ELSEWHERE),
]
RUNNABLE = [p for p in PAGES if any(b.marker is None for b in readme.blocks(p))]


def test_every_block_is_run_or_says_why() -> None:
    for page in PAGES:
        for block in readme.blocks(page):
            if block.marker is None:
                assert page in RUNNABLE
                continue
            kind, value = block.marker
            if kind == "run-by":
                test = readme.REPO / value
                assert test.is_file(), f"{page.name}: run-by {value} does not exist"
                text = test.read_text()
                title = page.read_text().partition("\n")[0].removeprefix("# ")
                assert page.name in text or title in text, f"{value} does not read {page.name}"
            else:
                assert len(value.split()) >= 3, f"{page.name}: not-run needs a reason: {value!r}"


@pytest.mark.parametrize("page", RUNNABLE, ids=lambda p: p.name)
def test_page_blocks_run_as_written(page: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    script = ["set -euo pipefail"] + [
        readme.as_shell(b) for b in readme.blocks(page) if b.marker is None
    ]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "FLOWS_"))},
        # `flows`, `python` and `prefect` as after `source .venv/bin/activate`
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp_path / "home"),
        # dlt's own data dir (its default pipelines dir): /var/dlt as root, shared by all runs
        "DLT_DATA_DIR": str(tmp_path / "dlt"),
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "RUNTIME__DLTHUB_TELEMETRY": "false",
        # the built-in synthetic source, smaller than its 100,000-row default
        "SOURCES__SYNTHETIC__ROWS": "2000",
    }
    done = readme.run_script(script, work, env)
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-4000:])
    if page.name == "README.md":  # the runner's snippet loaded its rows and wrote a record
        assert "'items': 100" in done.stdout, done.stdout[-3000:]
        tune = subprocess.run(
            ["flows", "tune", "shop"], cwd=work, env=env, capture_output=True, text=True
        )
        assert tune.returncode == 0 and "1 run records" in tune.stdout, tune.stdout[-2000:]
