"""Customers from the shop's REST API, replaced on every run (the list is small)."""

from __future__ import annotations

from typing import Any

import dlt
from dlt.sources.rest_api import rest_api_source


@dlt.source(name="shop_customers", section="shop_customers")
def customers(base_url: str = dlt.config.value) -> Any:
    """`base_url` from SOURCES__SHOP_CUSTOMERS__BASE_URL."""
    return rest_api_source(
        {
            "client": {
                "base_url": base_url,
                "paginator": {
                    "type": "page_number",
                    "base_page": 1,
                    "total_path": "total_pages",
                },
            },
            "resources": [
                {
                    "name": "customers",
                    "primary_key": "id",
                    "write_disposition": "merge",
                    "endpoint": {"path": "customers", "data_selector": "data"},
                }
            ],
        }
    ).resources["customers"]
