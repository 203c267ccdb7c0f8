"""Prefect integration: artifacts from a dlt collector, `@dlt_task`, flows and work-pool setup.

Depends on the runner and the pipelines, never the other way round.
"""
