"""`flows doctor`: checks, in order, what a run needs, and says what to fix for each failure.

1. the Prefect API answers and accepts the auth string
2. the work pool exists with the expected base job template
3. a worker polled the pool recently
4. every deployment of prefect.yaml is registered with its schedules (found by its name and
   entrypoint: the flow's name is not in prefect.yaml)
5. the state store is reachable and writable: the one given, else (in a worker pod) the one
   the pool's flow runs use, else the local default
6. the deployments that record a version were made from this `flows` version
7. every declared pipeline's source imports and its destination answers
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml

from flows.cli.options import POOL_HELP, flows_version
from flows.errors import ConfigError, one_line
from flows.pipelines import PipelineSpec, discover


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        mark = "ok  " if self.ok else "FAIL"
        fix = f"\n       fix: {self.fix}" if self.fix and not self.ok else ""
        return f"[{mark}] {self.name}: {self.detail}{fix}"


@dataclass
class DoctorOptions:
    api_url: str
    auth_string: str | None
    pool: str
    state_url: str | None  # None: the flow runs' (the pool's), else the local default
    prefect_yaml: Path
    template: dict[str, Any] | None = None
    worker_max_age: timedelta = timedelta(minutes=2)


def _headers(options: DoctorOptions) -> dict[str, str]:
    if not options.auth_string:
        return {}
    import base64

    return {"Authorization": "Basic " + base64.b64encode(options.auth_string.encode()).decode()}


def check_api(options: DoctorOptions) -> Check:
    name = "Prefect API"
    try:
        health = httpx.get(f"{options.api_url}/health", timeout=5)
    except httpx.HTTPError as err:
        return Check(
            name,
            False,
            f"{options.api_url} unreachable ({type(err).__name__}: {err})",
            "check PREFECT_API_URL, that the server runs, and that this pod may reach "
            "it (NetworkPolicy, Service name)",
        )
    if health.status_code != 200:
        return Check(
            name,
            False,
            f"/health answered {health.status_code}",
            "look at the server's logs; /api/ready tells whether the database answers",
        )
    probe = httpx.post(
        f"{options.api_url}/work_pools/filter",
        json={"limit": 1},
        headers=_headers(options),
        timeout=10,
    )
    if probe.status_code == 401:
        return Check(
            name,
            False,
            "auth string rejected (401)",
            "set PREFECT_API_AUTH_STRING to the server's user:password "
            "(the chart's <release>-api Secret)",
        )
    if probe.status_code >= 400:
        return Check(name, False, f"API answered {probe.status_code}: {probe.text[:200]}")
    return Check(name, True, f"{options.api_url} answers, auth accepted")


def check_pool(options: DoctorOptions, client: Any) -> Check:
    from prefect.exceptions import ObjectNotFound

    name = "work pool"
    try:
        pool = client.read_work_pool(options.pool)
    except ObjectNotFound:
        return Check(
            name,
            False,
            f"{options.pool!r} does not exist",
            "run `flows setup` (the chart's deploy hook does) or set FLOWS_WORK_POOL",
        )
    expected = options.template
    if expected is not None:
        want = set(expected["variables"]["properties"])
        have = set(pool.base_job_template.get("variables", {}).get("properties", {}))
        if want - have:
            return Check(
                name,
                False,
                f"{options.pool!r} lacks template variables {sorted(want - have)}",
                "run `flows setup` to sync the base job template",
            )
    return Check(name, True, f"{options.pool!r} ({pool.type}) with the expected template")


def check_worker(options: DoctorOptions, client: Any) -> Check:
    name = "worker"
    workers = client.read_workers_for_work_pool(options.pool)
    beats = [w.last_heartbeat_time for w in workers if w.last_heartbeat_time]
    if not beats:
        return Check(
            name,
            False,
            f"no worker ever polled {options.pool!r}",
            "start one: `prefect worker start --pool <pool>` (the chart's worker "
            "Deployment); runs stay Late until a worker polls",
        )
    age = datetime.now(UTC) - max(beats)
    if age > options.worker_max_age:
        return Check(
            name,
            False,
            f"last poll of {options.pool!r} {age.total_seconds():.0f} s ago",
            "the worker is down or cannot reach the API: see its logs",
        )
    return Check(name, True, f"{len(workers)} worker(s), last poll {age.total_seconds():.0f} s ago")


def _declared(prefect_yaml: Path) -> list[dict[str, Any]]:
    return list(yaml.safe_load(prefect_yaml.read_text()).get("deployments", []))


def registered(client: Any, specs: list[dict[str, Any]]) -> dict[str, Any]:
    """The registered deployment of each declared one, by deployment name: found by its name
    and its entrypoint (the flow's name, the other half of FLOW/DEPLOYMENT, is in the code,
    not in prefect.yaml); a declared one not registered is absent."""
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    names = [spec["name"] for spec in specs]
    found = client.read_deployments(
        deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=names))
    )
    by_name: dict[str, Any] = {}
    for spec in specs:
        matches = [d for d in found if d.name == spec["name"]]
        entry = [d for d in matches if d.entrypoint == spec.get("entrypoint")]
        if entry or matches:
            by_name[spec["name"]] = (entry or matches)[0]
    return by_name


def check_deployments(options: DoctorOptions, client: Any) -> Check:
    name = "deployments"
    specs = _declared(options.prefect_yaml)
    deployments = registered(client, specs)
    problems: list[str] = []
    for spec in specs:
        deployment = deployments.get(spec["name"])
        if deployment is None:
            problems.append(f"{spec['name']} missing")
            continue
        want = {(s["cron"], s.get("timezone", "UTC")) for s in spec.get("schedules", [])}
        have = {
            (s.schedule.cron, s.schedule.timezone or "UTC")
            for s in deployment.schedules
            if getattr(s.schedule, "cron", None)
        }
        if want != have:
            problems.append(f"{spec['name']} schedules {sorted(have)} != {sorted(want)}")
    if problems:
        return Check(
            name,
            False,
            "; ".join(problems),
            f"run `flows deploy` in {options.prefect_yaml.parent} (on the cluster: the chart's "
            "deploy hook)",
        )
    return Check(name, True, f"{len(deployments)} registered with their schedules")


def check_slots(options: DoctorOptions, client: Any) -> Check:
    """Slots of tag limits held by task runs that will never give them back (a pod killed
    mid-task); deployment slots still held by dead runs' leases are listed too."""
    from flows.kube.slots import deployment_slots, leaked_tag_slots

    name = "concurrency slots"
    leaked = leaked_tag_slots(client)
    lingering = deployment_slots(client)
    if leaked:
        shown = "; ".join(str(slot) for slot in leaked[:5]) + ("; ..." if len(leaked) > 5 else "")
        return Check(
            name,
            False,
            f"{len(leaked)} leaked: {shown}",
            "`flows watchdog --once` gives them back (the chart's worker pod runs it)",
        )
    extra = f"; {'; '.join(lingering)}" if lingering else ""
    return Check(name, True, f"no leaked tag slots{extra}")


