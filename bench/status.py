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
States come from the results store, `<results>/submissions.json` (cell id -> Slurm job id,
written by `bench.run --executor slurm`), squeue (jobs still queued or running) and sacct
(finished jobs). Without Slurm on PATH only the store is read.
"""
from __future__ import annotations

import argparse
from typing import Sequence

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
    for note in notes:
        print(f"note: {note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
