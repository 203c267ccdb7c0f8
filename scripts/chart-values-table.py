#!/usr/bin/env python3
"""Writes the values table of charts/prefect-dlt/README.md from values.yaml's comments, and
the list of those values the chart checks for (files/value-keys.txt).

Every value documented with a "# --" comment (the helm-docs convention PrefectHQ/prefect-helm
uses) becomes a row: key, default, description. The table sits between the
`<!-- values-table -->` markers of the README. The same keys, one per line, are what the
chart's values check (templates/checks/values/complete.yaml) requires: a template cannot read
the chart's own values.yaml, and `helm upgrade --reuse-values` replaces it by an earlier
release's values.

    scripts/chart-values-table.py           # rewrite the table and the key list
    scripts/chart-values-table.py --check   # exit 1 if either is stale (tests)
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


def value_keys(values_text: str) -> str:
    """The documented keys, one per line (files/value-keys.txt)."""
    return "".join(f"{key}\n" for key, _, _ in rows(values_text))


def main(argv: list[str]) -> int:
    values_text = (CHART / "values.yaml").read_text()
    readme_path = CHART / "README.md"
    keys_path = CHART / "files" / "value-keys.txt"
    wanted = {
        readme_path: render_readme(readme_path.read_text(), values_text),
        keys_path: value_keys(values_text),
    }
    stale = [path for path, text in wanted.items() if not path.exists() or path.read_text() != text]
    if "--check" in argv:
        for path in stale:
            print(f"{path}: stale: run scripts/chart-values-table.py", file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        path.write_text(wanted[path])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
