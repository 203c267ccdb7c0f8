"""CSV, JSONL and Parquet files from a bucket or folder, each new or changed file loaded once."""

from __future__ import annotations

from collections.abc import Sequence

import dlt
from dlt.sources import DltResource
from dlt.sources.filesystem import filesystem, read_csv, read_jsonl, read_parquet

READERS = {"csv": read_csv, "jsonl": read_jsonl, "parquet": read_parquet}


@dlt.source(name="files")
def files(
    bucket_url: str = dlt.config.value,
    table_prefix: str = "files",
    formats: Sequence[str] = ("csv", "jsonl", "parquet"),
) -> list[DltResource]:
    """Bucket from SOURCES__FILES__BUCKET_URL (s3://..., file://...). One table per format.

    The file listing is incremental on `modification_date`, so a second run reads only files
    added or rewritten since the first.
    """
    resources = []
    for fmt in formats:
        listing = filesystem(bucket_url=bucket_url, file_glob=f"**/*.{fmt}")
        listing.apply_hints(incremental=dlt.sources.incremental("modification_date"))
        resource = (listing | READERS[fmt]()).with_name(f"{table_prefix}_{fmt}")
        resource.apply_hints(write_disposition="append")
        resources.append(resource)
    return resources
