"""Builder stage: fails when an installed distribution is not pinned, at the version
installed, in one of the lock files given (the venv's own pip and setuptools, and the
project itself, excepted): the image holds exactly the locked versions and nothing else.

    python check-lock.py requirements.lock [more.lock ...]
"""

import re
import sys
from importlib.metadata import distributions

ALLOWED = {"pip", "setuptools", "flows"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(paths: list[str]) -> dict[str, str]:
    pins: dict[str, str] = {}
    for path in paths:
        with open(path) as fh:
            for raw in fh:
                line = raw.split("#", 1)[0].split(";", 1)[0].strip()
                if "==" in line:
                    name, version = line.split("==", 1)
                    pins[canonical(name.split("[", 1)[0])] = version.strip()
    return pins


def main() -> int:
    pins = read_pins(sys.argv[1:])
    problems = []
    installed = list(distributions())
    for dist in installed:
        name = canonical(dist.metadata["Name"])
        if name in ALLOWED:
            continue
        if name not in pins:
            problems.append(f"{name}=={dist.version} is not in the lock")
        elif pins[name] != dist.version:
            problems.append(f"{name}=={dist.version}, the lock pins {pins[name]}")
    if problems:
        print("the lock does not match the image:\n  " + "\n  ".join(sorted(problems)))
        return 1
    print(f"check-lock: {len(installed)} distributions, each at its locked version")
    return 0


if __name__ == "__main__":
    sys.exit(main())
