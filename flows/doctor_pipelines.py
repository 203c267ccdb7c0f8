"""`flows doctor`'s checks of the declared pipelines: each source imports, each destination
answers, and the state store the flow runs use (the pool's, in a worker pod)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from flows.errors import ConfigError, one_line
from flows.pipelines import PipelineSpec, discover


def check_pipelines() -> Any:
    """One check over every declared pipeline; the failure names each broken one."""
    from flows.doctor import Check

    name = "pipelines"
    try:
        catalog = discover()
    except ConfigError as err:
        return Check(name, False, one_line(err), "fix the declaration it names")
    problems = []
    for spec in sorted(catalog.pipelines.values(), key=lambda s: s.name):
        problem = pipeline_problem(spec)
        if problem:
            problems.append(f"{spec.name}: {problem}")
    if problems:
        return Check(
            name,
            False,
            "; ".join(problems),
            "fix the source's import or the destination's config and credentials "
            "(env, .dlt/config.toml, .dlt/secrets.toml, the flow runs' Secrets)",
        )
    return Check(
        name,
        True,
        f"{len(catalog.pipelines)} declared, each imports and reaches its destination",
    )


def pipeline_problem(spec: PipelineSpec) -> str | None:
    """Why `spec` cannot run here, or None."""
    from flows.persistence import duckdb_file, refuse_scratch_duckdb

    try:
        spec.source_function()
        refuse_scratch_duckdb(spec)
        path = duckdb_file(spec)
        if path is not None:
            return _writable(path.parent)
        with tempfile.TemporaryDirectory(prefix="flows-doctor-") as workdir:
            pipeline = spec.build_pipeline(Path(workdir))
            with pipeline.destination_client() as client:
                client.is_storage_initialized()
    except Exception as err:
        return one_line(err)
    return None


def _writable(folder: Path) -> str | None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".doctor-"):
            pass
    except OSError as err:
        return f"DuckDB folder {folder} is not writable: {err}"
    return None


def flow_run_state_url(pool: Any) -> str | None:
    """The state store the pool's flow runs use: its template's `state_url` default."""
    template = getattr(pool, "base_job_template", None) or {}
    spec = template.get("variables", {}).get("properties", {}).get("state_url", {})
    default = spec.get("default")
    return str(default) if default else None
