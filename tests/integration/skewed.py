"""Runs the `flows` CLI with its wall clock skewed: `time.time()` is off by SKEW seconds in
this process only (the monotonic clock is untouched, as on a machine whose clock is wrong).

    python skewed.py SKEW flows-args...

Like killer.py it wraps the shipped code from outside: the code under test is unchanged.
"""

from __future__ import annotations

import sys
import time

SKEW = float(sys.argv[1])
_real_time = time.time
time.time = lambda: _real_time() + SKEW  # type: ignore[assignment]

from flows.cli import main  # noqa: E402

sys.exit(main(sys.argv[2:]))
