"""Interleaved samples in cgroups of their own, and ratios as medians of per-round ratios.

Each sample is one process (tests/benchmarks/variants.py) in a fresh cgroup with the
variant's CPU and memory limits, so its memory is the group's peak (every process of the
attempt, page cache included), which is what a pod's limit and the OOM killer count.
Variants run A B C, A B C, ... so that a noisy neighbour slows every variant of a round alike;
a ratio is computed per round, then its median is reported.
"""

from __future__ import annotations

import json
import re
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.cgroups import run_limited

GiB = 2**30
REPO = Path(__file__).parents[2]


@dataclass(frozen=True)
class Variant:
    name: str
    kind: str  # a function in variants.KINDS
    args: Mapping[str, Any] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    cpus: float | None = 2.0
    memory: int | None = 4 * GiB
    # untimed, before each sample, outside its cgroup: (sample dir, sample env) -> None
    prepare: Callable[[Path, dict[str, str]], None] | None = None
    # run instead of `variants.py KIND`: a command that prints no RESULT line...
    command: tuple[str, ...] | None = None
    # ...whose figures this reads afterwards, untimed, outside the cgroup (raises on failure)
    check: Callable[[dict[str, str]], dict[str, Any]] | None = None


@dataclass(frozen=True)
class Sample:
    wall: float
    peak: int
    figures: dict[str, Any]

    def metric(self, name: str) -> float:
        if name == "wall":
            return self.wall
        if name == "peak":
            return float(self.peak)
        return float(self.figures[name])


@dataclass(frozen=True)
class Comparison:
    label: str
    variant: str
    baseline: str
    metric: str  # wall | peak | a figure the variant printed
    goal: float | None  # the ratio must not exceed it; None: a reference figure
    baseline_metric: str | None = None


def run_sample(variant: Variant, base: Path, env: Mapping[str, str]) -> Sample:
    slug = re.sub(r"[^a-z0-9]+", "-", variant.name.lower()).strip("-")
    work = base / f"{slug}-{uuid.uuid4().hex[:6]}"
    work.mkdir(parents=True)
    sample_env = {
        **env,
        "FLOWS_HOME": str(work / "home"),
        "DESTINATION__DUCKDB__CREDENTIALS": str(work / "warehouse.duckdb"),
        **{k: v.format(work=work, run=work.name) for k, v in variant.env.items()},
    }
    if variant.prepare is not None:
        variant.prepare(work, sample_env)
    cmd = list(variant.command or ()) or [
        sys.executable,
        "-m",
        "tests.benchmarks.variants",
        variant.kind,
        json.dumps({"workdir": str(work), **variant.args}),
    ]
    started = time.perf_counter()
    proc, peak = run_limited(
        cmd, variant.memory, sample_env, timeout=3600, cpus=variant.cpus, cwd=REPO
    )
    wall = time.perf_counter() - started
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if proc.returncode != 0 or (line is None and variant.check is None):
        raise RuntimeError(
            f"{variant.name}: exit {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
        )
    if variant.check is not None:
        return Sample(wall, peak, variant.check(sample_env))
    return Sample(wall, peak, json.loads(line[len("RESULT ") :]))  # type: ignore[index]


def interleave(
    variants: Sequence[Variant], rounds: int, base: Path, env: Mapping[str, str]
) -> dict[str, list[Sample]]:
    samples: dict[str, list[Sample]] = {v.name: [] for v in variants}
    for n in range(rounds):
        for variant in variants:
            sample = run_sample(variant, base, env)
            samples[variant.name].append(sample)
            print(
                f"    round {n + 1}/{rounds} {variant.name:34} wall {sample.wall:8.2f} s  "
                f"cgroup peak {sample.peak / 2**20:7.0f} MiB",
                flush=True,
            )
    return samples


def _limits(variant: Variant) -> str:
    cpu = f"{variant.cpus:g} CPU" if variant.cpus else "no CPU limit"
    memory = f"{variant.memory / GiB:g} GiB" if variant.memory else "no memory limit"
    return f"{cpu}, {memory}"


def variant_rows(
    title: str, variants: Sequence[Variant], samples: Mapping[str, list[Sample]]
) -> list[str]:
    """Markdown rows: min and median of wall and cgroup peak per variant."""
    rows = []
    for v in variants:
        got = samples[v.name]
        walls, peaks = [s.wall for s in got], [s.peak / 2**20 for s in got]
        rows.append(
            f"| {title}: {v.name} ({_limits(v)}) | {len(got)} | {min(walls):.2f} / "
            f"{statistics.median(walls):.2f} s | {min(peaks):,.0f} / "
            f"{statistics.median(peaks):,.0f} MiB |"
        )
    return rows


def ratio_rows(comparisons: Sequence[Comparison], samples: Mapping[str, list[Sample]]) -> list[str]:
    """Markdown rows: median of the per-round ratios against each goal."""
    rows = []
    for c in comparisons:
        pairs = zip(samples[c.variant], samples[c.baseline], strict=True)
        ratios = [a.metric(c.metric) / b.metric(c.baseline_metric or c.metric) for a, b in pairs]
        value = statistics.median(ratios)
        spread = ", ".join(f"{r:.2f}" for r in ratios)
        if c.goal is None:
            rows.append(f"| {c.label} | {value:.3f}x ({spread}) | - | reference |")
            continue
        verdict = "met" if value <= c.goal else "MISSED"
        rows.append(f"| {c.label} | {value:.3f}x ({spread}) | <= {c.goal:g}x | {verdict} |")
    return rows
