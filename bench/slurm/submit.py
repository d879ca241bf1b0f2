"""`bench.run --executor slurm`: submit a selection's missing cells as their plan (phase jobs,
then cell arrays; bench/slurm/phases.py) and, with --wait, follow them until they settle. The
executors that run cells on this machine are in bench/exec/dispatch.py; every path runs a cell
through bench.exec.locked.run_one_locked."""
from __future__ import annotations

import sys
import time
from typing import Any, Sequence

from bench.config import RunConfig
from bench.console import progress_bar
from bench.exec.cell import RunOptions
from bench.exec.locked import pending
from bench.plugins import loaded_plugins
from bench.slurm.job import print_submission
from bench.slurm.phases import plan_for, print_plan, submit_plan
from bench.slurm.profile import ClusterProfile
from bench.slurm.queue import live_cells
from bench.slurm.states import collect, counts, format_states
from bench.store import ResultStore



def wait_for_slurm(cells: Sequence[RunConfig], store: ResultStore, *, progress: bool = True,
                   poll_s: float = 3.0, grace_s: float = 60.0) -> dict[str, Any]:
    """Block until none of `cells` is queued or running; returns {cell id: CellStatus}.

    A submitted cell whose job Slurm no longer knows (not in squeue, not yet in sacct) is given
    `grace_s` for accounting to catch up before it counts as settled."""
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
            tally = counts(states)
            if bar is not None:
                bar.n = len(cells) - unsettled
                bar.set_postfix_str(" ".join(f"{k}={v}" for k, v in tally.items() if v),
                                    refresh=False)
                bar.refresh()
            if unsettled == 0:
                return states
            time.sleep(poll_s)
    finally:
        if bar is not None:
            bar.close()


def run_slurm(cells: Sequence[RunConfig], store: ResultStore, options: RunOptions,
              profile: ClusterProfile, *, grid_name: str, force: bool, wait_for_jobs: bool,
              progress: bool, status_cmd: str) -> int:
    """bench.run's --executor slurm: submit the missing cells; with `wait_for_jobs`, block until
    every cell of the selection that is in Slurm's hands has settled. Returns the exit code."""
    todo = pending(cells, store, force)
    in_flight = live_cells(todo, store)
    todo = [c for c in todo if c.id not in in_flight]
    done = len(cells) - len(pending(cells, store, False))
    print(f"grid {grid_name}: {len(cells)} cells: {done} done, {len(in_flight)} already queued or "
          f"running in Slurm, {len(todo)} to submit")
    if todo:
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
