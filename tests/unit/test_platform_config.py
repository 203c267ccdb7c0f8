"""The platform's own settings: FLOWS_* read through dlt's providers (flows/config/platform.py),
the flow-run engine's from the environment alone (flows/config/pod.py); a bad value is
refused in one line naming the variable, exit 2."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from flows.cli import main
from flows.config.platform import platform_config
from flows.config.pod import CRASH_RERUNS, IMAGE, PREWARM_ATTEMPT
from flows.config.settings import flows_home
from flows.errors import EXIT_CONFIG, ConfigError, exit_code_for
from flows.pipelines import Catalog, PipelineSpec
from flows.pipelines.errors import SourceImportError, UnknownPipelineError

SETTINGS = (
    "FLOWS_HOME",
    "FLOWS_ADAPTIVE",
    "FLOWS_WORK_POOL",
    "FLOWS_PROJECT_DIR",
    "FLOWS_PERSISTENT_DIRS",
    "FLOWS_CRASH_RERUNS",
    "FLOWS_PREWARM_ATTEMPT",
    "FLOWS_IMAGE",
    "WAIT_SECONDS",
)


@pytest.fixture(autouse=True)
def unset(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)


def test_defaults_and_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = platform_config()
    assert config.flows_work_pool == "dlt-k8s" and config.flows_adaptive is True
    assert config.project_dir() == Path(".") and config.flows_project_dir is None
    assert config.wait_seconds == 120.0 and config.persistent_dirs() == []
    monkeypatch.setenv("FLOWS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FLOWS_WORK_POOL", "other")
    monkeypatch.setenv("FLOWS_ADAPTIVE", "false")
    monkeypatch.setenv("FLOWS_PERSISTENT_DIRS", f"{tmp_path / 'a'}::{tmp_path / 'b'}")
    monkeypatch.setenv("WAIT_SECONDS", "7.5")
    config = platform_config()
    assert flows_home() == tmp_path / "home"
    assert config.flows_work_pool == "other" and config.flows_adaptive is False
    assert config.persistent_dirs() == [tmp_path / "a", tmp_path / "b"]
    assert config.wait_seconds == 7.5


def test_a_bad_value_is_refused_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWS_ADAPTIVE", "maybe")
    with pytest.raises(ConfigError) as caught:
        platform_config()
    assert str(caught.value) == (
        "FLOWS_ADAPTIVE (or flows_adaptive in .dlt/config.toml) = 'maybe' is not a valid bool"
    )
    assert exit_code_for(caught.value) == EXIT_CONFIG


def test_the_cli_refuses_a_bad_value_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WAIT_SECONDS", "soon")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["wait-for-server"])
    assert code == EXIT_CONFIG and out.getvalue() == ""
    assert err.getvalue().splitlines() == [
        "error: ConfigError: WAIT_SECONDS (or wait_seconds in .dlt/config.toml) = 'soon' is "
        "not a valid float"
    ]


def test_the_engine_settings_are_read_when_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    assert (PREWARM_ATTEMPT.get(), CRASH_RERUNS.get(), IMAGE.get()) == (True, 3, None)
    monkeypatch.setenv("FLOWS_PREWARM_ATTEMPT", "0")
    monkeypatch.setenv("FLOWS_CRASH_RERUNS", "0")
    monkeypatch.setenv("FLOWS_IMAGE", "")
    assert (PREWARM_ATTEMPT.get(), CRASH_RERUNS.get(), IMAGE.get()) == (False, 0, None)
    for value, says in (("-1", "FLOWS_CRASH_RERUNS = -1 must be 0 or more"),
                        ("x", "FLOWS_CRASH_RERUNS = 'x' is not an integer")):  # fmt: skip
        monkeypatch.setenv("FLOWS_CRASH_RERUNS", value)
        with pytest.raises(ConfigError, match=f"^{says}$"):
            CRASH_RERUNS.get()


def test_declaration_errors_name_the_known_pipelines_once() -> None:
    spec = PipelineSpec(name="b", source="m:f")
    catalog = Catalog({"b": spec, "a": spec}, ("here",))
    with pytest.raises(UnknownPipelineError) as unknown:
        catalog.get("c")
    assert unknown.value.known == ("a", "b")
    with pytest.raises(UnknownPipelineError) as passed, catalog.known_names():
        raise unknown.value
    assert passed.value is unknown.value  # names them already: left as it is
    with pytest.raises(SourceImportError) as wrapped, catalog.known_names():
        raise SourceImportError("pipeline 'b': no module m")
    assert wrapped.value.known == ("a", "b")
    assert str(wrapped.value) == "pipeline 'b': no module m; known pipelines: a, b"