def check_storage(options: DoctorOptions, pool: Any = None) -> Check:
    from flows.config.settings import default_state_url
    from flows.state import StateStoreError, open_store

    name = "state store"
    whose = ""
    url = options.state_url
    if url is None and (url := flow_run_state_url(pool)):
        whose = f" (the flow runs' store, pool {options.pool!r})"
    url = url or default_state_url()
    try:
        open_store(url).check_writable()
    except (StateStoreError, OSError) as err:
        return Check(
            name,
            False,
            str(err),
            "check STATE__URL, that the bucket exists, and the credentials Secret "
            "(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL)",
        )
    return Check(name, True, f"{url} is writable{whose}")


def check_version(options: DoctorOptions, client: Any) -> Check:
    """Deployments that record a version (prefect.yaml's `version: "{{ $FLOWS_VERSION }}"`,
    stamped by `flows deploy`) must record this `flows`; one without a version is not
    compared (nothing says which `flows` made it)."""
    name = "flows version"
    specs = [spec for spec in _declared(options.prefect_yaml) if spec.get("version")]
    if not specs:
        return Check(name, True, "no deployment of prefect.yaml records a version")
    deployments = registered(client, specs)
    stale = [
        f"{n}={d.version or 'none'}" for n, d in deployments.items() if d.version != flows_version()
    ]
    if stale:
        return Check(
            name,
            False,
            f"this `flows` is {flows_version()}, deployments: {', '.join(stale)}",
            f"redeploy: `flows deploy` in {options.prefect_yaml.parent} (on the cluster: "
            "helm upgrade runs the deploy hook with the new image)",
        )
    return Check(name, True, f"deployments match flows {flows_version()}")


