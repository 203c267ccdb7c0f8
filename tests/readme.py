"""The shell commands of a README section, as the tests run them.

The README's "Your own pipelines" section is a walk-through from `flows init` to
`helm upgrade`; the tests take its commands from the README text itself (never a copy), so
a command that changes there changes what is run. Each command is claimed by one test
through its leading words (`RUN_BY`); `tests/integration/test_init.py` checks that every
command of the section is claimed, so a new command without a test fails.

Parsing is what a reader's shell would do for these simple lines: `\\` continues a line, `#`
starts a comment, `&&` separates commands, leading `NAME=value` words are environment.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
OWN_PIPELINES = "Your own pipelines"

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


def section(title: str = OWN_PIPELINES, readme: Path = README) -> str:
    text = readme.read_text()
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", text, re.M | re.S)
    if match is None:
        raise AssertionError(f"{readme.name} has no '## {title}' section")
    return match.group(1)


def commands(title: str = OWN_PIPELINES, readme: Path = README) -> list[Command]:
    """Every command of the section's ```bash blocks, in order."""
    found: list[Command] = []
    for block in re.findall(r"^```bash\n(.*?)^```", section(title, readme), re.M | re.S):
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
        raise AssertionError(f"a README line has only assignments: {env}")
    return Command(words, env)


def command(words: tuple[str, ...], title: str = OWN_PIPELINES) -> Command:
    """The one command of the section that starts with `words`."""
    matching = [c for c in commands(title) if c.starts(words)]
    if len(matching) != 1:
        raise AssertionError(
            f"README '{title}': {len(matching)} commands start with {' '.join(words)!r}"
        )
    return matching[0]


def unclaimed(title: str = OWN_PIPELINES) -> list[str]:
    """Commands of the section that no test claims in RUN_BY."""
    return [str(c) for c in commands(title) if not any(c.starts(words) for words in RUN_BY)]
