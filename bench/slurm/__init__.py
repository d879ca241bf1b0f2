"""Slurm sweeps through submitit: cluster profiles, job arrays, the per-cell job, job states.

One module per concern: `profile` (the YAML profiles in slurm/ and the sbatch parameters they
make), `queue` (what the cluster says: MaxArraySize, partitions, squeue/sacct states, and the
submissions file), `plan` (shared phases as jobs of their own, cells after them), `phases`
(submitting the plan, the phase jobs' state files), `job` (the per-cell job and submitting job
arrays), `states` (where each cell stands: what bench.status prints) and `submit` (bench.run's
--executor slurm: submit, then optionally wait).

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
    phase cache's file lock (bench/store/cache.py): the first job trains it, the others wait on the
    lock and then read it, so no phase is trained twice, however many tasks run at once.
  * Preemption and time limits: Slurm sends USR2 `signal_delay_s` before the limit (or on
    preemption); `CellJob` is a `submitit.helpers.Checkpointable`, so submitit requeues the same
    cell (at most `max_requeues` times for time limits). The requeued job calls `run_cell`
    again, which resumes each training phase from its last epoch checkpoint in
    `<results>/work/<cell id>/`, not from scratch; a shared phase that was being computed inside
    the cache lock resumes from its own epoch checkpoints in the cache's scratch folder.
"""
from __future__ import annotations

from bench.slurm.profile import (PROFILE_DIR, PROFILE_KEYS, ClusterProfile, load_profile,
                                 profile_from_mapping, profile_names, sbatch_text,
                                 slurm_parameters)
from bench.slurm.queue import (DEFAULT_MAX_ARRAY_SIZE, JOB_LOG_DIR, LIVE_STATES, QUEUED_STATES,
                               RUNNING_STATES, SUBMISSIONS_FILE, array_chunk_size, check_partition,
                               chunked, cluster_max_array_size, describe, live_cells,
                               query_job_states, read_submissions, record_submissions,
                               require_sbatch, submissions_path)

# The job module imports submitit and the cell runner; it is loaded on first use of one of its
# names, so that bench.status (which needs only the queue) starts as quickly as before.
_JOB_NAMES = ("CellFailed", "CellJob", "Submission", "SubmissionError", "job_device",
              "make_executor", "print_submission", "say", "submit")


def __getattr__(name: str):
    if name in _JOB_NAMES:
        from bench.slurm import job  # deferred: see above

        return getattr(job, name)
    raise AttributeError(f"module 'bench.slurm' has no attribute {name!r}")


__all__ = [
    "CellFailed", "CellJob", "Submission", "SubmissionError", "job_device", "make_executor",
    "print_submission", "say", "submit",
    "PROFILE_DIR", "PROFILE_KEYS", "ClusterProfile", "load_profile", "profile_from_mapping",
    "profile_names", "sbatch_text", "slurm_parameters",
    "DEFAULT_MAX_ARRAY_SIZE", "JOB_LOG_DIR", "LIVE_STATES", "QUEUED_STATES", "RUNNING_STATES",
    "SUBMISSIONS_FILE", "array_chunk_size", "check_partition", "chunked", "cluster_max_array_size",
    "describe", "live_cells", "query_job_states", "read_submissions", "record_submissions",
    "require_sbatch", "submissions_path",
]
