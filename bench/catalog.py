"""The four registries: methods, datasets, models and grids.

This module imports only the Registry type, so any module may import it without pulling in torch
or the built-ins. Registries hold entries; filling them is `bench.plugins`' job, done once by the
entry points (bench.run, bench.status, bench.report, bench.perf, bench.parity, a Slurm job, a
local worker). A script or a test calls `bench.plugins.load_builtins()` once; until then a lookup
says so in its one-line error."""
from __future__ import annotations

from typing import Any

from bench.registry import Registry

LOAD_HINT = ("; load the built-ins first: bench.plugins.load_builtins(), as every command line "
             "does (and bench.plugins.load_plugin(...) for a plugin)")

# Typed loosely on purpose: naming the item types (bench.method.Method, bench.data.DatasetSpec, a
# model builder, bench.plan.grid.Grid) would import the modules that register into these.
METHODS: Registry[Any] = Registry("method", empty_hint=LOAD_HINT)
DATASETS: Registry[Any] = Registry("dataset", empty_hint=LOAD_HINT)
MODELS: Registry[Any] = Registry("model", empty_hint=LOAD_HINT)
GRIDS: Registry[Any] = Registry("grid", empty_hint=LOAD_HINT)
