"""The shell commands of a docs page, as the tests run them.

The docs page "Your own pipelines" (docs/own-pipelines.md) is a walk-through from
`flows init` to `helm upgrade`; the tests take its commands from the page itself (never a
copy), so a command that changes there changes what is run. Each command is claimed by one
test through its leading words (`RUN_BY`); `tests/integration/test_init.py` checks that every
command of the page is claimed, so a new command without a test fails.

Parsing is what a reader's shell would do for these simple lines: `\\` continues a line, `#`
starts a comment, `&&` separates commands, leading `NAME=value` words are environment.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
OWN_PIPELINES = "Your own pipelines"
# page title -> its file
PAGES = {OWN_PIPELINES: DOCS / "own-pipelines.md"}

# leading words of a command -> the test module that runs it
RUN_BY: dict[tuple[str, ...], str] = {
    ("flows", "init"): "tests/integration/test_init.py",
    ("cd",): "tests/integration/test_init.py",
    ("flows", "pipelines"): "tests/integration/test_init.py",
    ("flows", "run"): "tests/integration/test_init.py",
    ("python", "-c"): "tests/integration/test_init.py",
    ("docker", "build"): "tests/image/test_user_project.py",
    ("docker", "push"): "tests/image/test_user_project.py",
    ("kubectl", "create", "secret"): "tests/image/test_user_project.py",
    ("helm", "upgrade"): "tests/image/test_user_project.py",
    ("flows", "doctor"): "tests/image/test_user_project.py",
    ("flows", "deploy"): "tests/image/test_user_project.py",
}


@dataclass(frozen=True)
class Command:
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        assignments = [f"{k}={shlex.quote(v)}" for k, v in self.env.items()]
        return " ".join([*assignments, shlex.join(self.argv)])

    def starts(self, words: tuple[str, ...]) -> bool:
        return tuple(self.argv[: len(words)]) == words

    def substituted(self, replacements: dict[str, str]) -> Command:
        """The command with each `old` text replaced by `new`, in order, in every word."""

        def swap(text: str) -> str:
            for old, new in replacements.items():
                text = text.replace(old, new)
            return text

        return Command([swap(a) for a in self.argv], {k: swap(v) for k, v in self.env.items()})

    def options(self, name: str) -> list[str]:
        """Values of every `name VALUE` option (`--set a=b --set c=d` -> [a=b, c=d])."""
        return [self.argv[i + 1] for i, a in enumerate(self.argv[:-1]) if a == name]


def section(title: str = OWN_PIPELINES, page: Path | None = None) -> str:
    """The text of the page titled `title` (`# title` on its first line), below the title."""
    path = page or PAGES[title]
    first, _, rest = path.read_text().partition("\n")
    if first != f"# {title}":
        raise AssertionError(f"{path.relative_to(REPO)} is not the page '# {title}': {first!r}")
    return rest


def commands(title: str = OWN_PIPELINES, page: Path | None = None) -> list[Command]:
    """Every command of the page's ```bash blocks, in order."""
    found: list[Command] = []
    for block in re.findall(r"^```bash\n(.*?)^```", section(title, page), re.M | re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            while words:
                cut = words.index("&&") if "&&" in words else len(words)
                found.append(_command(words[:cut]))
                words = words[cut + 1 :]
    return found


def _command(words: list[str]) -> Command:
    env: dict[str, str] = {}
    while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    if not words:
        raise AssertionError(f"a docs line has only assignments: {env}")
    return Command(words, env)


def command(words: tuple[str, ...], title: str = OWN_PIPELINES) -> Command:
    """The one command of the page that starts with `words`."""
    matching = [c for c in commands(title) if c.starts(words)]
    if len(matching) != 1:
        raise AssertionError(
            f"docs '{title}': {len(matching)} commands start with {' '.join(words)!r}"
        )
    return matching[0]


def unclaimed(title: str = OWN_PIPELINES) -> list[str]:
    """Commands of the page that no test claims in RUN_BY."""
    return [str(c) for c in commands(title) if not any(c.starts(words) for words in RUN_BY)]


# A code block a page marks right before it, on its own line:
#   <!-- not-run: why (cluster-only commands, a server that does not return) -->
#   <!-- run-by: tests/integration/test_x.py -->   (a test that reads this page runs it)
MARKER = re.compile(r"<!--\s*(not-run|run-by):\s*(.+?)\s*-->\s*\n$")


@dataclass(frozen=True)
class Block:
    page: Path
    lang: str  # python | bash
    code: str
    marker: tuple[str, str] | None  # ("not-run", reason) | ("run-by", test path) | None


def blocks(page: Path) -> list[Block]:
    """Every ```python and ```bash block of the page, in order, with the marker before it."""
    text = page.read_text()
    found = []
    for match in re.finditer(r"^```(python|bash)\n(.*?)^```", text, re.M | re.S):
        before = text[: match.start()]
        marker = MARKER.search(before[-400:])
        found.append(
            Block(
                page,
                match.group(1),
                match.group(2),
                (marker.group(1), marker.group(2)) if marker else None,
            )
        )
    return found


def as_shell(block: Block) -> str:
    """The block as lines of one bash script: a python block runs through the venv's python."""
    if block.lang == "bash":
        return block.code
    return f"python - <<'PYTHON_BLOCK'\n{block.code}PYTHON_BLOCK\n"


def run_script(
    script: list[str], cwd: Path, env: dict[str, str], timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    """The page's commands, one after the other in one bash, as a reader pastes them."""
    return subprocess.run(
        ["bash", "-c", "\n".join(script)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
