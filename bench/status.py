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
Under the cells, an estimate of the compute left: each unfinished cell that is not running at the
median own time (`cost.seconds_cell`, shared phases excluded) of the finished cells with its
settings but another seed or sparsity.
States come from the results store, `<results>/submissions.json` (cell id -> Slurm job id,
written by `bench.run --executor slurm`), squeue (jobs still queued or running) and sacct
(finished jobs). Without Slurm on PATH only the store is read.
"""
from __future__ import annotations

import argparse
import json
import statistics
from typing import Any, Mapping, Sequence

from bench.cli import OneLineParser, run_command
from bench.cli.arguments import add_common, select_cells
from bench.slurm.states import collect, format_states
from bench.store import ResultStore


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
    own = {}
    for c in cells:
        if states[c.id].state == "done":
            seconds = ((store.read(c.id) or {}).get("cost") or {}).get("seconds_cell")
            if isinstance(seconds, (int, float)):
                own[c.id] = float(seconds)
    estimate = compute_left(cells, {k: v.state for k, v in states.items()}, own)
    if estimate:
        print(estimate)
    for note in notes:
        print(f"note: {note}")
    return 0


def _like(cell: Any) -> str:
    """Cells that cost about the same: equal settings but seed and sparsity (which change what
    is learnt, not how long an epoch takes)."""
    settings = {k: v for k, v in cell.canonical().items() if k not in ("seed", "sparsity")}
    return json.dumps(settings, sort_keys=True, default=str)


def compute_left(cells: Sequence[Any], states: Mapping[str, str],
                 own_seconds: Mapping[str, float]) -> str:
    """One line estimating the compute the unfinished cells need ("" when nothing is left or
    nothing finished to estimate from): each not-running, not-done cell at the median own time
    of its finished like-cells. Shared phases a cell may still compute are not in it."""
    finished: dict[str, list[float]] = {}
    for c in cells:
        if c.id in own_seconds:
            finished.setdefault(_like(c), []).append(own_seconds[c.id])
    todo = [c for c in cells if states[c.id] not in ("done", "running")]
    if not todo or not finished:
        return ""
    known = [statistics.median(finished[_like(c)]) for c in todo if _like(c) in finished]
    total = sum(known)
    amount = f"{total / 3600:.1f} h" if total >= 3600 else f"{total / 60:.0f} min"
    line = (f"left: ≈ {amount} of compute for {len(known)} cell(s) not running, one at a time "
            f"(each at the median own time of its finished like-cells: same settings but seed "
            f"or sparsity; shared phases not yet cached come on top)")
    if len(known) < len(todo):
        line += f"; {len(todo) - len(known)} more with no finished like-cell"
    return line


if __name__ == "__main__":
    raise SystemExit(main())
