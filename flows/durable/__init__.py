"""The durable run engine: one lifecycle (lease, restore, resume, steps, snapshots, close)
around a dlt pipeline."""
