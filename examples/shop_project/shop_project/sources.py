"""The shop's REST API, declared the way dlt's REST API source docs do it."""

from __future__ import annotations

from typing import Any

import dlt
from dlt.sources.rest_api import RESTAPIConfig, rest_api_resources


@dlt.source(name="shop_api", section="shop_api")
def shop_api(base_url: str = dlt.config.value, page_size: int = 100) -> Any:
    """Items changed since the last run (`updated_since` = the `updated_at` cursor), merged
    on `id`. `base_url` from SOURCES__SHOP_API__BASE_URL or [sources.shop_api]."""
    config: RESTAPIConfig = {
        "client": {
            "base_url": base_url,
            "paginator": {
                "type": "page_number",
                "base_page": 1,
                "page_param": "page",
                "total_path": "total_pages",
            },
        },
        "resource_defaults": {
            "primary_key": "id",
            "write_disposition": "merge",
            "endpoint": {"data_selector": "data", "params": {"page_size": page_size}},
        },
        "resources": [
            {
                "name": "items",
                "endpoint": {
                    "path": "items",
                    "params": {
                        "updated_since": {
                            "type": "incremental",
                            "cursor_path": "updated_at",
                            "initial_value": "1970-01-01T00:00:00Z",
                        },
                    },
                },
            },
        ],
    }
    yield from rest_api_resources(config)
