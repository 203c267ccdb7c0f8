"""The Kubernetes work pool's base job template: one file, read by `flows setup` and the chart."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

TEMPLATE_NAME = "base-job-template.json"


def base_job_template() -> dict[str, Any]:
    """The template as a dict (the same bytes the Helm chart embeds)."""
    text = resources.files(__package__).joinpath(TEMPLATE_NAME).read_text()
    return dict(json.loads(text))
