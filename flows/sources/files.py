"""CSV, JSONL and Parquet files from a bucket or folder, each new or changed file loaded once."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import dlt
import pyarrow as pa
import pyarrow.csv
from dlt.sources import DltResource
from dlt.sources.filesystem import FileItemDict, filesystem, read_jsonl, read_parquet


@dlt.transformer(standalone=True)
def read_csv_arrow(items: Iterator[FileItemDict]) -> Iterator[pa.Table]:
    """CSV with typed columns via pyarrow (dlt's own readers need pandas or an older duckdb)."""
    for item in items:
        with item.open() as fh:
            yield pyarrow.csv.read_csv(fh)


READERS: dict[str, Any] = {"csv": read_csv_arrow, "jsonl": read_jsonl, "parquet": read_parquet}


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
