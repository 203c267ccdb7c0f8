"""The platform's own settings (`FLOWS_*`), resolved by dlt's config providers.

Each field is read, in dlt's order, from the environment variable of its name in upper case
(`flows_work_pool` from `FLOWS_WORK_POOL`: a field outside any section is looked up under
its own name, so the variables keep the names the chart, the image and the docs give them),
else from the same key at the top of `.dlt/config.toml` (`flows_work_pool = "..."`), else
its default here. Each name and default is spelled once, in this class. A value that does
not parse is refused in one line naming the variable (`ConfigError`, exit 2), as
flows/state/config.py refuses a bad `STATE__*`.

What a flow run's Prefect engine reads (it never imports dlt: flows/errors.py) is not here
but in flows/config/pod.py, read from the environment only.
"""

from __future__ import annotations

from pathlib import Path

from dlt.common.configuration import configspec, resolve_configuration
from dlt.common.configuration.exceptions import ConfigValueCannotBeCoercedException
from dlt.common.configuration.specs import BaseConfiguration

from flows.errors import ConfigError


@configspec
class FlowsConfiguration(BaseConfiguration):
    flows_home: str = ".flows"
    """Root of the embedded default: state store, pipelines dir and DuckDB files."""
    flows_adaptive: bool = True
    """Size buffers, file rotation and workers to the container's memory (config/sizing.py)."""
    flows_require_persistent_destination: bool = False
    """Refuse a DuckDB file on the pod's scratch disk (pipelines/persistence.py)."""
    flows_persistent_dirs: str = ""
    """Colon-separated mount points of persistent volumes, where a DuckDB file may lie."""
    flows_work_pool: str = "dlt-k8s"
    """The Kubernetes work pool `flows setup`, `doctor` and the chart's hooks work on."""
    flows_project_dir: str | None = None
    """Folder of the project's prefect.yaml, the deployments' working directory (unset:
    the current directory, see `project_dir`)."""
    flows_alert_webhook_url: str | None = None
    """`flows setup`: where the crash and failure automations post."""
    flows_alert_block: str | None = None
    """`flows setup`: notification block `<block-type-slug>/<name>` for the automations."""
    wait_seconds: float = 120.0
    """The chart's hooks (`flows wait-for-server`, `flows create-bucket`): seconds to wait."""

    def home(self) -> Path:
        return Path(self.flows_home).resolve()

    def project_dir(self) -> Path:
        return Path(self.flows_project_dir or ".")

    def persistent_dirs(self) -> list[Path]:
        return [Path(d).resolve() for d in self.flows_persistent_dirs.split(":") if d]


def setting_name(field: str) -> str:
    """The variable that sets `field`, and its key in config.toml."""
    return f"{field.upper()} (or {field} in .dlt/config.toml)"


def platform_config() -> FlowsConfiguration:
    """The resolved settings (read on each call: a test or a CLI option may change the env)."""
    try:
        return resolve_configuration(FlowsConfiguration())
    except ConfigValueCannotBeCoercedException as err:
        raise ConfigError(
            f"{setting_name(err.field_name)} = {err.field_value!r} is not a valid "
            f"{getattr(err.hint, '__name__', err.hint)}"
        ) from err
