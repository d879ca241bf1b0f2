"""Slurm sweeps through submitit: cluster profiles, job arrays, the per-cell job, job states.

    python -m bench.run --grid quick --executor slurm --cluster local [--wait]
    python -m bench.status --grid quick

How a sweep runs:
  * The grid's missing cells (no ok record, and no job of theirs still queued or running) are
    submitted as Slurm job arrays, one array task per cell. An array holds at most
    MaxArraySize - 1 tasks (`scontrol show config`; else the profile's `max_array_size`, else
    1000), so bigger sweeps become several arrays; `array_parallelism` caps the running tasks of
    each array.
  * `<results>/submissions.json` maps cell id -> Slurm job id (written atomically);
    `bench.status` joins it with the results store, squeue and sacct. Job logs go to
    `<results>/slurm/<job id>/`. The results folder must be on a file system the nodes share.
  * Each task runs `CellJob`: it loads the same --plugin files/modules as the submitter, takes
    the cell's lock and calls `run_cell`, which writes the cell's record. A cell that raises
    writes a failed record (with its traceback) and its job ends FAILED; the other cells go on.
  * Cells that need the same cached phase (a teacher, a dense student) are synchronised by the
    phase cache's file lock (bench/cache.py): the first job trains it, the others wait on the
    lock and then read it, so no phase is trained twice, however many tasks run at once.
  * Preemption and time limits: Slurm sends USR2 `signal_delay_s` before the limit (or on
    preemption); `CellJob` is a `submitit.helpers.Checkpointable`, so submitit requeues the same
    cell (at most `max_requeues` times for time limits). The requeued job calls `run_cell`
    again, which resumes each training phase from its last epoch checkpoint in
    `<results>/work/<cell id>/`, not from scratch; a shared phase that was being computed inside
    the cache lock resumes from its own epoch checkpoints in the cache's scratch folder.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from submitit.helpers import Checkpointable

from bench.cell import RunOptions
from bench.config import RunConfig
from bench.registry import UsageError
from bench.store import ResultStore, atomic_write_bytes

PROFILE_DIR = Path(__file__).resolve().parent.parent / "slurm"
DEFAULT_MAX_ARRAY_SIZE = 1000
SUBMISSIONS_FILE = "submissions.json"
JOB_LOG_DIR = "slurm"

# Slurm job states, as squeue and sacct print them.
QUEUED_STATES = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING",
                 "RESV_DEL_HOLD", "SUSPENDED", "STOPPED", "RESIZING", "SPECIAL_EXIT"}
RUNNING_STATES = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING"}
LIVE_STATES = QUEUED_STATES | RUNNING_STATES


# --- cluster profiles ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ClusterProfile:
    """A YAML file in slurm/: what each cell's job asks Slurm for."""

    name: str
    partition: str | None = None  # None: the cluster's default partition
    cpus_per_task: int = 1
    gpus_per_task: int = 0
    mem_gb: float | None = None  # None: the partition's default
    time_min: int = 60
    array_parallelism: int = 256  # running tasks per array at most
    max_array_size: int | None = None  # used only when `scontrol show config` cannot tell
    signal_delay_s: int = 90  # USR2 this long before the time limit: checkpoint and requeue
    max_requeues: int = 3  # requeues after a time limit (preemptions do not count)
    job_name: str = "prunebench"
    sbatch: Mapping[str, Any] = field(default_factory=dict)  # extra #SBATCH options
    setup: tuple[str, ...] = ()  # shell lines run before the job (module load, conda activate)
    python: str | None = None  # the job's python command; None: this interpreter
    source: str = ""  # the file it came from


PROFILE_KEYS = tuple(f.name for f in dataclasses.fields(ClusterProfile)
                     if f.name not in ("name", "source"))
# sbatch options the profile sets through its own keys (or that the harness owns).
_OWNED_SBATCH = {"partition": "partition", "p": "partition", "time": "time_min",
                 "t": "time_min", "cpus-per-task": "cpus_per_task", "c": "cpus_per_task",
                 "gpus-per-task": "gpus_per_task", "mem": "mem_gb", "job-name": "job_name",
                 "J": "job_name", "signal": "signal_delay_s", "array": None, "a": None,
                 "output": None, "o": None, "error": None, "e": None}


