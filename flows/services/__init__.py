"""Real local services (S3 via SeaweedFS, PostgreSQL) for the tests and the local dev stack."""

from flows.services.ports import free_port
from flows.services.postgres import Postgres
from flows.services.seaweedfs import SeaweedFS

__all__ = ["Postgres", "SeaweedFS", "free_port"]
