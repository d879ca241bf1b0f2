"""`python -m bench.run`: expand a grid, run its missing cells, print and write the results table."""
from __future__ import annotations

import argparse
import os
import sys
import textwrap
from pathlib import Path
from typing import Sequence

from bench import catalog, plugins
from bench.cli import OneLineParser, guards, run_command
from bench.cli.arguments import add_common, resolve_device, select_cells, status_command
from bench.cli.guards import check_executor_args
from bench.console import show_progress
from bench.config import describe_fields
from bench.plan.estimate import REFERENCE_IMAGES_PER_SECOND, estimate_gpu_hours, format_hours
from bench.registry import UsageError
from bench.report.phase_times import format_profiles
from bench.store import ResultStore, atomic_write_bytes

# Imported inside the functions that need them: torch and what builds on it (the cell, the
# executors, the trainer's metrics log, the Slurm job), pandas (the tables) and the Slurm modules
# (submitit, file locks; only --executor slurm), whose start-up `--help` and `--dry-run` never need.


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m bench.run", description=__doc__)
    add_common(p)
    p.add_argument("--data-root", metavar="DIR", help="folder holding the datasets' files")
    p.add_argument("--download", action="store_true", help="download datasets (needs internet)")
    p.add_argument("--dry-run", action="store_true", help="list the cells and their ids, run none")
    p.add_argument("--fields", action="store_true",
                   help="list every config field --set accepts (type, default, meaning) and exit")
    p.add_argument("--grids", action="store_true",
                   help="list the named grids (with --plugin's) and what each runs, and exit")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--force", action="store_true", help="rerun cells that already have a record")
    p.add_argument("--compile", action="store_true", help="torch.compile the training step")
    p.add_argument("--no-checkpoints", action="store_true", help="do not save final models")
    p.add_argument("--no-share", action="store_true",
                   help="COLT/EGP: compute every cell's rounds itself instead of sharing round "
                        "prefixes across sparsities (same results, more time; for checking)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--profile", action="store_true",
                   help="after the run, print each finished cell's images/s and share of time "
                        "per phase")
    p.add_argument("--tensorboard", metavar="DIR",
                   help="write TensorBoard event files per cell and phase under DIR (needs the "
                        "[tb] extra); for Slurm also the profile key 'tensorboard'")
    p.add_argument("--executor", choices=("inprocess", "local", "slurm"), default="inprocess",
                   help="inprocess (default): run the cells in this process; local: in --workers "
                        "subprocesses on this machine; slurm: submit job arrays (--cluster)")
    p.add_argument("--workers", type=int, metavar="N",
                   help="--executor local: subprocesses running cells at once (default: 1)")
    p.add_argument("--threads", type=int, metavar="N",
                   help="CPU threads per cell (default: the cores split between the workers); "
                        "e.g. --workers 1 --threads 1 leaves the other core of a 2-core machine "
                        "free for a long background study")
    p.add_argument("--cluster", metavar="PROFILE",
                   help="--executor slurm: a profile in slurm/ (e.g. local) or a profile YAML path")
    p.add_argument("--wait", action="store_true",
                   help="--executor slurm: block, with a progress bar, until the jobs have ended")
    return p


def preflight_data(cells, args) -> None:
    """Load each dataset once before running anything, so a bad data root fails fast (exit 2)."""
    from bench.exec.cell import cached_dataset  # torch: see the top

    for dataset in dict.fromkeys(c.dataset for c in cells):
        cached_dataset(dataset, args.data_root, args.download)


def describe_grids(plugin_files: Sequence[str] = ()) -> str:
    """One entry per registered grid: its name, cell count and description."""
    plugins.load_all(plugin_files)
    lines = []
    for name in sorted(catalog.GRIDS.names()):
        grid = catalog.GRIDS.get(name)
        n = len(grid.cells())
        lines.append(f"{name}  ({n} cell{'' if n == 1 else 's'})")
        lines.append(textwrap.fill(grid.description or "(no description)", width=100,
                                   initial_indent="    ", subsequent_indent="    "))
    return "\n".join(lines)


def print_dry_run(grid, cells, store) -> None:
    def hours(some) -> str:
        return format_hours(estimate_gpu_hours(some))

    done = {c.id for c in cells if store.is_done(c.id)}
    todo = [c for c in cells if c.id not in done]
    print(f"grid {grid.name}: {len(cells)} cells, {hours(cells)} GPU-hours ({len(todo)} to run: "
          f"{hours(todo)} GPU-hours; ResNet-18 at {REFERENCE_IMAGES_PER_SECOND:,.0f} CIFAR "
          f"images/s, model in bench/plan/estimate.py)")
    if grid.description:
        print(f"  {grid.description}")
    left_out = getattr(grid, "unregistered_methods", lambda: [])()
    if left_out:
        print(f"  not registered, left out: {', '.join(left_out)}")
    unreachable = []
    for c in cells:
        state = "done" if c.id in done else "todo"
        # a T= on a method without a temperature would suggest a sweep that does not happen
        temp = f"T={c.resolved_temperature():g}" if catalog.METHODS.get(c.method).uses_temperature else "-"
        precheck = catalog.METHODS.get(c.method).precheck
        problem = precheck(c) if precheck else None
        unreachable += [problem] if problem else []
        swept = "".join(f"  {k}={getattr(c, k)}" for k in getattr(grid, "sweep", {}))
        print(f"  {c.id}  {state:4}  {c.label:28} {c.dataset:12} s={c.sparsity:<6g} "
              f"{temp:5} seed={c.seed}{swept}" + ("  UNREACHABLE" if problem else ""))
    if unreachable:
        print(f"{len(unreachable)} cells cannot reach their target and will fail at their start:")
        for problem in dict.fromkeys(unreachable):
            print(f"  {problem}")


