"""The per-cell Slurm job (`CellJob`) and the submission of cells as job arrays."""
from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import submitit
import torch
from submitit.core.utils import FailedJobError
from submitit.helpers import Checkpointable

from bench.config import RunConfig
from bench.console import first_line
from bench.exec.cell import RunOptions
from bench.exec.locked import Outcome, run_one_locked
from bench.plugins import load_all
from bench.slurm.profile import ClusterProfile, slurm_parameters
from bench.slurm.queue import (JOB_LOG_DIR, array_chunk_size, chunked, cluster_max_array_size,
                               record_submissions)
from bench.store import ResultStore


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
        options = job_setup(self.plugins, self.options)
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
            say(f"cell {cfg.id}: ran, failed: {err['type']}: {first_line(err['message'], empty='')}")
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


def job_setup(plugins: Sequence[str], options: RunOptions) -> RunOptions:
    """What every job does first on its node: the submitter's plugins and the built-ins, the
    threads Slurm gave it, and the device it resolves to there."""
    load_all(plugins)
    _threads_from_slurm()
    return dataclasses.replace(options, device=job_device(options.device))


def say(text: str) -> None:
    print(f"[prunebench {time.strftime('%H:%M:%S')}] {text}", flush=True)


def _threads_from_slurm() -> None:
    cpus = os.environ.get("SLURM_CPUS_PER_TASK")
    if cpus and cpus.isdigit() and int(cpus) > 0:
        torch.set_num_threads(int(cpus))


def job_device(name: str) -> str:
    if name != "auto":
        return name

    return "cuda" if torch.cuda.is_available() else "cpu"


# --- submitting ----------------------------------------------------------------------------------


@dataclass
class Submission:
    cells: list[RunConfig]
    job_ids: dict[str, str]  # cell id -> job id
    arrays: list[tuple[str, int]]  # (array job id, tasks)
    max_array_size: int
    origin: str


class SubmissionError(RuntimeError):
    """sbatch refused a submission (the message is sbatch's)."""


def make_executor(profile: ClusterProfile, folder: Path, dependency: str = ""):
    """`dependency`: Slurm job ids joined by ':' that must end ok first (afterok); if one fails,
    Slurm cancels the dependent job (kill-on-invalid-dep) and bench.status says which phase."""
    executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=profile.max_requeues,
                                      python=profile.python)
    params = slurm_parameters(profile)
    if dependency:
        params["additional_parameters"] = {**params.get("additional_parameters", {}),
                                           "dependency": f"afterok:{dependency}",
                                           "kill_on_invalid_dep": "yes"}
    executor.update_parameters(**params)
    return executor


def submit(cells: Sequence[RunConfig], store: ResultStore, options: RunOptions,
           profile: ClusterProfile, *, force: bool = False, grid: str = "",
           plugins: Sequence[str] = (), dependency: str = "",
           after: Sequence[str] = ()) -> Submission:
    """Submit `cells` as job arrays (chunked below MaxArraySize); record cell -> job id.
    `dependency`/`after`: the Slurm ids and the plan's ids of the phase jobs they wait for."""
    root = store.root.resolve()
    store = ResultStore(root)
    folder = root / JOB_LOG_DIR / "%j"
    executor = make_executor(profile, folder, dependency)
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
            message = first_line(exc, empty="sbatch failed")
            raise SubmissionError(f"sbatch refused the submission: {message}"
                                  + (f" ({len(job_ids)} cells were submitted before)"
                                     if job_ids else "")) from None
        now = time.strftime("%Y-%m-%dT%H:%M:%S")
        entries = {}
        for cfg, job in zip(chunk, jobs):
            job_ids[cfg.id] = job.job_id
            entries[cfg.id] = {"job_id": job.job_id, "submitted": now, "grid": grid,
                               "label": cfg.label, "profile": profile.name,
                               "log_dir": str(root / JOB_LOG_DIR / job.job_id),
                               "after": list(after)}
        record_submissions(store, entries)
        arrays.append((jobs[0].job_id.split("_")[0], len(jobs)))
    return Submission(list(cells), job_ids, arrays, max_size, origin)


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
