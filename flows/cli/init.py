"""`flows init DIR`: a minimal user project that runs at once on the embedded default.

The project is plain dlt (a source module, declarations in `.dlt/config.toml`) plus what
the platform reads: a `prefect.yaml` with the pool's job-variable conventions and a
`Dockerfile` FROM the platform image. Templates live in `flows/templates/project/`:
`PKGNAME` in a path or a file is the project's package name, `PKGUPPER` the same in upper
case (env vars), a `dot-` prefix is a leading dot and a `.tmpl` suffix is dropped (Python
templates are not checked or imported as part of the platform).
"""

from __future__ import annotations

import argparse
import re
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from flows.errors import ConfigError

TEMPLATE = "project"


class ProjectExistsError(ConfigError):
    """`flows init` never writes into a folder that already has files."""


def package_name(folder: Path, name: str | None = None) -> str:
    raw = name or folder.resolve().name
    package = re.sub(r"\W+", "_", raw.strip()).strip("_").lower()
    if not package or package[0].isdigit():
        package = f"project_{package}"
    return package


def init_project(folder: Path, name: str | None = None) -> list[Path]:
    """Writes the project; returns the files written (relative to `folder`)."""
    if folder.exists() and any(folder.iterdir()):
        raise ProjectExistsError(f"{folder} is not empty: flows init writes into a new folder")
    package = package_name(folder, name)
    written: list[Path] = []
    root = files("flows.templates").joinpath(TEMPLATE)
    for source, relative in _walk(root, Path()):
        target = folder / Path(str(relative).replace("PKGNAME", package).removesuffix(".tmpl"))
        target.parent.mkdir(parents=True, exist_ok=True)
        text = source.read_text().replace("PKGUPPER", package.upper())
        target.write_text(text.replace("PKGNAME", package))
        written.append(target.relative_to(folder))
    return sorted(written)


def _walk(node: Traversable, relative: Path) -> list[tuple[Traversable, Path]]:
    found: list[tuple[Traversable, Path]] = []
    for child in node.iterdir():
        name = child.name.replace("dot-", ".", 1) if child.name.startswith("dot-") else child.name
        if child.is_dir():
            if child.name != "__pycache__":
                found += _walk(child, relative / name)
        elif not name.endswith((".pyc", ".pyo")):
            found.append((child, relative / name))
    return found


def register(sub: Any) -> None:
    """Adds `init`."""
    init = sub.add_parser("init", help="write a new dlt project for the platform into DIR")
    init.add_argument("dir", type=Path)
    init.add_argument("--name", help="package and pipeline name (default: from DIR)")
    init.set_defaults(func=cmd_init)


def cmd_init(args: argparse.Namespace) -> int:
    from flows.cli.init import init_project, package_name

    written = init_project(args.dir, args.name)
    for path in written:
        print(f"  {path}")
    name = package_name(args.dir, args.name)
    print(f"wrote {len(written)} files to {args.dir}; next: cd {args.dir} && flows run {name}")
    return 0
