"""What the cluster says and what was submitted: MaxArraySize and array chunks, partitions,
job states from squeue and sacct, `<results>/submissions.json` (cell id -> Slurm job id) and
`<results>/phases/<phase job id>.json` (each phase job's state)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from filelock import FileLock

from bench.registry import UsageError
from bench.slurm.profile import ClusterProfile, slurm_parameters
from bench.store import atomic_write_bytes

if TYPE_CHECKING:
    from bench.config import RunConfig
    from bench.slurm.plan import PhaseJob
    from bench.store import ResultStore

DEFAULT_MAX_ARRAY_SIZE = 1000
SUBMISSIONS_FILE = "submissions.json"
JOB_LOG_DIR = "slurm"

# Slurm job states, as squeue and sacct print them.
QUEUED_STATES = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING",
                 "RESV_DEL_HOLD", "SUSPENDED", "STOPPED", "RESIZING", "SPECIAL_EXIT"}
RUNNING_STATES = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING"}
LIVE_STATES = QUEUED_STATES | RUNNING_STATES


# --- cluster facts --------------------------------------------------------------------------------


def _run(cmd: Sequence[str], timeout: float = 30) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None


def require_sbatch() -> None:
    if shutil.which("sbatch") is None:
        raise UsageError("--executor slurm: 'sbatch' is not on PATH (no Slurm client here); "
                         "use --executor local or inprocess, or run on a Slurm login node")


def cluster_max_array_size(profile: ClusterProfile) -> tuple[int, str]:
    """(MaxArraySize, where it came from): scontrol, else the profile, else the default."""
    res = _run(["scontrol", "show", "config"]) if shutil.which("scontrol") else None
    if res is not None and res.returncode == 0:
        m = re.search(r"^\s*MaxArraySize\s*=\s*(\d+)", res.stdout, re.M)
        if m:
            return int(m.group(1)), "scontrol show config"
    if profile.max_array_size is not None:
        return profile.max_array_size, f"profile {profile.name}"
    return DEFAULT_MAX_ARRAY_SIZE, "default"


def array_chunk_size(max_array_size: int) -> int:
    """Tasks per array: array indices run 0..n-1 and must stay below MaxArraySize, so an array
    of MaxArraySize - 1 tasks is safely inside the limit (MaxArraySize 0 or 1: single jobs)."""
    return max(1, max_array_size - 1)


def chunked(items: Sequence[Any], size: int) -> list[list[Any]]:
    return [list(items[i:i + size]) for i in range(0, len(items), size)]


def check_partition(profile: ClusterProfile) -> None:
    """A partition the cluster does not have is bad input: say so before submitting."""
    if not profile.partition or shutil.which("sinfo") is None:
        return
    res = _run(["sinfo", "-h", "-o", "%R"])
    if res is None or res.returncode != 0:
        return
    names = sorted(set(res.stdout.split()))
    if names and profile.partition not in names:
        raise UsageError(f"{profile.source}: key 'partition': {profile.partition!r} is not a "
                         f"partition of this cluster; valid: {', '.join(names)}")


def describe(profile: ClusterProfile, n_cells: int) -> str:
    """What a submission would ask for (for --dry-run)."""
    max_size, origin = cluster_max_array_size(profile)
    size = array_chunk_size(max_size)
    n_arrays = -(-n_cells // size) if n_cells else 0
    params = " ".join(f"{k}={v}" for k, v in slurm_parameters(profile).items())
    return (f"slurm profile {profile.name} ({profile.source}): {params}\n"
            f"would submit {n_cells} cells as {n_arrays} job array(s) of at most {size} tasks "
            f"(MaxArraySize {max_size} from {origin})")


# --- job states ----------------------------------------------------------------------------------


def _expand_job_ids(text: str) -> list[str]:
    """'12_[1-3,7%2]' -> ['12_1', '12_2', '12_3', '12_7']; '12_4' and '15' stay as they are."""
    m = re.fullmatch(r"(\d+)_\[([0-9,\-]+)(?:%\d+)?\]", text)
    if not m:
        return [text]
    out = []
    for part in m.group(2).split(","):
        lo, _, hi = part.partition("-")
        out += [f"{m.group(1)}_{i}" for i in range(int(lo), int(hi or lo) + 1)]
    return out


def _base_ids(job_ids: Iterable[str]) -> list[str]:
    return sorted({j.split("_")[0] for j in job_ids})


def query_job_states(job_ids: Iterable[str]) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """(live, final, notes): squeue's states of jobs still queued or running, sacct's states of
    the others. Keys are job ids as submitit writes them ('123_4' for array task 4)."""
    ids = _base_ids(job_ids)
    live: dict[str, str] = {}
    final: dict[str, str] = {}
    notes: list[str] = []
    if not ids:
        return live, final, notes
    if shutil.which("squeue") is None:
        return live, final, ["squeue is not on PATH: Slurm job states are unknown"]
    res = _run(["squeue", "-h", "-r", "-j", ",".join(ids), "-o", "%i|%T"])
    if res is None or (res.returncode != 0 and "Invalid job id" not in res.stderr):
        notes.append(f"squeue failed: {(res.stderr.strip() if res else 'timed out') or 'error'}")
    else:
        for line in res.stdout.splitlines():
            jid, _, state = line.strip().partition("|")
            for j in _expand_job_ids(jid):
                live[j] = state.split()[0] if state else "UNKNOWN"
    if shutil.which("sacct") is None:
        notes.append("sacct is not on PATH: finished jobs' states are unknown")
        return live, final, notes
    res = _run(["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", ",".join(ids)])
    if res is None or res.returncode != 0:
        notes.append(f"sacct failed: {(res.stderr.strip() if res else 'timed out') or 'error'}")
        return live, final, notes
    for line in res.stdout.splitlines():
        jid, _, state = line.strip().partition("|")
        for j in _expand_job_ids(jid):
            final[j] = state.split()[0] if state else "UNKNOWN"  # "CANCELLED by 0" -> CANCELLED
    return live, final, notes


# --- the submissions file ------------------------------------------------------------------------


def submissions_path(store: ResultStore) -> Path:
    return store.root / SUBMISSIONS_FILE


def read_submissions(store: ResultStore) -> dict[str, dict[str, Any]]:
    """cell id -> {"job_id", "submitted", "log_dir", ...}; empty when nothing was submitted."""
    path = submissions_path(store)
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    cells = data.get("cells") if isinstance(data, dict) else None
    return cells if isinstance(cells, dict) else {}


def record_submissions(store: ResultStore, entries: Mapping[str, dict[str, Any]]) -> None:
    """Merge `entries` into the submissions file: locked read-modify-write, atomic replace."""
    lock = store.root / "locks" / "submissions.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock)):
        cells = read_submissions(store)
        cells.update(entries)
        atomic_write_bytes(submissions_path(store),
                           json.dumps({"schema": 1, "cells": cells}, indent=1,
                                      sort_keys=True).encode())


def live_cells(cells: Sequence[RunConfig], store: ResultStore) -> set[str]:
    """Cells whose recorded job is still queued or running (not to be submitted again)."""
    subs = read_submissions(store)
    ids = {c.id: subs[c.id]["job_id"] for c in cells if c.id in subs}
    if not ids:
        return set()
    live, _, _ = query_job_states(ids.values())
    return {cid for cid, jid in ids.items() if live.get(jid) in LIVE_STATES}


# --- the phase jobs' state files (bench/slurm/phases.py writes them, bench.status reads them) ---


PHASES_DIR = "phases"


def phase_status_path(store: ResultStore, job_id: str) -> Path:
    return store.root / PHASES_DIR / f"{job_id}.json"


def write_phase_status(store: ResultStore, job: PhaseJob, state: str, **fields: Any) -> None:
    path = phase_status_path(store, job.id)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"id": job.id, "name": job.name, "cell": job.cell.id, "label": job.cell.label,
            "state": state, "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "slurm_job_id": os.environ.get("SLURM_JOB_ID"), **fields}
    atomic_write_bytes(path, json.dumps(body, indent=1).encode())


def read_phase_status(store: ResultStore, job_id: str) -> dict[str, Any] | None:
    try:
        return json.loads(phase_status_path(store, job_id).read_text())
    except (OSError, ValueError):
        return None
