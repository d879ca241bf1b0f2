"""`python -m bench.status`: where each cell of a grid stands.

    python -m bench.status --grid quick [--results DIR] [--methods ... the selection of bench.run]

Per cell, one of:
    done     an ok record is in the store
    queued   its Slurm job waits (pending, or requeued after preemption / a time limit)
    running  its Slurm job runs
    failed   a failed record (first line of the error), or its Slurm job ended without a record
             (cancelled, out of memory, node failure, ...: sacct's state)
    missing  never run nor submitted (or Slurm no longer knows the job)
States come from the results store, `<results>/submissions.json` (cell id -> Slurm job id,
written by `bench.run --executor slurm`), squeue (jobs still queued or running) and sacct
(finished jobs). Without Slurm on PATH only the store is read.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence


STATES = ("done", "queued", "running", "failed", "missing")


@dataclass(frozen=True)
class CellStatus:
    state: str
    job_id: str | None = None
    detail: str = ""


def _first_line(text: Any) -> str:
    lines = str(text or "").strip().splitlines()
    return lines[0] if lines else ""


def collect(cells: Sequence[Any], store: Any,
            notes: list[str] | None = None) -> dict[str, CellStatus]:
    """cell id -> CellStatus, from the store, the submissions file, squeue and sacct. Problems
    reaching Slurm are appended to `notes`."""
    from bench.slurm import (QUEUED_STATES, RUNNING_STATES, query_job_states,
                             read_submissions)
    from bench.store import CorruptRecord

    subs = read_submissions(store)
    jobs = {c.id: str(subs[c.id]["job_id"]) for c in cells
            if isinstance(subs.get(c.id), dict) and "job_id" in subs[c.id]}
    live, final, problems = query_job_states(jobs.values()) if jobs else ({}, {}, [])
    if notes is not None:
        notes.extend(problems)
    out: dict[str, CellStatus] = {}
    for cell in cells:
        jid = jobs.get(cell.id)
        try:
            record = store.read(cell.id)
            corrupt = ""
        except CorruptRecord as exc:
            record, corrupt = None, str(exc)
        state = live.get(jid) if jid else None
        if state is None and jid and final.get(jid) in QUEUED_STATES | RUNNING_STATES:
            state = final[jid]  # squeue and sacct disagree for a moment; both are fresh enough
        # A record written before the cell's latest submission is an older result that a
        # queued or running job (e.g. --force) is about to replace.
        rerun = state is not None and record is not None and \
            str(record.get("started", "")) < str(subs[cell.id].get("submitted", ""))
        if record is not None and record["status"] == "ok" and not rerun:
            out[cell.id] = CellStatus("done", jid, f"test acc {record['accuracy']['test']:.4f}")
            continue
        if state in QUEUED_STATES:
            out[cell.id] = CellStatus("queued", jid, "" if state == "PENDING" else state)
            continue
        if state in RUNNING_STATES:
            out[cell.id] = CellStatus("running", jid, "" if state == "RUNNING" else state)
            continue
        # A failed record explains the failure unless it predates the job that Slurm then
        # cancelled / timed out / lost (that job's state is the newer news).
        explains = record is not None and (
            jid is None or final.get(jid) in (None, "FAILED", "COMPLETED")
            or str(record.get("started", "")) >= str(subs[cell.id].get("submitted", "")))
        if explains:
            err = record.get("error") or {}
            message = _first_line(err.get("message"))
            out[cell.id] = CellStatus("failed", jid, f"{err.get('type', 'Error')}: {message}")
            continue
        if jid and jid in final:
            slurm_state = final[jid]
            log = subs[cell.id].get("log_dir", "")
            if slurm_state == "COMPLETED":
                detail = f"job {jid} completed without writing a record (log: {log})"
            else:
                detail = f"Slurm job {jid} {slurm_state}, no record (log: {log})"
            out[cell.id] = CellStatus("failed", jid, detail)
            continue
        if jid:
            out[cell.id] = CellStatus("missing", jid, f"job {jid} is not known to squeue/sacct")
            continue
        out[cell.id] = CellStatus("missing", None, f"corrupt record: {corrupt}" if corrupt else "")
    return out


def counts(states: dict[str, CellStatus]) -> dict[str, int]:
    out = {s: 0 for s in STATES}
    for st in states.values():
        out[st.state] += 1
    return out


def format_states(grid_name: str, cells: Sequence[Any], states: dict[str, CellStatus],
                  store: Any) -> str:
    lines = [f"grid {grid_name}: {len(cells)} cells, results in {store.root}"]
    for c in cells:
        st = states[c.id]
        info = ": ".join(x for x in (f"job {st.job_id}" if st.job_id else "", st.detail) if x)
        lines.append(f"  {c.id}  {st.state:7}  {c.label:28} {c.dataset:12} s={c.sparsity:<6g} "
                     f"seed={c.seed}  {info}".rstrip())
    n = counts(states)
    lines.append("summary: " + ", ".join(f"{n[s]} {s}" for s in STATES))
    return "\n".join(lines)


def build_parser():
    from bench.cli import OneLineParser
    from bench.run import add_common

    p = OneLineParser(prog="python -m bench.status", description=__doc__.split("\n\n")[0])
    add_common(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from bench.cli import run_command

    return run_command(_main, build_parser().parse_args(argv))


def _main(args) -> int:
    from bench.run import select_cells
    from bench.store import ResultStore

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
