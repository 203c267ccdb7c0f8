"""The isolated attempt: one pipeline run in a child process, started, watched and reported
to the parent; never imports Prefect."""
