"""The Slurm plan (issue 21): shared phases as jobs of their own, cells after them. The graph is
a pure function of the cells and the cache's contents; prefetch computes one phase and stops."""
from __future__ import annotations

import pytest

from bench.exec.cell import RunOptions, prefetch, run_cell
from bench.config import RunConfig
from bench.plan.estimate import cell_phases
from bench.slurm.plan import make_plan
from bench.store import ResultStore

BASE = dict(dataset="synthetic", model="smallcnn", teacher="smallcnn", teacher_epochs=1,
            dense_epochs=1, sparse_epochs=1, round_epochs=1, batch_size=32)


def _cells():
    out = []
    for seed in (0, 1):
        for s in (0.5, 0.9):
            out += [RunConfig(method="tg-oneshot", sparsity=s, seed=seed, **BASE),
                    RunConfig(method="tg-oneshot", sparsity=s, seed=seed, options=(("retrain", "ft"),), **BASE),
                    RunConfig(method="magnitude", sparsity=s, seed=seed, **BASE),
                    RunConfig(method="colt", sparsity=s, seed=seed, **BASE),
                    RunConfig(method="egp", sparsity=s, seed=seed, **BASE)]
    return out


def test_the_plan_has_one_job_per_shared_phase_and_cells_wait_for_theirs():
    cells = _cells()
    plan = make_plan(cells, lambda key: False)
    names = sorted(j.name for j in plan.phases)
    # per seed: teacher, student (ft and kd share it), dense (magnitude and EGP share it), one
    # COLT trajectory, one EGP trajectory
    assert sorted(set(names)) == sorted({"teacher", "student", "dense", "colt rounds 1-15",
                                         "egp rounds 1-3"})
    assert len(plan.phases) == 2 * 5
    by_id = {j.id: j for j in plan.phases}
    for job in plan.phases:
        if job.name == "student":
            assert [by_id[a].name for a in job.after] == ["teacher"]
        if job.name.startswith("egp"):
            assert [by_id[a].name for a in job.after] == ["dense"]
            assert job.cell.sparsity == 0.9  # the trajectory's deepest cell computes it
        if job.name in ("teacher", "dense") or job.name.startswith("colt"):
            assert job.after == ()
    levels = plan.levels()
    assert [sorted({j.name.split()[0] for j in lv}) for lv in levels] == \
        [["colt", "dense", "teacher"], ["egp", "student"]]
    waits = {(c.method, c.option_dict.get("retrain"), c.seed): tuple(by_id[a].name for a in after)
             for c, after in plan.cells}
    assert waits[("tg-oneshot", "kd", 0)] == ("teacher", "student")
    assert waits[("magnitude", "ft", 1)] == ("dense",)
    assert waits[("egp", None, 0)] == ("dense", "egp rounds 1-3")
    # every job's work is the estimate's: the plan and the dry run cannot disagree
    total = sum(j.work for j in plan.phases) + sum(plan.cell_work.values())
    from bench.plan.estimate import estimate_gpu_hours, REFERENCE_IMAGES_PER_SECOND as RATE

    assert total / RATE / 3600 == pytest.approx(estimate_gpu_hours(cells))


def test_a_cell_that_copies_another_mask_owns_no_job_and_waits_for_both():
    tg = RunConfig(method="tg-oneshot", sparsity=0.5, **BASE)
    matched = RunConfig(method="random", sparsity=0.5, options=(("match", "tg-oneshot"),), **BASE)
    plan = make_plan([matched, tg], lambda key: False)
    owners = {j.name: j.cell for j in plan.phases}
    assert set(owners) == {"teacher", "student", "dense"}
    assert all("match" not in c.option_dict or not c.option_dict["match"] for c in owners.values())
    by_id = {j.id: j.name for j in plan.phases}
    assert sorted(by_id[a] for a in dict(plan.cells)[matched]) == ["dense", "student", "teacher"]


def test_a_shared_phase_a_matched_cell_lists_twice_is_one_phase_of_its_work():
    """random:match=magnitude declares the magnitude cell's dense network and its own, the
    same one: alone in a plan it owns one dense job with one dense network's work."""
    matched = RunConfig(method="random", sparsity=0.5, options=(("match", "magnitude"),), **BASE)
    dense = next(p for p in cell_phases(RunConfig(method="magnitude", sparsity=0.5, **BASE))
                 if p.name == "dense")
    (job,) = make_plan([matched], lambda key: False).phases
    assert (job.name, job.work) == ("dense", dense.work)


