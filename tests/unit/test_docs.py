"""The docs site (mkdocs.yml, docs/) and the README stay true to the repository.

- `mkdocs build --strict` passes: no broken link or anchor, no page left out of the nav, no
  docstring the API reference cannot render;
- every repository path, `flows.*` name and test a page names exists;
- links go to pages of the site, to files of the repository or to the web, nowhere else;
- the docs tooling is dev tooling: pinned, and never pulled in by the image's requirements;
- the walk-through of "Your own pipelines" still yields the commands the tests run.
"""

from __future__ import annotations

import ast
import importlib
import os
import re
import subprocess
import sys
from functools import cache
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests import readme

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
PAGES = sorted(DOCS.glob("*.md"))
TEXTS = [*PAGES, REPO / "README.md"]
DOCS_TOOLS = ("mkdocs", "mkdocs-material", "mkdocstrings", "mkdocstrings-python")
TOP = ("flows", "tests", "charts", "docker", "scripts", "devstack", "examples", "k8s", "docs")


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    config, site = str(REPO / "mkdocs.yml"), str(tmp_path / "site")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", config, "-d", site],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-5000:]
    reference = (tmp_path / "site" / "reference" / "index.html").read_text()
    for name in ("runner", "RunCallbacks", "RunReport", "PrefectCollector", "dlt_task"):
        assert name in reference, f"the API reference lacks {name}"
    assert "ConfigError" in reference and "DiskFullError" in reference


def test_every_page_is_in_the_nav() -> None:
    nav = (REPO / "mkdocs.yml").read_text()
    assert [p.name for p in PAGES if f": {p.name}" not in nav] == []


def _paths(text: str) -> set[str]:
    """Repository paths named in code spans and code blocks (`flows/durable/runner.py`)."""
    found = set()
    for word in re.findall(r"[\w./-]+", " ".join(re.findall(r"`+([^`]+)`+", text, re.S))):
        word = word.rstrip(".").split("::")[0]
        if word.split("/", 1)[0] in TOP and "/" in word and "<" not in word:
            found.add(word)
    return found


@pytest.mark.parametrize("page", TEXTS, ids=lambda p: p.name)
def test_every_repository_path_a_page_names_exists(page: Path) -> None:
    missing = sorted(p for p in _paths(page.read_text()) if not (REPO / p).exists())
    assert missing == [], f"{page.name} names paths the repository does not have: {missing}"


@cache
def _defined(path: Path) -> frozenset[str]:
    """Top-level names a module defines or imports."""
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return frozenset(names)


def _module_file(name: str) -> Path | None:
    base = REPO / name.replace(".", "/")
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _resolves(dotted: str) -> bool:
    """flows.a.b (a module) or flows.a.b.name (a name it defines); read, never imported."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        module = _module_file(".".join(parts[:cut]))
        if module is not None:
            rest = parts[cut:]
            return not rest or (len(rest) == 1 and rest[0] in _defined(module))
    return False


# entry-point groups, not modules
GROUPS = {"flows.pipelines", "flows.commands"}


@pytest.mark.parametrize("page", TEXTS, ids=lambda p: p.name)
def test_every_flows_name_a_page_names_exists(page: Path) -> None:
    text = page.read_text()
    names = set(re.findall(r"(?<![\w/.-])flows(?:\.[A-Za-z_]\w*)+", text)) - GROUPS
    names = {n for n in names if not n.endswith((".py", ".md", ".toml", ".yaml"))}
    bad = sorted(n for n in names if not _resolves(n))
    assert bad == [], f"{page.name} names what flows does not have: {bad}"


@pytest.mark.parametrize("page", TEXTS, ids=lambda p: p.name)
def test_every_test_a_page_names_exists(page: Path) -> None:
    named = set(re.findall(r"`(test_\w+)`", page.read_text()))
    sources = "\n".join(p.read_text() for p in (REPO / "tests").rglob("test_*.py"))
    missing = sorted(n for n in named if f"def {n}(" not in sources)
    assert missing == [], f"{page.name} names tests that do not exist: {missing}"


@pytest.mark.parametrize("page", TEXTS, ids=lambda p: p.name)
def test_links_stay_in_the_repository_or_go_to_the_web(page: Path) -> None:
    bad = []
    for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
        if re.match(r"https?://", target):
            continue
        path = (page.parent / target.split("#", 1)[0]).resolve()
        if not path.is_relative_to(REPO) or not path.exists():
            bad.append(target)
    assert bad == [], f"{page.name} links outside the repository or to nothing: {bad}"


def test_no_page_cites_a_machine_path() -> None:
    """Paths of a developer's machine (a checkout, a home folder) have no place in the docs."""
    bad = [
        f"{page.name}: {m}"
        for page in TEXTS
        for m in re.findall(r"(?:/work/|/home/|/root/|/Users/|file:///)\S*", page.read_text())
    ]
    assert bad == []


