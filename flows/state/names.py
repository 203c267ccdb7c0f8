"""Pipeline names, checked once where they enter: by dlt's own rule, before anything is touched.

A pipeline name becomes a folder of the pipelines dir and a prefix of the state store, so an
empty name, `..` or a name with a `/` would reach the store's root or beside it (`flows state
drop ""` would delete every pipeline's state). dlt refuses such names only when
`dlt.pipeline()` runs, after the platform has taken a lease under that name; the same rule
(`FileStorage.validate_file_name_component`, what `dlt.pipeline` raises `InvalidPipelineName`
by) is applied here first. The platform's fan-out parts (`daily_events--20240101-20240107`)
pass it.
"""

from __future__ import annotations

from flows.state.errors import InvalidNameError

RULE = (
    "a pipeline name is one folder name, as dlt requires: not empty, no `/`, `\\`, `.`, `%`, "
    "`{`, `}` or a reserved name"
)


def validate_pipeline_name(name: str, origin: str = "pipeline name") -> str:
    """`name` when dlt accepts it as a pipeline name; else InvalidNameError (exit 2) naming
    the value, where it came from (`origin`) and the rule. dlt is imported only here (the
    Prefect engine, which imports no dlt, never checks a name)."""
    from dlt.pipeline.exceptions import InvalidPipelineName

    from flows.dlt_internals import validate_file_name_component

    try:
        validate_file_name_component(name)
    except ValueError as err:
        detail = str(err).split("\n", 1)[0]
        raise InvalidNameError(
            f"{origin} {name!r} refused ({detail}): {RULE}; nothing was read, written or deleted"
        ) from InvalidPipelineName(name, detail)
    return name


def is_relative_path(path: str) -> bool:
    """True for `a/b/c`: relative, every component a plain name. Store paths and a manifest's
    file names are joined to a prefix or a local folder, so nothing else may pass."""
    return (
        bool(path)
        and not path.startswith("/")
        and all(part not in ("", ".", "..") for part in path.split("/"))
    )
