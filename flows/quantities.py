"""Kubernetes resource quantities: parsed by the kubernetes client, written back rounded up."""

from __future__ import annotations

import math

from kubernetes.utils.quantity import parse_quantity

MiB = 2**20


def cpu_cores(quantity: str | float | int) -> float:
    return float(parse_quantity(str(quantity)))


def memory_bytes(quantity: str | float | int) -> int:
    return int(parse_quantity(str(quantity)))


def format_cpu(cores: float, step_millicores: int = 50) -> str:
    """Cores rounded up to `step_millicores`: 0.23 -> "250m", 2.0 -> "2"."""
    millis = max(step_millicores, math.ceil(cores * 1000 / step_millicores) * step_millicores)
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"


def format_memory(size: float, step_mib: int = 64) -> str:
    """Bytes rounded up to `step_mib` MiB: 700 MB -> "704Mi", 2 GiB -> "2Gi"."""
    mib = max(step_mib, math.ceil(size / MiB / step_mib) * step_mib)
    return f"{mib // 1024}Gi" if mib % 1024 == 0 else f"{mib}Mi"
