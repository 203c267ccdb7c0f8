"""Fan-out: planning a big load as parts, each part's state, the lock on a shared schema."""
