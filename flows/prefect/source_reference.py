"""How the isolated attempt's child process finds the function that builds the source: by
its import path when a fresh interpreter imports it by that name, else pickled by value."""

from __future__ import annotations

import functools
import importlib
import os
import site
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cloudpickle


def source_reference(fn: Callable[..., Any]) -> Callable[..., Any] | str:
    """ "module:qualname" when a fresh interpreter in this directory imports `fn` by that
    name, else `fn` itself, pickled by value (a flow file Prefect loaded from a path)."""
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", "")
    found: Any = None
    if module and _importable_in_child(module):
        try:
            found = importlib.import_module(module)
            for part in qualname.split("."):
                found = getattr(found, part)
        except (ImportError, AttributeError, ValueError):
            found = None
    if found is fn:
        return f"{module}:{qualname}"
    if module in sys.modules and module not in ("__main__", "__mp_main__"):
        cloudpickle.register_pickle_by_value(sys.modules[module])
    return fn


def _importable_in_child(module: str) -> bool:
    """The child imports `module` by name from: the working directory (`python -m` puts it
    first) under that dotted name, PYTHONPATH, site-packages, or an installed distribution
    (editable ones included). Not from folders a loader added at run time (Prefect adds a
    flow file's folder when it loads the file by path)."""
    loaded = sys.modules.get(module)
    origin = getattr(loaded, "__file__", None)
    if loaded is None or origin is None or module.startswith("__"):
        return False  # __main__, or Prefect's loader name for a flow file loaded by path
    path = Path(os.path.abspath(origin))
    if module.partition(".")[0] in _distributed_packages():
        return True
    roots = [os.getcwd(), *os.environ.get("PYTHONPATH", "").split(os.pathsep)]
    for root in [Path(os.path.abspath(r)) for r in roots if r]:
        if path.is_relative_to(root):
            dotted = ".".join(path.relative_to(root).with_suffix("").parts)
            if dotted in (module, f"{module}.__init__"):
                return True
    return any(path.is_relative_to(p) for p in map(Path, site.getsitepackages()))


@functools.cache
def _distributed_packages() -> frozenset[str]:
    from importlib.metadata import packages_distributions

    return frozenset(packages_distributions())