def write_tables(grid, cells, store) -> str:
    # pandas: see the top
    from bench.report.tables import accuracy_table, expected_frame, merge_status, to_markdown

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


def tensorboard_dir(args: argparse.Namespace, profile=None) -> str | None:
    """--tensorboard DIR, else a Slurm profile's `tensorboard` key: an absolute path (jobs run
    elsewhere), after checking that the optional tensorboard package is installed."""
    folder = args.tensorboard or (profile.tensorboard if profile is not None else None)
    if not folder:
        return None
    from bench.train.metrics_log import require_tensorboard  # torch: see the top

    require_tensorboard()
    path = Path(os.path.expandvars(folder)).expanduser()
    if path.exists() and not path.is_dir():
        raise UsageError(f"--tensorboard {folder!r} is a file; give a folder (it is created)")
    return str(path.resolve())


def print_profiles(args: argparse.Namespace, cells, store) -> None:
    if args.profile:
        records, _ = store.load_all([c.id for c in cells])
        print(format_profiles(records) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    return guards.run_guarded(run_command, _main, build_parser().parse_args(argv))


def _main(args: argparse.Namespace) -> int:
    show_progress(not args.no_progress)  # also the bars no RunOptions reaches (image decoding)
    if args.fields:
        print(describe_fields())
        return 0
    if args.grids:
        print(describe_grids(args.plugin))
        return 0
    check_executor_args(args)
    grid, cells = select_cells(args)
    guards.check_inputs(args, cells)
    store = ResultStore(args.results)
    if args.executor == "slurm":
        from bench.slurm import check_partition, describe, load_profile, require_sbatch  # top

        profile = load_profile(args.cluster)
    tensorboard = tensorboard_dir(args, profile if args.executor == "slurm" else None)
    if args.dry_run:
        print_dry_run(grid, cells, store)
        if args.executor == "slurm":
            from bench.exec.cell import RunOptions  # torch: see the top
            from bench.slurm.phases import plan_for, print_plan

            print(describe(profile, sum(not store.is_done(c.id) for c in cells)))
            todo = [c for c in cells if not store.is_done(c.id)]
            print_plan(plan_for(todo, store, RunOptions(share=not args.no_share)))
        return 0
    # torch: see the top
    from bench.exec.cell import RunOptions
    from bench.exec.checkpoints import check_checkpoints
    from bench.exec.dispatch import run_inprocess, run_local
    from bench.slurm.job import SubmissionError
    from bench.slurm.submit import run_slurm
    from bench.train.precision import bf16_caution

    check_checkpoints(cells)
    caution = bf16_caution(cells, None if args.executor == "slurm" else resolve_device(args.device))
    if caution:
        print(caution, file=sys.stderr)
    if args.executor == "slurm":
        require_sbatch()
        check_partition(profile)
        data_root = str(Path(args.data_root).resolve()) if args.data_root else None
        options = RunOptions(device=args.device, data_root=data_root, download=args.download,
                             progress=False, compile=args.compile,
                             save_checkpoints=not args.no_checkpoints, share=not args.no_share,
                             tensorboard=tensorboard)
        try:
            code = run_slurm(cells, store, options, profile, grid_name=grid.name,
                             force=args.force, wait_for_jobs=args.wait,
                             progress=not args.no_progress, status_cmd=status_command(args))
        except SubmissionError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        if args.wait and code != 130:
            print(write_tables(grid, cells, store))
            print_profiles(args, cells, store)
        return code
    device = resolve_device(args.device)
    preflight_data(cells, args)
    guards.check_data_fits(cells, args, device)
    options = RunOptions(device=device, data_root=args.data_root, download=args.download,
                         progress=not args.no_progress, compile=args.compile,
                         save_checkpoints=not args.no_checkpoints, share=not args.no_share,
                         tensorboard=tensorboard)
    if args.executor == "local":
        outcome = run_local(cells, store, options, force=args.force, workers=args.workers or 1,
                            threads=args.threads)
    else:
        if args.threads:
            import torch  # see the top

            torch.set_num_threads(args.threads)
        outcome = run_inprocess(cells, store, options, force=args.force)
    print(write_tables(grid, cells, store))
    print_profiles(args, cells, store)
    print(f"{len(outcome.ran)} ran, {len(outcome.skipped)} already done, "
          f"{len(outcome.failed)} failed, {len(outcome.busy)} running elsewhere; "
          f"records in {Path(args.results) / 'records'}, tables in {store.tables_dir}")
    return 1 if outcome.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
