"""`flows init` into an empty folder, then `flows run` of its pipeline and its flow on the
embedded default: the commands of the docs page "Your own pipelines" (docs/own-pipelines.md),
taken from the page itself (tests/readme.py); the image test runs the rest of them."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import duckdb

from tests import readme
from tests.integration.helpers import embedded_env


def test_every_readme_command_is_run_by_a_test() -> None:
    """Each command of the page "Your own pipelines" is claimed by the test that runs it."""
    assert readme.commands(), "docs 'Your own pipelines' has no ```bash commands"
    assert readme.unclaimed() == [], "docs commands no test runs (add them to tests.readme)"


def test_readme_walkthrough_from_init_to_the_flow(tmp_path: Path) -> None:
    """The page's first commands as written (init, cd, pipelines, run, the flow), then an
    incremental run and a refused second init."""
    env = embedded_env(tmp_path)
    env = {k: v for k, v in env.items() if not k.startswith(("FLOWS_", "STATE__"))}
    init = readme.command(("flows", "init"))
    made = _shell(tmp_path, init, env)
    assert "wrote " in made.stdout, made.stdout
    cd = readme.command(("cd",))
    project = tmp_path / cd.argv[1]
    assert cd.argv == ["cd", init.argv[2]] and project.is_dir(), (cd, init)
    package = project.name.replace("-", "_")
    for path in (
        ".dlt/config.toml",
        ".dlt/secrets.toml",
        ".gitignore",
        ".dockerignore",
        "prefect.yaml",
        "Dockerfile",
        "README.md",
        f"{package}/sources.py",
        f"{package}/flows.py",
    ):
        assert (project / path).is_file(), path
    assert ".dlt/secrets.toml" in (project / ".gitignore").read_text().splitlines()
    assert ".dlt/secrets.toml" in (project / ".dockerignore").read_text().splitlines()
    assert "FROM ${PLATFORM_IMAGE}" in (project / "Dockerfile").read_text()

    listed = _shell(project, readme.command(("flows", "pipelines")), env)
    line = next(x for x in listed.stdout.splitlines() if x.startswith(f"{package} "))
    assert str(project / ".dlt" / "config.toml") in line, line

    run = readme.command(("flows", "run"))
    assert run.argv == ["flows", "run", package], run
    loaded = _shell(project, run, env)
    assert "rows loaded: items 100" in loaded.stdout, loaded.stdout
    warehouse = project / ".flows" / "warehouse" / f"flows_{package}.duckdb"

    flow = _shell(project, readme.command(("python", "-c")), env)
    out = flow.stdout + flow.stderr
    assert re.search(r"Flow run '[\w-]+' - Finished in state Completed\(\)", out), out[-3000:]

    upper = package.upper()
    more = _shell(project, readme.Command(run.argv, {f"SOURCES__{upper}__ROWS": "150"}), env)
    assert "rows loaded: items 50" in more.stdout, more.stdout
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert con.sql(f"SELECT COUNT(*), COUNT(DISTINCT id) FROM {package}.items").fetchall() == [
            (150, 150)
        ]

    again = subprocess.run(
        [sys.executable, "-m", "flows", *init.argv[1:]],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 2 and "is not empty" in again.stderr, again.stderr


def _shell(
    cwd: Path, command: readme.Command, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """Runs a docs command: `flows` and `python` are this venv's (the page's PATH)."""
    argv = command.argv
    if argv[0] == "flows":
        argv = [sys.executable, "-m", "flows", *argv[1:]]
    elif argv[0] == "python":
        argv = [sys.executable, *argv[1:]]
    done = subprocess.run(
        argv,
        cwd=cwd,
        env={**env, **command.env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"{command} exited {done.returncode}:\n{done.stderr[-3000:]}"
    return done
