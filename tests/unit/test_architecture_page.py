"""docs/architecture.md draws the layout of flows/: every subpackage in its table, no package
that does not exist, and each at the layer tests/unit/test_layers.py checks the code against."""

from __future__ import annotations

import re

from tests.unit.test_layers import FACE, FLOWS, RANK

PAGE = FLOWS.parent / "docs" / "architecture.md"
ROW = re.compile(r"^\| (\d+) \| (.+?) \|", re.M)


def table() -> dict[str, int]:
    """package (`errors`, `cli`, ..., `flows` for the face) -> its layer on the page."""
    rows: dict[str, int] = {}
    for layer, cell in ROW.findall(PAGE.read_text()):
        for name in re.findall(r"`flows/([^`]*)`", cell):
            package = name.removesuffix("/").removesuffix(".py")
            if package in ("__init__", "__main__"):
                package = "flows"
            assert package not in rows or rows[package] == int(layer), f"{name} twice"
            rows[package] = int(layer)
    return rows


def test_every_package_on_the_page_exists() -> None:
    missing = [
        p
        for p in table()
        if p != "flows"
        and not (FLOWS / p / "__init__.py").is_file()
        and not (FLOWS / f"{p}.py").is_file()
    ]
    assert missing == [], f"docs/architecture.md names packages flows/ does not have: {missing}"
    assert (FLOWS / "errors.py").is_file() and (FLOWS / "__main__.py").is_file()


def test_every_subpackage_is_on_the_page() -> None:
    subpackages = {p.parent.name for p in FLOWS.glob("*/__init__.py")}
    modules = {p.stem for p in FLOWS.glob("*.py")} - {"__init__", "__main__"}
    absent = sorted((subpackages | modules) - set(table()))
    assert absent == [], f"subpackages of flows/ missing from docs/architecture.md: {absent}"


def test_the_page_states_the_layers_the_code_is_checked_against() -> None:
    rows = table()
    assert rows.pop("flows") == FACE
    assert rows == RANK


def test_every_flows_path_on_the_page_exists() -> None:
    text = PAGE.read_text()
    paths = set(re.findall(r"`(flows/[\w/.]*)`", text))
    assert paths, "the page names no path of flows/"
    gone = sorted(p for p in paths if not (FLOWS.parent / p).exists())
    assert gone == [], f"docs/architecture.md names paths that do not exist: {gone}"
