"""Executing cells: in this process (the default) and in worker subprocesses on this machine
(`--executor local --workers N`). On Slurm, through submitit: bench/slurm/submit.py.

Every path runs a cell through `run_one_locked`: the cell's file lock makes concurrent runs of the
same store (several workers, Slurm jobs, a second command line) never run a cell twice, and the
phase cache's own lock makes cells that share a teacher or dense student wait for one another.
"""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import os
import sys
from dataclasses import replace
from typing import Sequence

import torch

from bench.config import RunConfig
from bench.console import first_line, progress_bar
from bench.exec.cell import RunOptions
from bench.exec.locked import Outcome, pending, run_one_locked
from bench.plugins import load_all, loaded_plugins
from bench.store import ResultStore, StorageFull


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
    print(f"cell {cfg.id} ({cfg.label}, s={cfg.sparsity:g}) failed: {first_line(error, empty='')}",
          file=sys.stderr)


# --- subprocesses on this machine ---------------------------------------------------------------


def run_local(cells: Sequence[RunConfig], store: ResultStore, options: RunOptions,
              force: bool = False, workers: int = 1, threads: int | None = None) -> Outcome:
    """Run the pending cells in `workers` spawned subprocesses, each through `run_one_locked`.

    Spawned (not forked) workers start clean: they import the harness, load the same --plugin
    files/modules as this process, and split this machine's cores between them."""
    outcome = Outcome()
    todo = pending(cells, store, force)
    outcome.skipped.extend(c.id for c in cells if c not in todo)
    if not todo:
        return outcome
    workers = max(1, min(workers, len(todo)))
    threads = threads or max(1, (os.cpu_count() or 1) // workers)
    child_options = replace(options, progress=False)  # one bar here, not one per worker
    pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                                  initializer=_init_worker,
                                  initargs=(tuple(loaded_plugins()), threads))
    bar = None
    if options.progress:
        bar = progress_bar(total=len(todo), desc=f"cells ({workers} workers)", unit="cell")
    try:
        futures = {pool.submit(_run_in_worker, cfg, str(store.root), child_options, force): cfg
                   for cfg in todo}
        for future in cf.as_completed(futures):
            cfg = futures[future]
            try:
                action, error = future.result()
            except StorageFull:
                raise  # a full disk stops the run with one line (bench.cli.guards)
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
    torch.set_num_threads(threads)
    load_all(plugins)


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
    return progress_bar(items, desc="cells", unit="cell")
