"""What bench.run, bench.status, bench.report and the Slurm executor share on the command line:
the common arguments, the selection of cells they describe, list and device parsing, and the
bench.status command line that shows a selection."""
from __future__ import annotations

import argparse
import dataclasses
import shlex
from pathlib import Path
from typing import Any

import yaml

from bench import catalog, plugins
from bench.method import parse_method_spec
from bench.plan.grid import GRID_AXES, load_grid
from bench.registry import UsageError

DEFAULT_RESULTS = "results/store"


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--grid", default="quick",
                        help="a named grid (quick, paper, ...) or a grid YAML file (default: quick)")
    parser.add_argument("--results", default=DEFAULT_RESULTS, metavar="DIR",
                        help=f"results store (default: {DEFAULT_RESULTS})")
    parser.add_argument("--methods", help="comma-separated method names or specs (name:key=val)")
    parser.add_argument("--datasets", help="comma-separated datasets")
    parser.add_argument("--sparsities", help="comma-separated sparsities in [0, 1)")
    parser.add_argument("--seeds", help="comma-separated integer seeds")
    parser.add_argument("--temperatures", help="comma-separated temperatures > 0 (KD methods)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a config field for every cell, e.g. --set dense_epochs=5 "
                             "(python -m bench.run --fields lists every field and its meaning)")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"),
                        help="training precision of every cell, as --set precision=...: auto "
                             "(bf16 autocast on a CUDA GPU that has it, fp32 on every CPU), fp32 "
                             "or bf16")
    parser.add_argument("--plugin", action="append", default=[], metavar="FILE_OR_MODULE",
                        help="import a file or module that registers methods/models/datasets/grids")


# --- lists and values ----------------------------------------------------------------------------


def split_list(text: str | None) -> list[str] | None:
    if text is None:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise UsageError(f"empty list {text!r}")
    return items


def split_methods(text: str | None) -> list[str] | None:
    """--methods: comma-separated specs, where a spec's own options are comma-separated too:
    'tg-oneshot:retrain=ft,score=grad,magnitude' -> ['tg-oneshot:retrain=ft,score=grad',
    'magnitude'] (a key=value item without a ':' continues the spec before it)."""
    items = split_list(text)
    if items is None:
        return None
    out: list[str] = []
    for item in items:
        if "=" in item and ":" not in item and out and ":" in out[-1]:
            out[-1] += "," + item
        else:
            out.append(item)
    return out


def parse_numbers(text: str | None, kind: type, what: str) -> list[Any] | None:
    items = split_list(text)
    if items is None:
        return None
    out = []
    for item in items:
        try:
            out.append(kind(item))
        except ValueError:
            raise UsageError(f"{what} {item!r} is not a{'n integer' if kind is int else ' number'}") \
                from None
    return out


def parse_value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


# --- the selection --------------------------------------------------------------------------------


def select_cells(args: argparse.Namespace):
    """The grid's cells after the command line's selections and overrides. Loads the --plugin
    files/modules and the built-ins first (every command that selects cells comes through here)."""
    plugins.load_all(args.plugin)
    grid = load_grid(args.grid)
    changes: dict[str, Any] = {}
    methods = split_methods(args.methods)
    if methods is not None:
        chosen: list[str] = []
        for item in methods:
            name, _ = parse_method_spec(item)
            catalog.METHODS.get(name)  # unknown names fail here, listing the valid ones
            matches = [m for m in grid.methods
                       if m == item or parse_method_spec(m)[0] == catalog.METHODS.canonical(item)]
            if not matches and item in {m for m, _ in grid.extra_points}:
                continue  # an extra point's method (a dense reference): kept as its point below
            chosen += matches or [item]
        changes["methods"] = tuple(dict.fromkeys(chosen))
    datasets = split_list(args.datasets)
    if datasets is not None:
        for d in datasets:
            catalog.DATASETS.get(d)
        changes["datasets"] = tuple(catalog.DATASETS.canonical(d) for d in datasets)
    for field, kind, what in (("sparsities", float, "sparsity"), ("seeds", int, "seed"),
                              ("temperatures", float, "temperature")):
        values = parse_numbers(getattr(args, field), kind, what)
        if values is not None:
            changes[field] = tuple(values)
    overrides = {}
    for item in args.set:
        key, eq, value = item.partition("=")
        if not eq:
            raise UsageError(f"--set {item!r} is not FIELD=VALUE")
        key = key.strip()
        if key in GRID_AXES:
            use = "--methods NAME:key=value" if key == "options" else \
                f"--{GRID_AXES[key]} {value.strip() or 'VALUE'}"
            raise UsageError(f"--set {key}=... is a grid axis, not a field to set; use {use}")
        overrides[key] = parse_value(value)
    if getattr(args, "precision", None):
        overrides["precision"] = args.precision
    if overrides:
        changes["base"] = {**grid.base, **overrides}
        changes["sweep"] = {k: v for k, v in grid.sweep.items() if k not in overrides}
        changes["per_dataset"] = {d: {k: v for k, v in o.items() if k not in overrides}
                                  for d, o in grid.per_dataset.items()}
    if changes:
        if "sparsities" in changes or "methods" in changes:
            # the grid's extra points belong to its own selection of methods and sparsities
            keep = set(changes.get("methods", grid.methods)) | set(methods or ())
            changes["extra_points"] = tuple(p for p in grid.extra_points
                                            if p[0] in keep and "sparsities" not in changes)
        grid = dataclasses.replace(grid, **changes)
    return grid, grid.cells()


def status_command(args: Any) -> str:
    """The bench.status command line that shows the same selection as this bench.run."""
    parts = ["python", "-m", "bench.status", "--grid", args.grid,
             "--results", str(Path(args.results).resolve())]
    for flag in ("methods", "datasets", "sparsities", "seeds", "temperatures", "precision"):
        value = getattr(args, flag, None)
        if value is not None:
            parts += [f"--{flag}", value]
    for item in getattr(args, "set", []):
        parts += ["--set", item]
    for plugin in getattr(args, "plugin", []):
        parts += ["--plugin", plugin]
    return " ".join(shlex.quote(str(p)) for p in parts)


# --- devices ---------------------------------------------------------------------------------------


def check_device_name(name: str) -> None:
    """Validate --device's form (auto, cpu, cuda, cuda:N); whether CUDA exists is not checked
    (for Slurm that is the compute node's business)."""
    import torch  # deferred: torch's start-up; --help and the selection never need it

    if name == "auto":
        return
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise UsageError(f"--device {name!r} is invalid; valid: auto, cpu, cuda, cuda:N")


def resolve_device(name: str) -> str:
    """--device for a run on this machine: auto becomes cuda or cpu, and CUDA must exist."""
    import torch  # deferred: torch's start-up; --help and the selection never need it

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    check_device_name(name)
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name!r}: CUDA is not available on this machine; use cpu")
    return str(device)