def profile_names() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def load_profile(spec: str) -> ClusterProfile:
    """`spec` is a profile name (slurm/<name>.yaml) or a path to a YAML file."""
    from bench.cli import read_yaml

    path = Path(spec)
    if not (spec.endswith((".yaml", ".yml")) or os.sep in spec):
        path = PROFILE_DIR / f"{spec}.yaml"
        if not path.is_file():
            raise UsageError(f"unknown cluster profile {spec!r}; valid: "
                             f"{', '.join(profile_names()) or '(none in slurm/)'}, or a YAML path")
    elif not path.is_file():
        raise UsageError(f"cluster profile file {spec!r} does not exist")
    return profile_from_mapping(read_yaml(path) or {}, str(path), name=path.stem)


def profile_from_mapping(data: Any, source: str, name: str = "profile") -> ClusterProfile:
    """Validate a parsed profile; every error names the bad key."""
    if not isinstance(data, Mapping):
        raise UsageError(f"{source}: a cluster profile must be a mapping of "
                         f"{', '.join(PROFILE_KEYS)}")
    for key in data:
        if key not in PROFILE_KEYS:
            raise UsageError(f"{source}: unknown key {key!r}; valid: {', '.join(PROFILE_KEYS)}")

    def bad(key: str, what: str) -> UsageError:
        return UsageError(f"{source}: key {key!r} must be {what} (got {data[key]!r})")

    def integer(key: str, minimum: int) -> None:
        v = data.get(key)
        if key in data and (isinstance(v, bool) or not isinstance(v, int) or v < minimum):
            raise bad(key, f"an integer >= {minimum}")

    for key, minimum in (("cpus_per_task", 1), ("gpus_per_task", 0), ("time_min", 1),
                         ("array_parallelism", 1), ("max_array_size", 1),
                         ("signal_delay_s", 0), ("max_requeues", 0)):
        integer(key, minimum)
    mem = data.get("mem_gb")
    if mem is not None and (isinstance(mem, bool) or not isinstance(mem, (int, float)) or mem <= 0):
        raise bad("mem_gb", "a number of GB > 0")
    for key in ("partition", "job_name", "python"):
        if data.get(key) is not None and (not isinstance(data[key], str) or not data[key].strip()):
            raise bad(key, "a non-empty string")
    setup = data.get("setup") or []
    if isinstance(setup, str):
        setup = [setup]
    if not isinstance(setup, list) or not all(isinstance(s, str) for s in setup):
        raise bad("setup", "a list of shell lines")
    extra = data.get("sbatch") or {}
    if not isinstance(extra, Mapping):
        raise bad("sbatch", "a mapping of sbatch option -> value, e.g. {account: myproject}")
    sbatch: dict[str, Any] = {}
    for opt, value in extra.items():
        flag = str(opt).lstrip("-")
        if flag in _OWNED_SBATCH:
            own = _OWNED_SBATCH[flag]
            raise UsageError(f"{source}: key 'sbatch' sets {opt!r}, which "
                             + (f"the profile key {own!r} sets" if own else "the harness sets"))
        if isinstance(value, bool):
            if value:
                sbatch[flag] = True
            continue
        if not isinstance(value, (str, int, float)):
            raise UsageError(f"{source}: key 'sbatch': option {opt!r} must have a string or "
                             f"number value (got {value!r})")
        sbatch[flag] = value
    profile = ClusterProfile(
        name=name, source=source, sbatch=sbatch, setup=tuple(setup),
        **{k: data[k] for k in PROFILE_KEYS if k in data and k not in ("sbatch", "setup")
           and data[k] is not None})
    if profile.signal_delay_s >= profile.time_min * 60:
        raise UsageError(f"{source}: key 'signal_delay_s' ({profile.signal_delay_s}) must be "
                         f"shorter than time_min ({profile.time_min} min)")
    return profile


