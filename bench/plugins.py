"""The one place that fills the registries (bench/catalog.py): built-ins, entry points and
--plugin files. The entry points (bench.run, bench.status, bench.report, bench.perf, bench.parity,
the Slurm job, the local worker) call it once; a script or a test calls `load_builtins()`."""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from importlib import metadata
from pathlib import Path
from typing import Iterable

from bench.registry import UsageError

ENTRY_POINT_GROUPS = ("prunebench.methods", "prunebench.models", "prunebench.datasets",
                      "prunebench.grids")

_loaded = False
_plugins: list[str] = []


def load_builtins() -> None:
    """Import the built-in modules and installed entry points once; they register themselves."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    # Importing a built-in module registers what it defines (methods/ imports each method file);
    # here, not at the top: importing them (torch and all) is what this call does, on demand.
    import bench.data  # noqa: F401
    import bench.data.folders  # noqa: F401
    import bench.train.models  # noqa: F401
    import bench.plan.grids  # noqa: F401
    import methods  # noqa: F401
    for group in ENTRY_POINT_GROUPS:
        for ep in metadata.entry_points(group=group):
            try:
                ep.load()
            except UsageError:
                raise
            except Exception as exc:  # a broken third-party package must not hide the cause
                raise UsageError(f"entry point {ep.name!r} ({ep.value}) in {group} failed to "
                                 f"load: {type(exc).__name__}: {exc}") from exc


def load_plugin(spec: str) -> None:
    """Import a plugin from a file path or a dotted module name; it registers what it defines."""
    load_builtins()
    if spec in _plugins:
        return
    path = Path(spec)
    if spec.endswith(".py") or path.exists():
        if not path.is_file():
            raise UsageError(f"plugin file {spec!r} does not exist; give a .py file or a module name")
        resolved = path.resolve()
        name = "prunebench_plugin_" + hashlib.sha1(str(resolved).encode()).hexdigest()[:10]
        module_spec = importlib.util.spec_from_file_location(name, resolved)
        assert module_spec is not None and module_spec.loader is not None
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        try:
            module_spec.loader.exec_module(module)
        except UsageError:
            sys.modules.pop(name, None)
            raise
        except Exception as exc:
            sys.modules.pop(name, None)
            raise UsageError(f"plugin {spec!r} failed to import: {type(exc).__name__}: {exc}") \
                from exc
        _plugins.append(str(resolved))
    else:
        try:
            importlib.import_module(spec)
        except ModuleNotFoundError as exc:
            raise UsageError(f"plugin {spec!r} is neither a .py file nor an importable module "
                             f"({exc})") from exc
        _plugins.append(spec)


def load_all(specs: Iterable[str] = ()) -> None:
    """The plugins named (files or modules), then the built-ins: what every entry point and
    worker process does before it looks anything up."""
    for spec in specs:
        load_plugin(spec)
    load_builtins()


def loaded_plugins() -> list[str]:
    """What a worker process (Slurm job, subprocess) must load to see the same registries."""
    return list(_plugins)
