"""dlt sources of the platform. Each module holds one source and knows nothing of the rest."""
