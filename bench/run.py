"""`python -m bench.run`: expand a grid, run its missing cells, print and write the results table."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

from bench import guards
from bench.cli import OneLineParser, run_command
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
                        help="override a config field for every cell, e.g. --set dense_epochs=5")
    parser.add_argument("--plugin", action="append", default=[], metavar="FILE_OR_MODULE",
                        help="import a file or module that registers methods/models/datasets/grids")


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m bench.run", description=__doc__)
    add_common(p)
    p.add_argument("--data-root", metavar="DIR", help="folder holding the datasets' files")
    p.add_argument("--download", action="store_true", help="download datasets (needs internet)")
    p.add_argument("--dry-run", action="store_true", help="list the cells and their ids, run none")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--force", action="store_true", help="rerun cells that already have a record")
    p.add_argument("--compile", action="store_true", help="torch.compile the training step")
    p.add_argument("--no-checkpoints", action="store_true", help="do not save final models")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--profile", action="store_true",
                   help="after the run, print each finished cell's images/s and share of time "
                        "per phase")
    p.add_argument("--executor", choices=("inprocess", "local", "slurm"), default="inprocess",
                   help="inprocess (default): run the cells in this process; local: in --workers "
                        "subprocesses on this machine; slurm: submit job arrays (--cluster)")
    p.add_argument("--workers", type=int, metavar="N",
                   help="--executor local: subprocesses running cells at once (default: 1)")
    p.add_argument("--cluster", metavar="PROFILE",
                   help="--executor slurm: a profile in slurm/ (e.g. local) or a profile YAML path")
    p.add_argument("--wait", action="store_true",
                   help="--executor slurm: block, with a progress bar, until the jobs have ended")
    return p


def _split(text: str | None) -> list[str] | None:
    if text is None:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise UsageError(f"empty list {text!r}")
    return items


def _numbers(text: str | None, kind: type, what: str) -> list[Any] | None:
    items = _split(text)
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
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def select_cells(args: argparse.Namespace):
    """The grid's cells after the command line's selections and overrides."""
    import dataclasses

    from bench import catalog
    from bench.grids import load_grid
    from bench.method import parse_method_spec

    for plugin in args.plugin:
        catalog.load_plugin(plugin)
    catalog.load_builtins()
    grid = load_grid(args.grid)
    changes: dict[str, Any] = {}
    methods = _split(args.methods)
    if methods is not None:
        chosen: list[str] = []
        for item in methods:
            name, _ = parse_method_spec(item)
            catalog.METHODS.get(name)  # unknown names fail here, listing the valid ones
            matches = [m for m in grid.methods
                       if m == item or parse_method_spec(m)[0] == catalog.METHODS.canonical(item)]
            chosen += matches or [item]
        changes["methods"] = tuple(dict.fromkeys(chosen))
    datasets = _split(args.datasets)
    if datasets is not None:
        for d in datasets:
            catalog.DATASETS.get(d)
        changes["datasets"] = tuple(catalog.DATASETS.canonical(d) for d in datasets)
    for field, kind, what in (("sparsities", float, "sparsity"), ("seeds", int, "seed"),
                              ("temperatures", float, "temperature")):
        values = _numbers(getattr(args, field), kind, what)
        if values is not None:
            changes[field] = tuple(values)
    overrides = {}
    for item in args.set:
        key, eq, value = item.partition("=")
        if not eq:
            raise UsageError(f"--set {item!r} is not FIELD=VALUE")
        overrides[key.strip()] = parse_value(value)
    if overrides:
        changes["base"] = {**grid.base, **overrides}
        changes["per_dataset"] = {d: {k: v for k, v in o.items() if k not in overrides}
                                  for d, o in grid.per_dataset.items()}
    if changes:
        if "sparsities" in changes or "methods" in changes:
            # the grid's extra points belong to its own selection of methods and sparsities
            keep = set(changes.get("methods", grid.methods))
            changes["extra_points"] = tuple(p for p in grid.extra_points
                                            if p[0] in keep and "sparsities" not in changes)
        grid = dataclasses.replace(grid, **changes)
    return grid, grid.cells()


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"--device {name!r} is invalid; valid: auto, cpu, cuda, cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name!r}: CUDA is not available on this machine; use cpu")
    if device.type not in ("cpu", "cuda"):
        raise UsageError(f"--device {name!r} is invalid; valid: auto, cpu, cuda, cuda:N")
    return str(device)


def preflight_data(cells, args) -> None:
    """Load each dataset once before running anything, so a bad data root fails fast (exit 2)."""
    from bench.cell import cached_dataset

    for dataset in dict.fromkeys(c.dataset for c in cells):
        cached_dataset(dataset, args.data_root, args.download)


def print_dry_run(grid, cells, store) -> None:
    from bench import catalog
    from bench.grids import REFERENCE_IMAGES_PER_SECOND, estimate_gpu_hours

    def hours(some) -> str:
        h = estimate_gpu_hours(some)
        return f"≈{h:,.1f}" if h >= 0.1 or h == 0 else f"≈{h:.1g}"

    done = {c.id for c in cells if store.is_done(c.id)}
    todo = [c for c in cells if c.id not in done]
    print(f"grid {grid.name}: {len(cells)} cells, {hours(cells)} GPU-hours ({len(todo)} to run: "
          f"{hours(todo)} GPU-hours; ResNet-18 at {REFERENCE_IMAGES_PER_SECOND:,.0f} CIFAR "
          f"images/s, model in bench/grids.py)")
    left_out = getattr(grid, "unregistered_methods", lambda: [])()
    if left_out:
        print(f"  not registered, left out: {', '.join(left_out)}")
    for c in cells:
        state = "done" if c.id in done else "todo"
        # a T= on a method without a temperature would suggest a sweep that does not happen
        temp = f"T={c.resolved_temperature():g}" if catalog.METHODS.get(c.method).uses_temperature else "-"
        print(f"  {c.id}  {state:4}  {c.label:28} {c.dataset:12} s={c.sparsity:<6g} "
              f"{temp:5} seed={c.seed}")


def write_tables(grid, cells, store) -> str:
    from bench.tables import accuracy_table, expected_frame, merge_status, to_markdown
    from bench.store import atomic_write_bytes

    merged = merge_status(expected_frame(cells), store.frame([c.id for c in cells]))
    parts = []
    for dataset in dict.fromkeys(c.dataset for c in cells):
        table = accuracy_table(merged, dataset)
        parts.append(f"### {grid.name}: {dataset}, test accuracy % (mean ± std over seeds)\n\n"
                     + to_markdown(table))
    text = "\n\n".join(parts) + "\n"
    out = store.tables_dir
    atomic_write_bytes(out / f"{grid.name}.md", text.encode())
    atomic_write_bytes(out / f"{grid.name}.csv", merged.to_csv(index=False).encode())
    return text


def print_profiles(args: argparse.Namespace, cells, store) -> None:
    if args.profile:
        from bench.profile import format_profiles

        records, _ = store.load_all([c.id for c in cells])
        print(format_profiles(records) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    return guards.run_guarded(run_command, _main, build_parser().parse_args(argv))


def _main(args: argparse.Namespace) -> int:
    from bench.dispatch import check_executor_args
    from bench.store import ResultStore

    check_executor_args(args)
    grid, cells = select_cells(args)
    guards.check_inputs(args, cells)
    store = ResultStore(args.results)
    if args.executor == "slurm":
        from bench import slurm

        profile = slurm.load_profile(args.cluster)
        slurm.check_device_name(args.device)
    if args.dry_run:
        print_dry_run(grid, cells, store)
        if args.executor == "slurm":
            print(slurm.describe(profile, sum(not store.is_done(c.id) for c in cells)))
        return 0
    from bench.cell import RunOptions

    if args.executor == "slurm":
        slurm.require_sbatch()
        slurm.check_partition(profile)
        data_root = str(Path(args.data_root).resolve()) if args.data_root else None
        options = RunOptions(device=args.device, data_root=data_root, download=args.download,
                             progress=False, compile=args.compile,
                             save_checkpoints=not args.no_checkpoints)
        try:
            code = slurm.run_slurm(cells, store, options, profile, grid_name=grid.name,
                                   force=args.force, wait_for_jobs=args.wait,
                                   progress=not args.no_progress,
                                   status_cmd=slurm.status_command(args))
        except slurm.SubmissionError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        if args.wait and code != 130:
            print(write_tables(grid, cells, store))
            print_profiles(args, cells, store)
        return code
    device = resolve_device(args.device)
    preflight_data(cells, args)
    guards.check_data_fits(cells, args, device)

    from bench.dispatch import run_inprocess, run_local

    options = RunOptions(device=device, data_root=args.data_root, download=args.download,
                         progress=not args.no_progress, compile=args.compile,
                         save_checkpoints=not args.no_checkpoints)
    if args.executor == "local":
        outcome = run_local(cells, store, options, force=args.force, workers=args.workers or 1)
    else:
        outcome = run_inprocess(cells, store, options, force=args.force)
    print(write_tables(grid, cells, store))
    print_profiles(args, cells, store)
    print(f"{len(outcome.ran)} ran, {len(outcome.skipped)} already done, "
          f"{len(outcome.failed)} failed, {len(outcome.busy)} running elsewhere; "
          f"records in {Path(args.results) / 'records'}, tables in {store.tables_dir}")
    return 1 if outcome.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
