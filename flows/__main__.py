"""`python -m flows` is the same as the `flows` console script."""

from flows.cli import entry

entry()
