"""The Kubernetes work pool's base job template, built from code (flows/work_pool/template.py).

`flows setup` applies it; the Helm chart embeds the same JSON (charts/prefect-dlt/files/,
written by `python -m flows.work_pool > FILE` and checked by a test).
"""

from __future__ import annotations

import json
from typing import Any


def base_job_template() -> dict[str, Any]:
    """The template as a dict."""
    from flows.work_pool.template import build

    return build()


def template_json() -> str:
    """The template as the chart stores it: indented, keys in model order, newline at the end."""
    return json.dumps(base_job_template(), indent=2) + "\n"