def test_the_readme_links_every_page() -> None:
    text = (REPO / "README.md").read_text()
    assert [p.name for p in PAGES if f"(docs/{p.name})" not in text] == []


def _lock() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        name, _, version = line.split(";")[0].strip().partition("==")
        pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_docs_tooling_is_pinned_and_in_the_dev_extra() -> None:
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    dev = {_canonical(Requirement(r).name) for r in project["optional-dependencies"]["dev"]}
    runtime = {_canonical(Requirement(r).name) for r in project["dependencies"]}
    pins = _lock()
    for tool in DOCS_TOOLS:
        assert tool in dev and tool not in runtime, tool
        assert pins.get(tool), f"{tool} is not pinned in requirements.lock"
        assert distribution(tool).version == pins[tool], f"{tool}: .venv differs from the lock"


def test_the_image_requirements_never_pull_in_the_docs_tooling() -> None:
    """What docker/runtime-requirements.py gives the image, with everything it requires (as
    installed here under the lock): no docs tool, and nothing only a docs tool needs."""
    script = REPO / "docker" / "runtime-requirements.py"
    out = subprocess.run(
        [sys.executable, str(script), str(REPO / "pyproject.toml")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    closure = _closure([Requirement(line) for line in out.splitlines() if line.strip()])
    docs_only = _closure([Requirement(t) for t in DOCS_TOOLS]) - closure
    assert {_canonical(t) for t in DOCS_TOOLS} <= docs_only
    assert closure & {_canonical(t) for t in DOCS_TOOLS} == set()
    assert "mkdocs-material-extensions" in docs_only and "pymdown-extensions" in docs_only


def _closure(roots: list[Requirement]) -> set[str]:
    seen: set[str] = set()
    todo = [(r, frozenset(r.extras)) for r in roots]
    while todo:
        req, extras = todo.pop()
        name = _canonical(req.name)
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            continue
        key = f"{name}[{','.join(sorted(extras))}]"
        if key in seen:
            continue
        seen.add(key)
        for raw in dist.requires or []:
            child = Requirement(raw)
            env = [{"extra": e} for e in extras] or [{"extra": ""}]
            if child.marker is None or any(child.marker.evaluate(e) for e in env):
                todo.append((child, frozenset(child.extras)))
    return {k.split("[", 1)[0] for k in seen}


def test_the_walkthrough_yields_the_commands_the_tests_run() -> None:
    """Each command the tests claim is on the page once, and the image test that runs most
    of them imports (it needs docker to run, not to import)."""
    for words, test in readme.RUN_BY.items():
        assert readme.command(words).starts(words)
        assert (REPO / test).is_file(), test
    assert readme.unclaimed() == []
    module = importlib.import_module("tests.image.test_user_project")
    assert module.readme is readme
    build = readme.command(("docker", "build"))
    assert module.PAGE_PLATFORM_IMAGE in " ".join(build.argv)
    helm = readme.command(("helm", "upgrade"))
    assert any(module.PAGE_REGISTRY in v for v in helm.options("--set"))
    secret = readme.command(("kubectl", "create", "secret"))
    assert any(module.PAGE_DSN in a for a in secret.argv)
    deploy = readme.command(("flows", "deploy"))
    assert deploy.env.get("FLOWS_WORK_POOL") == module.PAGE_POOL
