"""Re-attaches a user's `dlt.pipeline(...)` object to a working dir restored under it.

dlt reads `state.json` and the schemas only when a pipeline is created: a pipeline made in
an empty working dir (a fresh pod) knows nothing of the snapshot restored afterwards. The
object is re-initialised in place with the arguments it was made with, exactly as dlt's own
`Pipeline.drop()` does, so the caller's reference stays valid and sees the restored state.
"""

from __future__ import annotations

import dlt


def reattach(pipeline: dlt.Pipeline) -> None:
    was_active = pipeline.is_active
    if was_active:
        pipeline.deactivate()
    pipeline.__init__(  # type: ignore[misc]
        pipeline.pipeline_name,
        pipeline.pipelines_dir,
        pipeline.pipeline_salt,
        pipeline._destination,
        pipeline._staging,
        pipeline.dataset_name,
        pipeline._schema_storage.config.import_schema_path,
        pipeline._schema_storage.config.export_schema_path,
        pipeline.dev_mode,
        pipeline.collector,
        False,
        pipeline.config,
        pipeline.refresh,
    )
    if was_active:
        pipeline.activate()
