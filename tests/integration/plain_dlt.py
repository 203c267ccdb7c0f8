"""dlt alone with dlt's defaults (no platform settings): the synthetic rows into DuckDB.

python plain_dlt.py ROWS DUCKDB_FILE PIPELINES_DIR
"""

import sys

import dlt

from flows.sources.synthetic import synthetic

rows, database, pipelines_dir = int(sys.argv[1]), sys.argv[2], sys.argv[3]
pipeline = dlt.pipeline(
    "synthetic",
    pipelines_dir=pipelines_dir,
    dataset_name="synthetic",
    destination=dlt.destinations.duckdb(database),
)
pipeline.run(synthetic(rows=rows))
