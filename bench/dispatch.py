"""Executing cells: in this process (the default), in worker subprocesses on this machine
(`--executor local --workers N`), and on Slurm through submitit (bench/slurm.py).

Every path runs a cell through `run_one_locked`: the cell's file lock makes concurrent runs of the
same store (several workers, Slurm jobs, a second command line) never run a cell twice, and the
phase cache's own lock makes cells that share a teacher or dense student wait for one another.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Sequence

from filelock import FileLock, Timeout

from bench.cell import RunOptions, run_cell
from bench.config import RunConfig
from bench.store import ResultStore, StorageFull


@dataclass
class Outcome:
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already done
    busy: list[str] = field(default_factory=list)  # another process holds the cell
    failed: list[str] = field(default_factory=list)


def pending(cells: Sequence[RunConfig], store: ResultStore, force: bool) -> list[RunConfig]:
    return list(cells) if force else [c for c in cells if not store.is_done(c.id)]


def run_one_locked(cfg: RunConfig, store: ResultStore, options: RunOptions, force: bool,
                   outcome: Outcome, wait: float = 0.0) -> dict | None:
    """Run a cell unless it is done or another process is running it right now."""
    lock_path = store.lock_path(cfg.id)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_path))
    try:
        lock.acquire(timeout=wait)
    except Timeout:
        outcome.busy.append(cfg.id)
        return None
    try:
        if not force and store.is_done(cfg.id):  # finished by another process meanwhile
            outcome.skipped.append(cfg.id)
            return None
        record = run_cell(cfg, store, options)
    finally:
        lock.release()
    (outcome.ran if record["status"] == "ok" else outcome.failed).append(cfg.id)
    return record


def run_inprocess(cells: Sequence[RunConfig], store: ResultStore, options: RunOptions,
                  force: bool = False) -> Outcome:
    outcome = Outcome()
    todo = pending(cells, store, force)
    outcome.skipped.extend(c.id for c in cells if c not in todo)
    bar = _bar(todo, options.progress)
    for cfg in bar:
        if hasattr(bar, "set_description"):
            bar.set_description(f"{cfg.label} {cfg.dataset} s={cfg.sparsity:g} seed={cfg.seed}")
        record = run_one_locked(cfg, store, options, force, outcome)
        if record is not None and record["status"] == "failed":
            _report_failure(cfg, f"{record['error']['type']}: {record['error']['message']}")
    return outcome


def _report_failure(cfg: RunConfig, error: str) -> None:
    first = (error.strip().splitlines() or [""])[0]
    print(f"cell {cfg.id} ({cfg.label}, s={cfg.sparsity:g}) failed: {first}", file=sys.stderr)


# --- subprocesses on this machine ---------------------------------------------------------------


def run_local(cells: Sequence[RunConfig], store: ResultStore, options: RunOptions,
              force: bool = False, workers: int = 1) -> Outcome:
    """Run the pending cells in `workers` spawned subprocesses, each through `run_one_locked`.

    Spawned (not forked) workers start clean: they import the harness, load the same --plugin
    files/modules as this process, and split this machine's cores between them."""
    import concurrent.futures as cf
    import multiprocessing as mp
    from dataclasses import replace

    from bench import catalog

    outcome = Outcome()
    todo = pending(cells, store, force)
    outcome.skipped.extend(c.id for c in cells if c not in todo)
    if not todo:
        return outcome
    workers = max(1, min(workers, len(todo)))
    threads = max(1, (os.cpu_count() or 1) // workers)
    child_options = replace(options, progress=False)  # one bar here, not one per worker
    pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                                  initializer=_init_worker,
                                  initargs=(tuple(catalog.loaded_plugins()), threads))
    bar = None
    if options.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc=f"cells ({workers} workers)", unit="cell",
                   dynamic_ncols=True)
    try:
        futures = {pool.submit(_run_in_worker, cfg, str(store.root), child_options, force): cfg
                   for cfg in todo}
        for future in cf.as_completed(futures):
            cfg = futures[future]
            try:
                action, error = future.result()
            except StorageFull:
                raise  # a full disk stops the run with one line (bench.guards)
            except Exception as exc:  # the worker died (killed, out of memory): no record
                action, error = "failed", f"worker process ended: {type(exc).__name__}: {exc}"
            getattr(outcome, action).append(cfg.id)  # ran, failed, skipped or busy
            if action == "failed":
                _report_failure(cfg, error)
            if bar is not None:
                bar.update(1)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        if bar is not None:
            bar.close()
    pool.shutdown(wait=True)
    return outcome


def _init_worker(plugins: tuple[str, ...], threads: int) -> None:
    import torch

    from bench import catalog

    torch.set_num_threads(threads)
    for plugin in plugins:
        catalog.load_plugin(plugin)
    catalog.load_builtins()


def _run_in_worker(cfg: RunConfig, results: str, options: RunOptions,
                   force: bool) -> tuple[str, str]:
    """(action, error): action is ran, failed, skipped or busy; error the failure's message."""
    outcome = Outcome()
    record = run_one_locked(cfg, ResultStore(results), options, force, outcome)
    if record is None:
        return ("skipped" if outcome.skipped else "busy"), ""
    if record["status"] != "ok":
        return "failed", f"{record['error']['type']}: {record['error']['message']}"
    return "ran", ""


def _bar(items, enabled: bool):
    if not enabled or not items:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc="cells", unit="cell", dynamic_ncols=True)


def check_executor_args(args) -> None:
    """bench.run's executor options must fit together; bad input is a UsageError (exit 2)."""
    from bench.registry import UsageError

    if args.workers is not None:
        if args.executor != "local":
            raise UsageError(f"--workers is for --executor local (not {args.executor})")
        if args.workers < 1:
            raise UsageError(f"--workers {args.workers} is invalid; it must be >= 1")
    if args.executor == "slurm" and not args.cluster:
        raise UsageError("--executor slurm needs --cluster PROFILE (a name in slurm/, e.g. local, "
                         "or a profile YAML path)")
    if args.executor != "slurm":
        if args.cluster:
            raise UsageError("--cluster is for --executor slurm")
        if args.wait:
            raise UsageError("--wait is for --executor slurm (the other executors always wait)")
