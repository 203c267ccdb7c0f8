"""A run's progress and report as a dlt collector sees them, written through a sink (Prefect
artifacts, or the attempt's pipe to its parent)."""
