"""`python -m bench.status`: where each cell of a grid stands.

    python -m bench.status --grid quick [--results DIR] [--methods ... the selection of bench.run]

Per cell, one of:
    done     an ok record is in the store
    queued   its Slurm job waits (pending, or requeued after preemption / a time limit)
    running  its Slurm job runs, or a live process on this machine runs it (bench.run's
             in-process or local executor); with the phase, epoch / epochs, the latest
             validation accuracy and the time left in the phase at the measured epoch time,
             read from the cell's `<results>/work/<cell id>/metrics.jsonl` (bench/train/progress.py),
             so a job on another node shows its progress through the shared results folder
    failed   a failed record (first line of the error), or its Slurm job ended without a record
             (cancelled, out of memory, node failure, ...: sacct's state)
    missing  never run nor submitted (or Slurm no longer knows the job)
Under the cells, an estimate of the compute left: every cell except the done and running ones, and
every shared phase they need that is not cached yet, priced by the cost model's work at the speed
the finished cells of the same model and dataset reached.
States come from the results store, `<results>/submissions.json` (cell id -> Slurm job id,
written by `bench.run --executor slurm`), squeue (jobs still queued or running) and sacct
(finished jobs). Without Slurm on PATH only the store is read.
"""
from __future__ import annotations

import argparse
from typing import Any, Mapping, Sequence

from bench.cli import OneLineParser, run_command
from bench.cli.arguments import add_common, select_cells
from bench.slurm.states import collect, format_states
from bench.store import CorruptRecord, ResultStore


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m bench.status", description=__doc__.split("\n\n")[0])
    add_common(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(_main, build_parser().parse_args(argv))


def _main(args: argparse.Namespace) -> int:
    grid, cells = select_cells(args)
    store = ResultStore(args.results)
    notes: list[str] = []
    states = collect(cells, store, notes)
    print(format_states(grid.name, cells, states, store))
    print(estimate_line(cells, states, store), end="")
    for note in notes:
        print(f"note: {note}")
    return 0


def estimate_line(cells: Sequence[Any], states: Mapping[str, Any], store: ResultStore) -> str:
    """The `left:` line (with its newline) for the selection, or "" (see compute_left)."""
    from bench.slurm.plan import make_plan
    from bench.store.cache import PhaseCache

    state = {k: v.state for k, v in states.items()}
    own: dict[str, float] = {}
    for c in cells:
        if state[c.id] != "done":
            continue
        try:
            seconds = ((store.read(c.id) or {}).get("cost") or {}).get("seconds_cell")
        except CorruptRecord:  # damaged since `collect` read it: its state says so next time
            continue
        if isinstance(seconds, (int, float)) and seconds > 0:
            own[c.id] = float(seconds)
    done = {c.id for c in cells if state[c.id] == "done"}

    def is_done(cell_id: str) -> bool:  # a matched cell may be outside the selection
        return cell_id in done or store.is_done(cell_id)

    work = make_plan(cells, lambda key: True, is_done=is_done).cell_work
    todo = [c for c in cells if state[c.id] not in ("done", "running")]
    pending = make_plan(todo, PhaseCache(store.cache_dir).plan_keys().__contains__,
                        is_done=is_done).phases
    line = compute_left(cells, state, own, work, [(job.cell, job.work) for job in pending])
    return line + "\n" if line else ""


def compute_left(cells: Sequence[Any], states: Mapping[str, str],
                 own_seconds: Mapping[str, float], work: Mapping[str, float],
                 shared: Sequence[tuple[Any, float]] = ()) -> str:
    """One line estimating the compute still needed ("" when no cell is left or none has
    finished): every cell neither done nor running, and every shared phase not yet cached
    (`shared`: the cell that would compute it and its work), priced by the cost model's work
    (bench/plan/estimate.py) at the seconds per unit of work that the finished cells of the
    same model and dataset took, their own seconds (`cost.seconds_cell`) over their own work.
    A cell's running time is in its own line already."""
    def kind(cell: Any) -> tuple[str, str]:
        return (cell.model, cell.dataset)

    spent: dict[tuple, list[float]] = {}
    for c in cells:
        if c.id in own_seconds and work.get(c.id, 0) > 0:
            totals = spent.setdefault(kind(c), [0.0, 0.0])
            totals[0] += own_seconds[c.id]
            totals[1] += work[c.id]
    todo = [c for c in cells if states[c.id] not in ("done", "running")]
    if not todo or not own_seconds:
        return ""
    rate = {k: seconds / units for k, (seconds, units) in spent.items()}
    jobs = [(c, work.get(c.id, 0.0)) for c in todo] + list(shared)
    priced = [units * rate[kind(c)] for c, units in jobs if kind(c) in rate]
    unpriced = len(jobs) - len(priced)
    head = f"left: {len(todo)} cell(s) not running"
    if shared:
        head += f" and {len(shared)} shared phase(s) not yet cached"
    if not priced:
        return (head + ": none of a model and dataset with a finished cell to price them by")
    total = sum(priced)
    amount = (f"{total / 3600:.1f} h" if total >= 3600 else
              f"{total / 60:.0f} min" if total >= 60 else "< 1 min")
    line = (f"{head}: ≈ {amount} of compute one job at a time (the cost model's work at the "
            f"speed the finished cells of the same model and dataset reached)")
    if unpriced:
        line += f"; {unpriced} of them of a model and dataset with no finished cell, not priced"
    return line


if __name__ == "__main__":
    raise SystemExit(main())
