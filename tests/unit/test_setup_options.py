"""`flows setup` checks its options before it calls the API: a bad one is one line on stderr,
exit code 2, and nothing written."""

from __future__ import annotations

import pytest

from flows.cli import main
from flows.errors import EXIT_CONFIG

# nothing listens there: a call to the API would fail with another error
NO_SERVER = "http://127.0.0.1:9/api"


@pytest.mark.parametrize(
    ("option", "named"),
    [
        (["--unresponsive-after", "30"], "--unresponsive-after takes 0 or at least 60 s"),
        (["--unresponsive-after", "-1"], "--unresponsive-after takes 0 or at least 60 s"),
        (["--tag-limit", "dlt"], "--tag-limit takes TAG=N"),
    ],
)
def test_a_bad_setup_option_is_one_line_and_exit_2_before_any_api_call(
    option: list[str],
    named: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("PREFECT_API_URL", NO_SERVER)
    assert main(["setup", "--type", "process", *option]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and named in err, err
    assert "connect" not in err.lower()