def slurm_parameters(profile: ClusterProfile) -> dict[str, Any]:
    """submitit.SlurmExecutor.update_parameters arguments for a profile (sbatch names)."""
    params: dict[str, Any] = {
        "job_name": profile.job_name,
        "time": profile.time_min,
        "cpus_per_task": profile.cpus_per_task,
        "array_parallelism": profile.array_parallelism,
        "signal_delay_s": profile.signal_delay_s,
    }
    if profile.partition:
        params["partition"] = profile.partition
    if profile.gpus_per_task:
        params["gpus_per_task"] = profile.gpus_per_task
    if profile.mem_gb is not None:
        mem = float(profile.mem_gb)
        params["mem"] = f"{int(mem)}GB" if mem == int(mem) else f"{int(mem * 1024)}MB"
    if profile.setup:
        params["setup"] = list(profile.setup)
    if profile.sbatch:
        params["additional_parameters"] = dict(profile.sbatch)
    return params


def sbatch_text(profile: ClusterProfile, n_tasks: int, folder: Path,
                command: str = "python -u -m submitit.core._submit FOLDER") -> str:
    """The sbatch file submitit writes for an array of `n_tasks` cells (no submission)."""
    from submitit.slurm.slurm import _make_sbatch_string

    return _make_sbatch_string(command=command, folder=folder,
                               map_count=n_tasks if n_tasks > 1 else None,
                               **slurm_parameters(profile))


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
    from filelock import FileLock

    lock = store.root / "locks" / "submissions.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock)):
        cells = read_submissions(store)
        cells.update(entries)
        atomic_write_bytes(submissions_path(store),
                           json.dumps({"schema": 1, "cells": cells}, indent=1,
                                      sort_keys=True).encode())


# --- the job --------------------------------------------------------------------------------------


class CellFailed(RuntimeError):
    """Raised in the job when its cell wrote a failed record, so Slurm shows the job FAILED."""


class CellJob(Checkpointable):
    """One cell as a Slurm job. On preemption or a time limit submitit calls `checkpoint()`,
    which requeues this same object; the rerun resumes from the cell's epoch checkpoints."""

    def __init__(self, config: RunConfig, results: str, options: RunOptions,
                 plugins: Sequence[str] = (), force: bool = False, lock_wait_s: float = 300.0):
        self.config = config
        self.results = str(results)
        self.options = options
        self.plugins = tuple(plugins)
        self.force = force
        self.lock_wait_s = lock_wait_s

    def __call__(self) -> dict[str, Any]:
        from bench import catalog
        from bench.dispatch import Outcome, run_one_locked

        for plugin in self.plugins:
            catalog.load_plugin(plugin)
        catalog.load_builtins()
        _threads_from_slurm()
        options = dataclasses.replace(self.options, device=job_device(self.options.device))
        cfg = self.config
        store = ResultStore(self.results)
        say(f"cell {cfg.id} ({cfg.label} {cfg.dataset} s={cfg.sparsity:g} seed={cfg.seed}) "
            f"starting on {options.device}; results in {self.results}")
        outcome = Outcome()
        record = run_one_locked(cfg, store, options, self.force, outcome, wait=self.lock_wait_s)
        if record is None:
            action = "skipped (already done)" if outcome.skipped else \
                f"busy (another process held its lock for {self.lock_wait_s:g}s)"
            say(f"cell {cfg.id}: {action}")
            return {"id": cfg.id, "action": action}
        if record["status"] != "ok":
            err = record["error"]
            say(f"cell {cfg.id}: ran, failed: {err['type']}: {_first_line(err['message'])}")
            raise CellFailed(f"cell {cfg.id} ({cfg.label}) failed: {err['type']}: "
                             f"{err['message']}\n{err['traceback']}")
        say(f"cell {cfg.id}: ran, ok, test accuracy {record['accuracy']['test']:.4f}")
        return {"id": cfg.id, "action": "ran", "status": "ok",
                "test_acc": record["accuracy"]["test"]}

    def checkpoint(self, *args: Any, **kwargs: Any):
        work = ResultStore(self.results).work_dir(self.config.id)
        saved = sorted(p.name for p in work.glob("*.pt")) if work.is_dir() else []
        say(f"cell {self.config.id}: preempted or near its time limit; once requeued it resumes "
            f"from {', '.join(saved) or 'the start (no epoch checkpoint yet)'} in {work}")
        return super().checkpoint(*args, **kwargs)


