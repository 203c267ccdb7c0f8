#!/usr/bin/env python3
"""Writes the values table of charts/prefect-dlt/README.md from values.yaml's comments.

Every value documented with a "# --" comment (the helm-docs convention PrefectHQ/prefect-helm
uses) becomes a row: key, default, description. The table sits between the
`<!-- values-table -->` markers of the README.

    scripts/chart-values-table.py           # rewrite the table
    scripts/chart-values-table.py --check   # exit 1 if the README's table is stale (tests)
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parents[1] / "charts" / "prefect-dlt"
START, END = "<!-- values-table -->", "<!-- /values-table -->"
PIPE = "\\|"  # a literal | inside a Markdown table cell
KEY = re.compile(r"^(\s*)([A-Za-z0-9_]+):(\s|$)")


def rows(values_text: str) -> list[tuple[str, Any, str]]:
    """(dotted key, default, description) of every "# --" documented value, in file order."""
    values = yaml.safe_load(values_text)
    out: list[tuple[str, Any, str]] = []
    stack: list[tuple[int, str]] = []
    doc: list[str] | None = None
    for line in values_text.splitlines():
        stripped = line.strip()
        if stripped.startswith("# --"):
            doc = [stripped[4:].strip()]
            continue
        if stripped.startswith("#"):
            if doc is not None:
                doc.append(stripped[1:].strip())
            continue
        match = KEY.match(line)
        if not match or stripped.startswith("-"):
            continue
        indent = len(match.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match.group(2)))
        if doc is not None:
            path = [key for _, key in stack]
            default: Any = values
            for key in path:
                default = default[key]
            out.append((".".join(path), default, " ".join(doc)))
            doc = None
    return out


def table(values_text: str) -> str:
    lines = ["| Key | Default | Description |", "|---|---|---|"]
    for key, default, description in rows(values_text):
        shown = json.dumps(default, separators=(", ", ": ")).replace("|", PIPE)
        lines.append(f"| `{key}` | `{shown}` | {description.replace('|', PIPE)} |")
    return "\n".join(lines)


def render_readme(readme: str, values_text: str) -> str:
    before, _, rest = readme.partition(START)
    _, _, after = rest.partition(END)
    if not rest:
        raise SystemExit(f"README has no {START} ... {END} markers")
    return f"{before}{START}\n{table(values_text)}\n{END}{after}"


def main(argv: list[str]) -> int:
    readme_path = CHART / "README.md"
    readme = readme_path.read_text()
    wanted = render_readme(readme, (CHART / "values.yaml").read_text())
    if "--check" in argv:
        if wanted != readme:
            print(
                f"{readme_path}: values table is stale: run scripts/chart-values-table.py",
                file=sys.stderr,
            )
            return 1
        return 0
    readme_path.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
