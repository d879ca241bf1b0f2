"""Input checks and clean stops for `python -m bench.run`, kept apart from the argument parsing.

Everything here runs before a cell does: a bad `--results`, `--device` or model name is one line
and exit 2 (via UsageError), also for `--dry-run`. During the run, SIGTERM (what `kill` and
schedulers send) ends it like Ctrl-C, with one line and exit 143 (and, where phases were cut
short, a second naming the folders that keep their last finished epoch; not for --executor
slurm, whose jobs go on), and a full results file system
ends it with one line naming the file (exit 1): finished records are whole, and a rerun after
space is freed completes the grid.
"""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Callable, Iterable

from filelock import FileLock, Timeout

from bench.cli.arguments import check_device_name
from bench.registry import UsageError
from bench.store import ResultStore, StorageFull

EXIT_SIGTERM = 128 + signal.SIGTERM


def check_inputs(args: argparse.Namespace, cells: Iterable) -> None:
    """Everything the command line names that can be checked without running a cell."""
    check_results_dir(args.results)
    if getattr(args, "device", None) is not None:
        check_device_name(args.device)
    check_models(cells)


def check_results_dir(results: str | Path) -> None:
    """The store folder, or the nearest existing folder above it, must be a folder."""
    path = Path(results).expanduser()
    for candidate in (path, *path.parents):
        if candidate.exists():
            if not candidate.is_dir():
                what = f"--results {path}" + ("" if candidate == path else f": {candidate}")
                raise UsageError(f"{what} is a file, not a folder; give a folder for the "
                                 "results store (it is created if missing)")
            return


def check_models(cells: Iterable) -> None:
    """Harness names are checked by RunConfig; timm names here, importing timm only if used."""
    timm_names = sorted({name[5:] for c in cells for name in (c.model, c.teacher)
                         if name.startswith("timm:")})
    if not timm_names:
        return
    import timm  # deferred: seconds of start-up, and only timm: names need it

    for name in timm_names:
        if not timm.is_model(name):
            close = timm.list_models(f"*{name[:4]}*")[:5] if len(name) >= 4 else []
            hint = f" (similar: {', '.join(close)})" if close else ""
            raise UsageError(f"unknown timm model {name!r}{hint}; see timm.list_models()")


def run_guarded(run: Callable[[Callable, argparse.Namespace], int],
                body: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """`run(body, args)` (bench.cli.run_command) with SIGTERM turned into the same clean stop as
    Ctrl-C and a full disk into one line."""
    terminated = []

    def on_term(signum, frame):
        terminated.append(signum)
        raise KeyboardInterrupt  # unwinds like Ctrl-C: no record for the cell in progress

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        code = run(body, args)
    except StorageFull as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
    if code == 130 and getattr(args, "results", None) and getattr(args, "executor", "") != "slurm":
        say_kept_work(args.results)
    return EXIT_SIGTERM if terminated and code == 130 else code


def say_kept_work(results: str | Path) -> None:
    """After a stop, where the phases cut short keep their last finished epoch: the next run on
    this store resumes from there, and a store moved to another machine without these folders
    (they are not records, so a committed study leaves them out) starts those phases afresh.
    Folders of finished cells and of work still running (its lock held: a local executor's
    worker finishing its cell, another bench.run on the store) are left out."""
    store = ResultStore(results)

    def resumable(folder: Path) -> bool:
        if folder.suffix == ".partial":  # a shared phase: <cache>/<kind>/<digest>.partial
            return not _held(folder.with_suffix(".lock"))
        return not store.is_done(folder.name) and not _held(store.lock_path(folder.name))

    kept = [f for f in store.unfinished_work() if resumable(f)]
    if kept:
        print(f"kept: epoch checkpoints in {len(kept)} folder(s), {', '.join(map(str, kept))}; "
              "a run on this store resumes from them (take these folders along to resume "
              "elsewhere)", file=sys.stderr)


def _held(lock_path: Path) -> bool:
    """Whether another process holds this file lock now (a missing lock file is not held)."""
    if not lock_path.exists():
        return False
    lock = FileLock(str(lock_path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    except OSError:  # no flock on this file system (bench.store.cache._lock): cannot tell
        return False
    lock.release()
    return False


def check_data_fits(cells: Iterable, args: argparse.Namespace, device: str) -> None:
    """On CUDA the whole uint8 split lives on the device: say so before training when it cannot
    fit (with a quarter of the free memory left for the model and its activations), rather than
    running into an out-of-memory error in every cell."""
    if not device.startswith("cuda"):
        return
    # deferred: torch and the cell's modules, whose start-up --help and --dry-run never need
    import torch

    from bench.exec.cell import cached_dataset

    free, _ = torch.cuda.mem_get_info(torch.device(device))
    for dataset in dict.fromkeys(c.dataset for c in cells):
        bundle = cached_dataset(dataset, args.data_root, args.download)
        need = sum(s.images.numel() + 8 * len(s) for s in (bundle.train, bundle.val, bundle.test))
        if need > 0.75 * free:
            raise UsageError(f"{dataset}: its splits need {need / 2**30:.1f} GiB on {device}, "
                             f"which has {free / 2**30:.1f} GiB free (a quarter is kept for the "
                             "model); use a larger device or --device cpu")


def check_executor_args(args) -> None:
    """bench.run's executor options must fit together; bad input is a UsageError (exit 2)."""
    if args.workers is not None:
        if args.executor != "local":
            raise UsageError(f"--workers is for --executor local (not {args.executor})")
        if args.workers < 1:
            raise UsageError(f"--workers {args.workers} is invalid; it must be >= 1")
    threads = getattr(args, "threads", None)
    if threads is not None:
        if args.executor == "slurm":
            raise UsageError("--threads is for the inprocess and local executors (a Slurm job "
                             "uses the CPUs its profile asks for: cpus_per_task)")
        if threads < 1:
            raise UsageError(f"--threads {threads} is invalid; it must be >= 1")
    if args.executor == "slurm" and not args.cluster:
        raise UsageError("--executor slurm needs --cluster PROFILE (a name in slurm/, e.g. local, "
                         "or a profile YAML path)")
    if args.executor != "slurm":
        if args.cluster:
            raise UsageError("--cluster is for --executor slurm")
        if args.wait:
            raise UsageError("--wait is for --executor slurm (the other executors always wait)")