def say(text: str) -> None:
    print(f"[prunebench {time.strftime('%H:%M:%S')}] {text}", flush=True)


def _first_line(text: str) -> str:
    lines = str(text).strip().splitlines()
    return lines[0] if lines else ""


def _threads_from_slurm() -> None:
    cpus = os.environ.get("SLURM_CPUS_PER_TASK")
    if cpus and cpus.isdigit() and int(cpus) > 0:
        import torch

        torch.set_num_threads(int(cpus))


def check_device_name(name: str) -> None:
    """Validate --device's form here; whether CUDA exists is the compute node's business."""
    import torch

    if name == "auto":
        return
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise UsageError(f"--device {name!r} is invalid; valid: auto, cpu, cuda, cuda:N")


def job_device(name: str) -> str:
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


# --- submitting and waiting ------------------------------------------------------------------


@dataclass
class Submission:
    cells: list[RunConfig]
    job_ids: dict[str, str]  # cell id -> job id
    arrays: list[tuple[str, int]]  # (array job id, tasks)
    max_array_size: int
    origin: str


class SubmissionError(RuntimeError):
    """sbatch refused a submission (the message is sbatch's)."""


def make_executor(profile: ClusterProfile, folder: Path):
    import submitit

    executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=profile.max_requeues,
                                      python=profile.python)
    executor.update_parameters(**slurm_parameters(profile))
    return executor


def submit(cells: Sequence[RunConfig], store: ResultStore, options: RunOptions,
           profile: ClusterProfile, *, force: bool = False, grid: str = "",
           plugins: Sequence[str] = ()) -> Submission:
    """Submit `cells` as job arrays (chunked below MaxArraySize); record cell -> job id."""
    from submitit.core.utils import FailedJobError

    root = store.root.resolve()
    store = ResultStore(root)
    folder = root / JOB_LOG_DIR / "%j"
    executor = make_executor(profile, folder)
    max_size, origin = cluster_max_array_size(profile)
    size = array_chunk_size(max_size)
    job_ids: dict[str, str] = {}
    arrays: list[tuple[str, int]] = []
    for chunk in chunked(list(cells), size):
        jobs = []
        try:
            with executor.batch():
                for cfg in chunk:
                    jobs.append(executor.submit(CellJob(cfg, str(root), options, plugins, force)))
        except FailedJobError as exc:
            message = _first_line(str(exc)) or "sbatch failed"
            raise SubmissionError(f"sbatch refused the submission: {message}"
                                  + (f" ({len(job_ids)} cells were submitted before)"
                                     if job_ids else "")) from None
        now = time.strftime("%Y-%m-%dT%H:%M:%S")
        entries = {}
        for cfg, job in zip(chunk, jobs):
            job_ids[cfg.id] = job.job_id
            entries[cfg.id] = {"job_id": job.job_id, "submitted": now, "grid": grid,
                               "label": cfg.label, "profile": profile.name,
                               "log_dir": str(root / JOB_LOG_DIR / job.job_id)}
        record_submissions(store, entries)
        arrays.append((jobs[0].job_id.split("_")[0], len(jobs)))
    return Submission(list(cells), job_ids, arrays, max_size, origin)


def live_cells(cells: Sequence[RunConfig], store: ResultStore) -> set[str]:
    """Cells whose recorded job is still queued or running (not to be submitted again)."""
    subs = read_submissions(store)
    ids = {c.id: subs[c.id]["job_id"] for c in cells if c.id in subs}
    if not ids:
        return set()
    live, _, _ = query_job_states(ids.values())
    return {cid for cid, jid in ids.items() if live.get(jid) in LIVE_STATES}


