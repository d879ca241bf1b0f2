"""Submitting a sweep as its plan (bench/slurm/plan.py): phase jobs first, then the cells as
arrays that depend on them; each phase job's state is a small file the status view reads
(bench/slurm/queue.py: write_phase_status, read_phase_status)."""
from __future__ import annotations

from typing import Any, Sequence

from submitit.core.utils import FailedJobError
from submitit.helpers import Checkpointable

from bench.console import first_line
from bench.exec.cell import RunOptions, prefetch
from bench.plan.estimate import REFERENCE_IMAGES_PER_SECOND, format_hours
from bench.slurm.job import (JOB_LOG_DIR, Submission, SubmissionError, job_setup, make_executor,
                             say, submit)
from bench.slurm.plan import PhaseJob, Plan, make_plan
from bench.slurm.queue import record_submissions, write_phase_status
from bench.store import ResultStore
from bench.store.cache import PhaseCache

class PhaseJobRunner(Checkpointable):
    """A shared phase as a Slurm job: the owning cell's method runs until that phase is in the
    cache (bench.exec.cell.prefetch). Requeued after preemption like a cell, it resumes from the
    phase's epoch checkpoints in the cache's scratch folder."""

    def __init__(self, job: PhaseJob, results: str, options: RunOptions,
                 plugins: Sequence[str] = ()):
        self.job = job
        self.results = str(results)
        self.options = options
        self.plugins = tuple(plugins)

    def __call__(self) -> dict[str, Any]:
        options = job_setup(self.plugins, self.options)
        store = ResultStore(self.results)
        job = self.job
        say(f"phase {job.id} ({job.name}, through cell {job.cell.id} {job.cell.label}) starting")
        write_phase_status(store, job, "running")
        try:
            how = prefetch(job.cell, store, options, job.stop)
        except Exception as exc:
            write_phase_status(store, job, "failed", error=f"{type(exc).__name__}: "
                                                            f"{first_line(exc, empty='')}")
            raise
        write_phase_status(store, job, "ok", stopped=how)
        say(f"phase {job.id} ({job.name}): done ({how})")
        return {"phase": job.id, "stopped": how}


def plan_for(cells, store: ResultStore, options: RunOptions) -> Plan:
    """The plan of the cells left: phases the cache lacks, and a matched cell's work only while
    the cell it copies has no record (once it has, only the mask is copied)."""
    cached = PhaseCache(store.cache_dir).plan_keys()
    return make_plan(cells, cached.__contains__, share=options.share, is_done=store.is_done)


def submit_plan(plan: Plan, store: ResultStore, options: RunOptions, profile, *,
                force: bool = False, grid: str = "", plugins: Sequence[str] = ()):
    """Phase jobs level by level, each after the jobs it needs; then one array per group of
    cells that wait for the same phase jobs. Returns (phase job ids, cell Submission)."""
    root = store.root.resolve()
    store = ResultStore(root)
    slurm_ids: dict[str, str] = {}
    for level in plan.levels():
        for job in level:
            after = ":".join(slurm_ids[a] for a in job.after if a in slurm_ids)
            executor = make_executor(profile, root / JOB_LOG_DIR / "%j", dependency=after)
            try:
                submitted = executor.submit(PhaseJobRunner(job, str(root), options, plugins))
            except FailedJobError as exc:
                raise SubmissionError(f"sbatch refused phase job {job.name}: "
                                      f"{first_line(exc, empty='sbatch failed')}") from None
            slurm_ids[job.id] = submitted.job_id
            write_phase_status(store, job, "queued", slurm_job_id=submitted.job_id)
    subs = Submission([], {}, [], 0, "")
    for after, cells in plan.cell_groups().items():
        dependency = ":".join(slurm_ids[a] for a in after if a in slurm_ids)
        part = submit(cells, store, options, profile, force=force, grid=grid, plugins=plugins,
                      dependency=dependency, after=after)
        subs.cells += part.cells
        subs.job_ids.update(part.job_ids)
        subs.arrays += part.arrays
        subs.max_array_size, subs.origin = part.max_array_size, part.origin
    record_submissions(store, {})  # the file exists even when every cell waited for nothing
    return slurm_ids, subs


def print_plan(plan: Plan, images_per_second: float | None = None) -> None:
    """What `--executor slurm --dry-run` shows: the phase jobs by level and the cell arrays,
    with their dependencies and estimated GPU-hours."""
    rate = images_per_second or REFERENCE_IMAGES_PER_SECOND

    def hours(work: float) -> str:
        return format_hours(work / rate / 3600.0)

    print(f"plan: {len(plan.phases)} phase job(s) in {len(plan.levels())} level(s), then "
          f"{len(plan.cells)} cell(s) in {len(plan.cell_groups())} array(s)")
    for depth, level in enumerate(plan.levels()):
        print(f"  level {depth}: {len(level)} phase job(s), "
              f"{hours(sum(j.work for j in level))} GPU-hours")
        for job in level:
            needs = f" after {', '.join(job.after)}" if job.after else ""
            print(f"    phase {job.id}  {job.name:24} via {job.cell.id} ({job.cell.label} "
                  f"{job.cell.dataset} s={job.cell.sparsity:g} seed={job.cell.seed}), "
                  f"{hours(job.work)} GPU-hours{needs}")
    for after, cells in plan.cell_groups().items():
        work = sum(plan.cell_work.get(c.id, 0.0) for c in cells)
        print(f"  cells: {len(cells)} in one array, {hours(work)} GPU-hours of their own, "
              + (f"after {', '.join(after)}" if after else "no dependency: they start at once"))
