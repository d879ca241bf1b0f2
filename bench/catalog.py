"""The four registries: methods, datasets, models and grids.

This module imports only the Registry type, so any module may import it without pulling in torch
or the built-ins. Filling the registries is `bench.plugins`' job: the entry points load built-ins
and plugins there once, and a registry's first lookup in a process that did not (a script that
builds a RunConfig, a test) loads the built-ins then, so a name is never missing for want of a
load."""
from __future__ import annotations

from typing import Any

from bench.registry import Registry


def _load_builtins() -> None:
    from bench.plugins import load_builtins  # deferred: the loader imports every built-in

    load_builtins()


# Typed loosely on purpose: naming the item types (bench.method.Method, bench.data.DatasetSpec, a
# model builder, bench.plan.grids.Grid) would import the modules that register into these.
METHODS: Registry[Any] = Registry("method", fill=_load_builtins)
DATASETS: Registry[Any] = Registry("dataset", fill=_load_builtins)
MODELS: Registry[Any] = Registry("model", fill=_load_builtins)
GRIDS: Registry[Any] = Registry("grid", fill=_load_builtins)
