"""Takes a pipeline's lease in the state store and holds it, renewing, until killed; its wall
clock may be skewed.

    python lease_holder.py STORE_URL PIPELINE TTL MARKER SKEW WAIT

SKEW seconds are added to `time.time()` in this process only (a clock ahead or behind; the
monotonic clock is untouched, as on a machine whose wall clock is wrong). Once the lease is
taken, MARKER gets the lease as JSON. Exits 3 when the lease is held by someone else (after
WAIT seconds) or when this holder fences itself.

Like pauser.py it wraps the shipped code from outside: the code under test is unchanged.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

URL, PIPELINE, TTL, MARKER = sys.argv[1], sys.argv[2], float(sys.argv[3]), Path(sys.argv[4])
SKEW, WAIT = float(sys.argv[5]), float(sys.argv[6])

_real_time = time.time
time.time = lambda: _real_time() + SKEW  # type: ignore[assignment]

from flows.state import LeaseHeldError, StateStoreError, open_store  # noqa: E402
from flows.state.lease import Lease  # noqa: E402
from flows.state.snapshot import PipelineLayout  # noqa: E402


def fenced(error: StateStoreError) -> None:
    sys.stderr.write(f"holder: fenced: {error}\n")
    sys.stderr.flush()
    os._exit(3)


store = open_store(URL)
lease = Lease(store, PipelineLayout(store, PIPELINE).lease_path, ttl=TTL, wait=WAIT, poll=0.1)
lease.on_fenced = fenced
try:
    info = lease.acquire()
except LeaseHeldError as err:
    sys.stderr.write(f"holder: {err}\n")
    sys.exit(3)
MARKER.write_bytes(info.to_json())
while True:
    time.sleep(1)
