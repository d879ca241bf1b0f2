"""Executing cells: in this process (the default), in worker subprocesses on this machine
(`--executor local --workers N`), and on Slurm through submitit (`run_slurm`; the profiles, the job
and the queue queries are in bench/slurm/).

Every path runs a cell through `run_one_locked`: the cell's file lock makes concurrent runs of the
same store (several workers, Slurm jobs, a second command line) never run a cell twice, and the
phase cache's own lock makes cells that share a teacher or dense student wait for one another.
"""
from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING, Any, Sequence

from bench.exec.cell import RunOptions
from bench.config import RunConfig
from bench.console import first_line, progress_bar
from bench.exec.locked import Outcome, pending, run_one_locked
from bench.store import ResultStore, StorageFull

if TYPE_CHECKING:
    from bench.slurm.profile import ClusterProfile


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
    import concurrent.futures as cf
    import multiprocessing as mp
    from dataclasses import replace

    from bench.plugins import loaded_plugins

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
    import torch

    from bench.plugins import load_builtins, load_plugin

    torch.set_num_threads(threads)
    for plugin in plugins:
        load_plugin(plugin)
    load_builtins()


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


# --- Slurm ----------------------------------------------------------------------------------------


def wait_for_slurm(cells: Sequence[RunConfig], store: ResultStore, *, progress: bool = True,
                   poll_s: float = 3.0, grace_s: float = 60.0) -> dict[str, Any]:
    """Block until none of `cells` is queued or running; returns {cell id: CellStatus}.

    A submitted cell whose job Slurm no longer knows (not in squeue, not yet in sacct) is given
    `grace_s` for accounting to catch up before it counts as settled."""
    from bench.status import collect
    from bench.status import counts as count_states

    first_unknown: dict[str, float] = {}
    bar = progress_bar(total=len(cells), desc="slurm", unit="cell") if progress else None
    try:
        while True:
            states = collect(cells, store)
            now = time.monotonic()
            unsettled = 0
            for cid, st in states.items():
                if st.state in ("queued", "running"):
                    unsettled += 1
                elif st.state == "missing" and st.job_id:
                    first_unknown.setdefault(cid, now)
                    if now - first_unknown[cid] < grace_s:
                        unsettled += 1
            counts = count_states(states)
            if bar is not None:
                bar.n = len(cells) - unsettled
                bar.set_postfix_str(" ".join(f"{k}={v}" for k, v in counts.items() if v),
                                    refresh=False)
                bar.refresh()
            if unsettled == 0:
                return states
            time.sleep(poll_s)
    finally:
        if bar is not None:
            bar.close()


def run_slurm(cells: Sequence[RunConfig], store: ResultStore, options: RunOptions,
              profile: "ClusterProfile", *, grid_name: str, force: bool, wait_for_jobs: bool,
              progress: bool, status_cmd: str) -> int:
    """bench.run's --executor slurm: submit the missing cells; with `wait_for_jobs`, block until
    every cell of the selection that is in Slurm's hands has settled. Returns the exit code."""
    from bench.plugins import loaded_plugins
    from bench.slurm.job import print_submission
    from bench.slurm.queue import live_cells
    from bench.status import collect, format_states

    todo = pending(cells, store, force)
    in_flight = live_cells(todo, store)
    todo = [c for c in todo if c.id not in in_flight]
    done = len(cells) - len(pending(cells, store, False))
    print(f"grid {grid_name}: {len(cells)} cells: {done} done, {len(in_flight)} already queued or "
          f"running in Slurm, {len(todo)} to submit")
    if todo:
        from bench.slurm.phases import plan_for, print_plan, submit_plan

        plan = plan_for(todo, store, options)
        print_plan(plan)
        phase_ids, sub = submit_plan(plan, store, options, profile, force=force, grid=grid_name,
                                     plugins=loaded_plugins())
        if phase_ids:
            print("phase jobs: " + ", ".join(f"{p} -> Slurm job {j}" for p, j in phase_ids.items()))
        print_submission(sub, profile, status_cmd, store.root)
    if not wait_for_jobs:
        return 0
    todo_ids = {c.id for c in todo}
    waiting = [c for c in cells if c.id in in_flight or c.id in todo_ids]
    t0 = time.perf_counter()
    try:
        if waiting:
            wait_for_slurm(waiting, store, progress=progress)
    except KeyboardInterrupt:
        print(f"stopped waiting; the jobs keep running. Follow with: {status_cmd}",
              file=sys.stderr)
        return 130
    states = collect(cells, store)
    print(format_states(grid_name, cells, states, store))
    print(f"waited {time.perf_counter() - t0:.1f}s for {len(waiting)} cells")
    return 1 if any(s.state == "failed" for s in states.values()) else 0


def check_executor_args(args) -> None:
    """bench.run's executor options must fit together; bad input is a UsageError (exit 2)."""
    from bench.registry import UsageError

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
