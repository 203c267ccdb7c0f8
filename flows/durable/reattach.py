"""Re-attaches a user's `dlt.pipeline(...)` object to a working dir restored under it.

dlt reads `state.json` and the schemas only when a pipeline is created: a pipeline made in
an empty working dir (a fresh pod) knows nothing of the snapshot restored afterwards. The
object is re-initialised in place with the arguments it was made with, exactly as dlt's own
`Pipeline.drop()` does, so the caller's reference stays valid and sees the restored state.
"""

from __future__ import annotations

import dlt

from flows import dlt_internals


def reattach(pipeline: dlt.Pipeline) -> None:
    was_active = pipeline.is_active
    if was_active:
        pipeline.deactivate()
    dlt_internals.reinitialize(pipeline)
    if was_active:
        pipeline.activate()
