"""Resumable dlt pipelines under Prefect 3 on Kubernetes."""

__version__ = "0.1.0"
