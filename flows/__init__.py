"""Resumable dlt pipelines under Prefect 3 on Kubernetes.

The package's face, what users import:

    from flows import runner, RunCallbacks, run_pipeline, dlt_task, PrefectCollector

Each name is loaded when first used: `import flows` stays cheap, and a process that needs
no Prefect (or no dlt) does not import it. Everything else lives in the layer packages
(docs: Architecture) and may move between releases.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import version
from typing import Any

# name -> module that defines it
FACE = {
    "runner": "flows.durable.runner",
    "RunCallbacks": "flows.durable.runner",
    "RunReport": "flows.durable.runner",
    "run_pipeline": "flows.durable.run",
    "dlt_task": "flows.prefect.tasks",
    "PrefectCollector": "flows.prefect.collector",
}
__all__ = ["__version__", *FACE]


def __getattr__(name: str) -> Any:
    if name == "__version__":  # read from the installed distribution when asked, not at import
        return version("flows")
    if name in FACE:
        return getattr(import_module(FACE[name]), name)
    raise AttributeError(f"module 'flows' has no attribute {name!r}")