def test_the_dry_run_prices_a_matched_cell_alone_once_the_cell_it_copies_is_done(tmp_path):
    """`--executor slurm --dry-run` (plan_for): random:match=magnitude copies the mask of a
    magnitude cell that has a record, so its own GPU-hours are its fine-tuning alone."""
    from bench.slurm.phases import plan_for

    magnitude = RunConfig(method="magnitude", sparsity=0.5, **BASE)
    matched = RunConfig(method="random", sparsity=0.5, options=(("match", "magnitude"),), **BASE)
    store = ResultStore(tmp_path)
    before = plan_for([matched], store, RunOptions()).cell_work[matched.id]
    store.write({"id": magnitude.id, "label": "magnitude", "status": "ok",
                 "config": magnitude.to_dict(), "accuracy": {"test": 0.5}})
    after = plan_for([matched], store, RunOptions()).cell_work[matched.id]
    finetune = [p.work for p in cell_phases(matched) if p.key is None]
    assert finetune and after == pytest.approx(sum(finetune)) and before > after


def test_cached_phases_need_no_job_and_no_share_has_no_trajectories():
    cells = _cells()
    keys = {p.key for c in cells for p in cell_phases(c) if p.key is not None}
    assert make_plan(cells, keys.__contains__).phases == []
    assert all(after == () for _, after in make_plan(cells, keys.__contains__).cells)
    teachers = {p.key for c in cells for p in cell_phases(c) if p.name == "teacher"}
    plan = make_plan(cells, teachers.__contains__)
    assert "teacher" not in {j.name for j in plan.phases}
    assert all(j.after == () for j in plan.phases if j.name == "student")
    alone = make_plan(cells, lambda key: False, share=False)
    assert not any("rounds" in j.name for j in alone.phases)


@pytest.mark.e2e
def test_prefetch_computes_the_phase_and_stops_and_the_cell_then_reads_it(tmp_path):
    store = ResultStore(tmp_path)
    cell = RunConfig(method="tg-oneshot", sparsity=0.5, **BASE)
    plan = make_plan([cell], lambda key: False)
    teacher, student = plan.phases
    options = RunOptions(progress=False)
    assert "teacher computed" in prefetch(teacher.cell, store, options, teacher.stop)
    assert list((tmp_path / "cache").glob("teacher/*.pt")) and \
        not list((tmp_path / "cache").glob("tg-student/*.pt"))
    assert store.read(cell.id) is None  # a prefetch writes no record
    assert "tg-student computed" in prefetch(student.cell, store, options, student.stop)
    # the cache now answers the plan: nothing left to schedule
    from bench.store.cache import PhaseCache

    assert make_plan([cell], PhaseCache(store.cache_dir).plan_keys().__contains__).phases == []
    record = run_cell(cell, store, options)
    assert record["phases"]["teacher"]["cached"] and record["phases"]["student"]["cached"]
    # a trajectory job stops at its last round or, where the method needs fewer rounds than
    # the cost model's count, before the cell's own work (the ticket): all rounds are cached
    colt = RunConfig(method="colt", sparsity=0.5, **BASE)
    (job,) = make_plan([colt], lambda key: False).phases
    how = prefetch(job.cell, store, options, job.stop)
    assert "colt-round computed" in how or how == "stopped before the cell's own training (ticket)"
    record = run_cell(colt, store, options)
    rounds = [p for n, p in record["phases"].items() if n.startswith("round") and n.endswith("-a")]
    assert rounds and all(p["cached"] for p in rounds)


def test_status_names_the_failed_phase_a_cell_waits_for(tmp_path):
    from bench.slurm.queue import write_phase_status
    from bench.slurm.queue import record_submissions
    from bench.slurm.states import collect

    store = ResultStore(tmp_path)
    cell = RunConfig(method="tg-oneshot", sparsity=0.5, **BASE)
    teacher, student = make_plan([cell], lambda key: False).phases
    write_phase_status(store, teacher, "failed", error="RuntimeError: teacher diverged",
                       slurm_job_id="41")
    write_phase_status(store, student, "queued", slurm_job_id="42")
    record_submissions(store, {cell.id: {"job_id": "43", "submitted": "2026-11-30T00:00:00",
                                         "after": [teacher.id, student.id]}})
    state = collect([cell], store)[cell.id]
    assert state.state == "failed"
    assert state.detail.startswith("blocked: phase teacher (job 41) failed: RuntimeError: "
                                   "teacher diverged")


@pytest.mark.slow
def test_a_phase_job_requeues_itself_and_records_its_state(tmp_path):
    from bench.slurm.phases import PhaseJobRunner
    from bench.slurm.queue import read_phase_status

    cell = RunConfig(method="magnitude", sparsity=0.5, **BASE)
    (job,) = make_plan([cell], lambda key: False).phases
    runner = PhaseJobRunner(job, str(tmp_path), RunOptions(progress=False))
    assert runner.checkpoint().function is runner  # preempted: the same phase again, resuming
    assert runner()["stopped"].startswith("dense-ce computed")
    status = read_phase_status(ResultStore(tmp_path), job.id)
    assert status["state"] == "ok" and status["name"] == "dense"