def print_submission(sub: Submission, profile: ClusterProfile, status_cmd: str,
                     results: Path) -> None:
    arrays = ", ".join(f"{jid} ({n} tasks)" if n > 1 else f"{jid} (a single job)"
                       for jid, n in sub.arrays)
    print(f"submitted {len(sub.cells)} cells to Slurm (profile {profile.name}, partition "
          f"{profile.partition or 'default'}) as {len(sub.arrays)} job array(s): {arrays}; "
          f"arrays of at most {array_chunk_size(sub.max_array_size)} tasks (MaxArraySize "
          f"{sub.max_array_size} from {sub.origin}), at most {profile.array_parallelism} tasks "
          f"of each running at once")
    for cfg in sub.cells:
        print(f"  {cfg.id}  job {sub.job_ids[cfg.id]:<12} {cfg.label:28} {cfg.dataset:12} "
              f"s={cfg.sparsity:<6g} seed={cfg.seed}")
    print(f"follow with:\n  {status_cmd}\n  squeue -j {','.join(j for j, _ in sub.arrays)}\n"
          f"  job logs: {results.resolve() / JOB_LOG_DIR}/<job id>/")


def wait(cells: Sequence[RunConfig], store: ResultStore, *, progress: bool = True,
         poll_s: float = 3.0, grace_s: float = 60.0) -> dict[str, Any]:
    """Block until none of `cells` is queued or running; returns {cell id: CellStatus}.

    A submitted cell whose job Slurm no longer knows (not in squeue, not yet in sacct) is given
    `grace_s` for accounting to catch up before it counts as settled."""
    from bench.status import collect
    from bench.status import counts as count_states

    first_unknown: dict[str, float] = {}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(cells), desc="slurm", unit="cell", dynamic_ncols=True)
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
              profile: ClusterProfile, *, grid_name: str, force: bool, wait_for_jobs: bool,
              progress: bool, status_cmd: str) -> int:
    """bench.run's --executor slurm: submit the missing cells; with `wait_for_jobs`, block until
    every cell of the selection that is in Slurm's hands has settled. Returns the exit code."""
    from bench import catalog
    from bench.dispatch import pending
    from bench.status import collect, format_states

    todo = pending(cells, store, force)
    in_flight = live_cells(todo, store)
    todo = [c for c in todo if c.id not in in_flight]
    done = len(cells) - len(pending(cells, store, False))
    print(f"grid {grid_name}: {len(cells)} cells: {done} done, {len(in_flight)} already queued or "
          f"running in Slurm, {len(todo)} to submit")
    if todo:
        sub = submit(todo, store, options, profile, force=force, grid=grid_name,
                     plugins=catalog.loaded_plugins())
        print_submission(sub, profile, status_cmd, store.root)
    if not wait_for_jobs:
        return 0
    todo_ids = {c.id for c in todo}
    waiting = [c for c in cells if c.id in in_flight or c.id in todo_ids]
    t0 = time.perf_counter()
    try:
        if waiting:
            wait(waiting, store, progress=progress)
    except KeyboardInterrupt:
        print(f"stopped waiting; the jobs keep running. Follow with: {status_cmd}",
              file=sys.stderr)
        return 130
    states = collect(cells, store)
    print(format_states(grid_name, cells, states, store))
    print(f"waited {time.perf_counter() - t0:.1f}s for {len(waiting)} cells")
    return 1 if any(s.state == "failed" for s in states.values()) else 0


def status_command(args: Any) -> str:
    """The bench.status command line that shows the same selection as this bench.run."""
    import shlex

    parts = ["python", "-m", "bench.status", "--grid", args.grid,
             "--results", str(Path(args.results).resolve())]
    for flag in ("methods", "datasets", "sparsities", "seeds", "temperatures", "precision"):
        value = getattr(args, flag, None)
        if value is not None:
            parts += [f"--{flag}", value]
    for item in getattr(args, "set", []):
        parts += ["--set", item]
    for plugin in getattr(args, "plugin", []):
        parts += ["--plugin", plugin]
    return " ".join(shlex.quote(str(p)) for p in parts)
