"""CSV, JSONL and Parquet files from a bucket or folder, each new or changed file loaded once.

CSV and Parquet reach dlt as arrow tables, so dlt writes them without its per-row normalizer
(coercion and a Python dict per row); JSONL has no schema to read, so it stays rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import dlt
import pyarrow as pa
import pyarrow.csv
import pyarrow.parquet
from dlt.sources import DltResource
from dlt.sources.filesystem import FileItemDict, filesystem, read_jsonl

from flows.config.settings import rotate_extract_like_load_files


@dlt.transformer(standalone=True)
def read_csv_arrow(items: Iterator[FileItemDict]) -> Iterator[pa.Table]:
    """CSV with typed columns via pyarrow (dlt's own readers need pandas or an older duckdb).

    An empty field is NULL, as DuckDB's `read_csv` reads it.
    """
    options = pyarrow.csv.ConvertOptions(strings_can_be_null=True)
    for item in items:
        with item.open() as fh:
            yield pyarrow.csv.read_csv(fh, convert_options=options)


@dlt.transformer(standalone=True)
def read_parquet_arrow(
    items: Iterator[FileItemDict], batch_size: int = 65_536
) -> Iterator[pa.RecordBatch]:
    """Parquet as arrow batches with the file's own types (dlt's reader yields row dicts)."""
    for item in items:
        with item.open() as fh:
            yield from pyarrow.parquet.ParquetFile(fh).iter_batches(batch_size=batch_size)


READERS: dict[str, Any] = {
    "csv": read_csv_arrow,
    "jsonl": read_jsonl,
    "parquet": read_parquet_arrow,
}


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
    if all(READERS[fmt] is not read_jsonl for fmt in formats):  # arrow tables only
        rotate_extract_like_load_files()
    resources = []
    for fmt in formats:
        listing = filesystem(bucket_url=bucket_url, file_glob=f"**/*.{fmt}")
        listing.apply_hints(incremental=dlt.sources.incremental("modification_date"))
        resource = (listing | READERS[fmt]()).with_name(f"{table_prefix}_{fmt}")
        resource.apply_hints(write_disposition="append")
        resources.append(resource)
    return resources
