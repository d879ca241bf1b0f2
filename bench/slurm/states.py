"""Where each cell of a selection stands (the states `python -m bench.status` prints, and what
`bench.run --executor slurm --wait` waits on): done, queued, running, failed or missing, decided
from the results store, `<results>/submissions.json`, squeue and sacct, the phase jobs' status
files and the cell's metrics file (bench/train/progress.py). The states are described in
bench/status.py."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from bench.console import first_line
from bench.train.progress import Progress, describe, read_progress
from bench.slurm.queue import (LIVE_STATES, QUEUED_STATES, RUNNING_STATES, query_job_states,
                               read_phase_status, read_submissions)
from bench.store import CorruptRecord

STATES = ("done", "queued", "running", "failed", "missing")


@dataclass(frozen=True)
class CellStatus:
    state: str
    job_id: str | None = None
    detail: str = ""


@dataclass(frozen=True)
class CellFacts:
    """What is known of one cell: its record, its latest submission and Slurm's word on its job."""

    record: dict[str, Any] | None  # None: no record, or a corrupt one (`corrupt` says why)
    corrupt: str
    job_id: str | None  # its latest Slurm job, None if never submitted
    submitted: str  # when that job was submitted ("" if never)
    log_dir: str
    live: str | None  # squeue's state (or sacct's while it still says queued or running)
    final: str | None  # sacct's state
    phases: tuple = ()  # states of the phase jobs it waits for (bench/slurm/phases.py)
    progress: Progress | None = None  # from the cell's metrics file, when it has no ok record


def cell_facts(cell: Any, store: Any, submission: dict[str, Any] | None,
               live: dict[str, str], final: dict[str, str]) -> CellFacts:
    try:
        record, corrupt = store.read(cell.id), ""
    except CorruptRecord as exc:
        record, corrupt = None, str(exc)
    submission = submission or {}
    jid = str(submission["job_id"]) if "job_id" in submission else None
    state = live.get(jid) if jid else None
    if state is None and jid and final.get(jid) in LIVE_STATES:
        state = final[jid]  # squeue and sacct disagree for a moment; both are fresh enough
    phases = tuple(read_phase_status(store, p) or {"id": p, "name": p, "state": "unknown"}
                   for p in submission.get("after", ()))
    progress = None
    if record is None or record.get("status") != "ok" or state is not None:
        progress = read_progress(store.work_dir(cell.id))
    return CellFacts(record, corrupt, jid, str(submission.get("submitted", "")),
                     submission.get("log_dir", ""), state, final.get(jid) if jid else None,
                     phases, progress)


# --- the state decision: named predicates, asked in the order of `decide` -------------------------


def _record_predates_job(f: CellFacts) -> bool:
    return f.record is not None and str(f.record.get("started", "")) < f.submitted


def record_is_being_replaced(f: CellFacts) -> bool:
    """A record written before the cell's latest submission is an older result that a queued or
    running job (e.g. --force) is about to replace."""
    return f.live is not None and _record_predates_job(f)


def has_ok_record(f: CellFacts) -> bool:
    return f.record is not None and f.record["status"] == "ok" and not record_is_being_replaced(f)


def failed_phase(f: CellFacts) -> dict | None:
    """A phase job this cell waits for that failed: the cell never runs (Slurm cancels it)."""
    return next((p for p in f.phases if p.get("state") == "failed"), None)


def job_is_queued(f: CellFacts) -> bool:
    return f.live in QUEUED_STATES


def job_is_running(f: CellFacts) -> bool:
    return f.live in RUNNING_STATES


def runs_here(f: CellFacts) -> bool:
    """Not in Slurm's hands, but a live process on this machine is running the cell (its
    metrics file names the process and has no end line for that run)."""
    return f.live is None and f.progress is not None and f.progress.runs_here()


def _progress(f: CellFacts) -> str:
    return describe(f.progress) if f.progress is not None else ""


def record_explains_failure(f: CellFacts) -> bool:
    """A failed record explains the failure unless it predates the job that Slurm then
    cancelled / timed out / lost (that job's state is the newer news)."""
    return f.record is not None and (f.job_id is None or f.final in (None, "FAILED", "COMPLETED")
                                     or not _record_predates_job(f))


def job_ended_without_record(f: CellFacts) -> bool:
    return f.final is not None


def job_is_unknown(f: CellFacts) -> bool:
    """Submitted, but neither squeue nor sacct knows the job (any more)."""
    return bool(f.job_id)


def decide(f: CellFacts) -> CellStatus:
    """The first of these that holds decides: an ok record (done), a failed phase job it waits
    for (failed, blocked), a queued job, a running job, a live process here running it, a failed
    record that explains the failure, a job that ended without a record (failed), a job Slurm no
    longer knows (missing), nothing at all (missing). A running cell's detail is its progress
    (bench/train/progress.py)."""
    jid = f.job_id
    if has_ok_record(f):
        return CellStatus("done", jid, f"test acc {f.record['accuracy']['test']:.4f}")
    phase = failed_phase(f)
    if phase is not None and not job_is_running(f):
        return CellStatus("failed", jid, f"blocked: phase {phase['name']} (job "
                          f"{phase.get('slurm_job_id')}) failed: {phase.get('error', '')}; fix it "
                          "and run bench.run again")
    if job_is_queued(f):
        waiting = [f"{p['name']} ({p.get('state')})" for p in f.phases if p.get("state") != "ok"]
        return CellStatus("queued", jid, f"waiting for phase {', '.join(waiting)}" if waiting
                          else "" if f.live == "PENDING" else f.live)
    if job_is_running(f):
        state = "" if f.live == "RUNNING" else f.live
        return CellStatus("running", jid, ", ".join(x for x in (state, _progress(f)) if x))
    if runs_here(f):
        return CellStatus("running", None, f"pid {f.progress.pid}: {_progress(f)}")
    if record_explains_failure(f):
        err = f.record.get("error") or {}
        return CellStatus("failed", jid,
                          f"{err.get('type', 'Error')}: {first_line(err.get('message'), empty='')}")
    if job_ended_without_record(f):
        if f.final == "COMPLETED":
            return CellStatus("failed", jid,
                              f"job {jid} completed without writing a record (log: {f.log_dir})")
        return CellStatus("failed", jid, f"Slurm job {jid} {f.final}, no record (log: {f.log_dir})")
    if job_is_unknown(f):
        return CellStatus("missing", jid, f"job {jid} is not known to squeue/sacct")
    return CellStatus("missing", None, f"corrupt record: {f.corrupt}" if f.corrupt else "")


def collect(cells: Sequence[Any], store: Any,
            notes: list[str] | None = None) -> dict[str, CellStatus]:
    """cell id -> CellStatus, from the store, the submissions file, squeue and sacct. Problems
    reaching Slurm are appended to `notes`."""
    subs = read_submissions(store)
    mine = {c.id: subs[c.id] for c in cells
            if isinstance(subs.get(c.id), dict) and "job_id" in subs[c.id]}
    jobs = [str(s["job_id"]) for s in mine.values()]
    live, final, problems = query_job_states(jobs) if jobs else ({}, {}, [])
    if notes is not None:
        notes.extend(problems)
    return {c.id: decide(cell_facts(c, store, mine.get(c.id), live, final)) for c in cells}


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