def run_doctor(options: DoctorOptions) -> list[Check]:
    checks = [check_api(options)]
    api_ok = checks[0].ok
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    client_checks: list[tuple[str, Callable[[DoctorOptions, Any], Check]]] = [
        ("work pool", check_pool),
        ("worker", check_worker),
        ("deployments", check_deployments),
        ("concurrency slots", check_slots),
    ]
    if api_ok:
        with (
            temporary_settings(
                {PREFECT_API_URL: options.api_url, PREFECT_API_AUTH_STRING: options.auth_string}
            ),
            get_client(sync_client=True) as client,
        ):
            for name, fn in client_checks:
                if name == "worker" and not checks[-1].ok:
                    checks.append(Check(name, False, "not checked: the work pool is missing"))
                else:
                    checks.append(fn(options, client))
            checks.append(check_storage(options, _pool_or_none(client, options.pool)))
            checks.append(check_version(options, client))
    else:
        checks += [Check(n, False, "not checked: the API is not usable") for n, _ in client_checks]
        checks.append(check_storage(options))
        checks.append(Check("flows version", False, "not checked: the API is not usable"))

    checks.append(check_pipelines())
    return checks


def _pool_or_none(client: Any, pool: str) -> Any:
    try:
        return client.read_work_pool(pool)
    except Exception:
        return None


def default_options() -> DoctorOptions:
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL

    from flows.config.platform import platform_config
    from flows.config.settings import config_value
    from flows.kube.pool_template import base_job_template

    config = platform_config()
    return DoctorOptions(
        api_url=(PREFECT_API_URL.value() or "http://127.0.0.1:4200/api").rstrip("/"),
        auth_string=PREFECT_API_AUTH_STRING.value(),
        pool=config.flows_work_pool,
        state_url=config_value("state.url"),
        prefect_yaml=config.project_dir() / "prefect.yaml",
        template=base_job_template(),
    )


# the declared pipelines ----------------------------------------------------------------


def check_pipelines() -> Any:
    """One check over every declared pipeline; the failure names each broken one."""
    name = "pipelines"
    try:
        catalog = discover()
    except ConfigError as err:
        return Check(name, False, one_line(err), "fix the declaration it names")
    problems = []
    for spec in sorted(catalog.pipelines.values(), key=lambda s: s.name):
        problem = pipeline_problem(spec)
        if problem:
            problems.append(f"{spec.name}: {problem}")
    if problems:
        return Check(
            name,
            False,
            "; ".join(problems),
            "fix the source's import or the destination's config and credentials "
            "(env, .dlt/config.toml, .dlt/secrets.toml, the flow runs' Secrets)",
        )
    return Check(
        name,
        True,
        f"{len(catalog.pipelines)} declared, each imports and reaches its destination",
    )


def pipeline_problem(spec: PipelineSpec) -> str | None:
    """Why `spec` cannot run here, or None."""
    from flows.pipelines.persistence import duckdb_file, refuse_scratch_duckdb

    try:
        spec.source_function()
        refuse_scratch_duckdb(spec)
        path = duckdb_file(spec)
        if path is not None:
            return _writable(path.parent)
        with tempfile.TemporaryDirectory(prefix="flows-doctor-") as workdir:
            pipeline = spec.build_pipeline(Path(workdir))
            with pipeline.destination_client() as client:
                client.is_storage_initialized()
    except Exception as err:
        return one_line(err)
    return None


def _writable(folder: Path) -> str | None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".doctor-"):
            pass
    except OSError as err:
        return f"DuckDB folder {folder} is not writable: {err}"
    return None


def flow_run_state_url(pool: Any) -> str | None:
    """The state store the pool's flow runs use: its template's `state_url` default."""
    template = getattr(pool, "base_job_template", None) or {}
    spec = template.get("variables", {}).get("properties", {}).get("state_url", {})
    default = spec.get("default")
    return str(default) if default else None


def register(sub: Any) -> None:
    """Adds `doctor`."""
    doctor = sub.add_parser("doctor", help="check API, pool, worker, deployments, storage")
    doctor.add_argument("--pool", help=POOL_HELP)
    doctor.add_argument("--state-url", help="default: STATE__URL")
    doctor.add_argument("--api-url", help="default: PREFECT_API_URL")
    doctor.add_argument(
        "--prefect-yaml", type=Path, help="default: $FLOWS_PROJECT_DIR/prefect.yaml"
    )
    doctor.set_defaults(func=cmd_doctor)


def cmd_doctor(args: argparse.Namespace) -> int:

    options = default_options()
    options.pool = args.pool or options.pool
    options.state_url = args.state_url or options.state_url
    options.api_url = (args.api_url or options.api_url).rstrip("/")
    options.prefect_yaml = args.prefect_yaml or options.prefect_yaml
    checks = run_doctor(options)
    for check in checks:
        print(check.line())
    failed = [c for c in checks if not c.ok]
    print(f"{len(checks) - len(failed)} of {len(checks)} checks passed")
    return 1 if failed else 0
