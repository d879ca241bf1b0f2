"""Slurm sweeps (bench/slurm/: the profiles, the plan, the jobs, submit.py and states.py; bench/status.py).

Two kinds of tests:
  * cluster-free: profiles, the sbatch text submitit writes, chunking below MaxArraySize, the
    submissions file and status logic. Slurm's commands are replaced by small scripts on PATH
    (the process boundary), nothing inside submitit or the harness is mocked.
  * @pytest.mark.slurm: a real local cluster (bash slurm/local-cluster.sh start) runs tiny grids
    end to end. Where it cannot be used these are skipped, saying why.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, TINY, fake_slurm_bin, run_cli

# A plugin the jobs must load (as the submitter did): a method that fails, and one whose
# fine-tuning epochs are slow enough to interrupt between epoch checkpoints.
PLUGIN = '''
import time
from pathlib import Path

from bench.plan.estimate import PhaseCost, shared
from bench.masks import magnitude_scores
from bench.method import Option, register_method
from bench.train.trainer import Hook

BROKEN = Path(__file__).with_name("broken.flag")  # while it exists, the shared phase fails


class SlowEpochs(Hook):
    def __init__(self, seconds):
        self.seconds = seconds

    def on_epoch_end(self, state):
        time.sleep(self.seconds)


@register_method("boom")
def boom(ctx):
    raise RuntimeError("boom: this cell fails on purpose\\nsecond line")


def warm_cost(cfg):
    return [PhaseCost(shared(cfg, "warm", {"model": cfg.model}), "warm", 1.0, after=()),
            PhaseCost(None, "own", 1.0)]


@register_method("brokenshared", cost=warm_cost)
def brokenshared(ctx):
    def compute(scratch):
        if BROKEN.exists():
            raise RuntimeError("the shared phase fails on purpose")
        return {}, {"phases": {"warm": {"epochs": 0, "seconds": 0.0}}}

    ctx.cached_phase("warm", {"model": ctx.config.model}, compute)
    model = ctx.make_model()
    ctx.prune(model, magnitude_scores(model))
    return model


@register_method("slowft", options={"sleep": Option(1.0)})
def slowft(ctx):
    model = ctx.dense_model()
    with ctx.clock("prune"):
        ctx.prune(model, magnitude_scores(model))
    ctx.train(model, ctx.phase("finetune", ctx.config.sparse_epochs),
              hooks=[SlowEpochs(ctx.options["sleep"])])
    return model
'''

BASE = {k: v for k, v in TINY.items() if k != "dataset"}


def write_grid(tmp_path, name="g", **over):
    grid = {"name": name, "methods": ["magnitude"], "datasets": ["synthetic"],
            "sparsities": [0.5], "seeds": [0], "base": dict(BASE)}
    grid.update(over)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(grid))
    return path


def write_plugin(tmp_path):
    path = tmp_path / "slurm_plugin.py"
    path.write_text(PLUGIN)
    return path


def one_line_error(res, needle):
    assert res.returncode == 2, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], res.stderr
    assert "Traceback" not in res.stderr


def main_here(module, capsys, *args):
    """A command line's main() in this process (a subprocess costs seconds of imports here):
    returns what run_cli would, for bad-input checks."""
    import importlib

    main = importlib.import_module(module).main
    capsys.readouterr()
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:  # argparse errors
        code = exc.code
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess([module, *args], code, out, err)


# --- profiles and the sbatch text (no cluster) -------------------------------------------------


def test_profiles_in_slurm_dir_load():
    from bench.slurm import load_profile, profile_names, slurm_parameters

    assert {"local", "example-gpu"} <= set(profile_names())
    local = load_profile("local")
    assert (local.partition, local.cpus_per_task, local.gpus_per_task, local.array_parallelism) \
        == ("debug", 1, 0, 2)
    params = slurm_parameters(local)
    assert params["partition"] == "debug" and params["time"] == local.time_min
    assert "gpus_per_task" not in params  # 0 GPUs: no --gpus-per-task at all
    gpu = load_profile(str(ROOT / "slurm" / "example-gpu.yaml"))  # a path works too
    assert gpu.gpus_per_task == 1 and gpu.sbatch["account"] == "myproject" and gpu.setup


def test_sbatch_text_of_an_array(tmp_path):
    from bench.slurm import load_profile, sbatch_text

    text = sbatch_text(load_profile("local"), 10, tmp_path / "%j")
    flags = dict(re.findall(r"^#SBATCH --([\w-]+)=(\S+)$", text, re.M))
    assert flags["partition"] == "debug"
    assert flags["array"] == "0-9%2"  # 10 tasks, at most array_parallelism=2 at once
    assert flags["cpus-per-task"] == "1" and flags["time"] == "30" and flags["mem"] == "2GB"
    assert flags["signal"] == "USR2@60"  # checkpoint/requeue a minute before the limit
    assert flags["job-name"] == "prunebench"
    assert "gpus-per-task" not in flags
    assert "%A_%a" in flags["output"]  # one log per array task


def test_sbatch_text_of_a_gpu_profile_through_the_executor(tmp_path, monkeypatch):
    """The executor's own submission file text (submitit needs an srun on PATH to exist)."""
    from bench.slurm import load_profile, make_executor

    bin_dir = fake_slurm_bin(tmp_path)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    executor = make_executor(load_profile("example-gpu"), tmp_path / "logs" / "%j")
    executor.parameters["map_count"] = 3  # what submitit sets for an array of 3
    text = executor._make_submission_file_text("python -u -m submitit.core._submit X", "uid")
    flags = dict(re.findall(r"^#SBATCH --([\w-]+)=(\S+)$", text, re.M))
    assert flags["partition"] == "gpu" and flags["gpus-per-task"] == "1"
    assert flags["cpus-per-task"] == "8" and flags["mem"] == "32GB" and flags["time"] == "240"
    assert flags["array"] == "0-2%3" and flags["signal"] == "USR2@120"
    assert flags["account"] == "myproject" and flags["qos"] == "normal"
    setup = text.index("module load cuda/12.4")
    assert setup < text.index("srun") and text.index("#SBATCH") < setup


def test_chunking_below_max_array_size(tmp_path, monkeypatch):
    from bench.slurm import (ClusterProfile, array_chunk_size, chunked,
                             cluster_max_array_size)

    assert array_chunk_size(1001) == 1000  # indices 0..999 < MaxArraySize
    assert array_chunk_size(1) == 1 and array_chunk_size(0) == 1  # arrays off: single jobs
    assert [len(c) for c in chunked(list(range(2500)), 1000)] == [1000, 1000, 500]
    empty = tmp_path / "nothing"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # no scontrol: the profile's key, else the default
    assert cluster_max_array_size(ClusterProfile("p", max_array_size=77)) == (77, "profile p")
    assert cluster_max_array_size(ClusterProfile("p"))[0] == 1000
    monkeypatch.setenv("PATH", str(fake_slurm_bin(tmp_path, max_array_size=5)))
    assert cluster_max_array_size(ClusterProfile("p", max_array_size=77)) == \
        (5, "scontrol show config")


@pytest.mark.parametrize("profile,needle", [
    ({"partitoin": "debug"}, "unknown key 'partitoin'; valid: partition, "),
    ({"cpus_per_task": 0}, "key 'cpus_per_task' must be an integer >= 1"),
    ({"time_min": "1h"}, "key 'time_min' must be an integer >= 1 (got '1h')"),
    ({"mem_gb": -1}, "key 'mem_gb' must be a number of GB > 0"),
    ({"setup": {"a": 1}}, "key 'setup' must be a list of shell lines"),
    ({"sbatch": ["account"]}, "key 'sbatch' must be a mapping"),
    ({"sbatch": {"time": "1:00:00"}}, "key 'sbatch' sets 'time', which the profile key 'time_min'"),
    ({"sbatch": {"array": "0-3"}}, "key 'sbatch' sets 'array', which the harness sets"),
    ({"time_min": 1, "signal_delay_s": 90}, "key 'signal_delay_s' (90) must be shorter"),
    ("- just\n- a list\n", "a cluster profile must be a mapping"),
    ("partition: [unclosed\n", "not valid YAML"),
])
def test_malformed_profile_is_one_line_naming_the_key(tmp_path, capsys, profile, needle):
    path = tmp_path / "bad.yaml"
    path.write_text(profile if isinstance(profile, str) else yaml.safe_dump(profile))
    res = main_here("bench.run", capsys, "--executor", "slurm", "--cluster", path, "--results",
                    tmp_path / "r", "--grid", write_grid(tmp_path))
    one_line_error(res, needle)
    assert not (tmp_path / "r").exists()


@pytest.mark.e2e
def test_malformed_profile_from_the_command_line_exits_2(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("partition: debug\ngpus: 2\n")
    res = run_cli("bench.run", "--executor", "slurm", "--cluster", path, "--results",
                  tmp_path / "r", "--grid", write_grid(tmp_path))
    one_line_error(res, "unknown key 'gpus'; valid: partition, cpus_per_task, gpus_per_task")


@pytest.mark.parametrize("args,needle", [
    (["--executor", "slurm", "--cluster", "nosuch"], "unknown cluster profile 'nosuch'; valid: "),
    (["--executor", "slurm"], "--executor slurm needs --cluster PROFILE"),
    (["--cluster", "local"], "--cluster is for --executor slurm"),
    (["--wait"], "--wait is for --executor slurm"),
    (["--executor", "slurm", "--cluster", "local", "--device", "tpu"], "--device 'tpu' is invalid"),
    (["--executor", "nosuch"], "argument --executor: invalid choice: 'nosuch'"),
])
def test_bad_executor_arguments(tmp_path, capsys, args, needle):
    one_line_error(main_here("bench.run", capsys, "--results", tmp_path / "r", *args), needle)


def test_a_partition_the_cluster_lacks_is_bad_input(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", f"{fake_slurm_bin(tmp_path)}:{os.environ['PATH']}")  # sinfo: debug
    res = main_here("bench.run", capsys, "--executor", "slurm", "--cluster", "example-gpu",
                    "--grid", write_grid(tmp_path), "--results", tmp_path / "r")
    one_line_error(res, "key 'partition': 'gpu' is not a partition of this cluster; valid: debug")
    assert not (tmp_path / "sbatch-calls").exists() or not any((tmp_path / "sbatch-calls").iterdir())


@pytest.mark.e2e
def test_no_sbatch_on_path_is_a_clear_error(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    res = subprocess.run([sys.executable, "-m", "bench.run", "--executor", "slurm", "--cluster",
                          "local", "--grid", write_grid(tmp_path), "--results", tmp_path / "r"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PATH": str(empty)})
    one_line_error(res, "'sbatch' is not on PATH")
    assert not (tmp_path / "r").exists()


# --- submitting through fake Slurm commands ---------------------------------------------------


def test_submission_is_chunked_recorded_and_not_repeated(tmp_path, capsys, monkeypatch):
    """10 cells, MaxArraySize 4 -> arrays of 3, 3, 3 and a single job; the submissions file maps
    every cell to its job; cells still queued are not submitted again."""
    from submitit.core.utils import DelayedSubmission

    monkeypatch.setenv("PATH", f"{fake_slurm_bin(tmp_path, max_array_size=4)}:{os.environ['PATH']}")
    grid = write_grid(tmp_path, methods=["magnitude", "random"],
                      sparsities=[0.1, 0.3, 0.5, 0.7, 0.9])
    results = tmp_path / "r"
    args = ["--grid", grid, "--executor", "slurm", "--cluster", "local", "--results", results]
    res = main_here("bench.run", capsys, *args)
    assert res.returncode == 0, res.stderr
    assert "10 to submit" in res.stdout
    # the plan: the dense network both methods share is a phase job of its own (1000), and
    # every array waits for it
    assert "plan: 1 phase job(s) in 1 level(s), then 10 cell(s) in 1 array(s)" in res.stdout
    assert "4 job array(s): 1001 (3 tasks), 1002 (3 tasks), 1003 (3 tasks), 1004 (a single job)" \
        in res.stdout
    assert "python -m bench.status --grid" in res.stdout and "squeue -j 1001,1002,1003,1004" \
        in res.stdout
    scripts = [(tmp_path / "sbatch-calls" / f"{i}.sh").read_text() for i in range(5)]
    flags = [dict(re.findall(r"^#SBATCH --([\w-]+)=(\S+)$", s, re.M)) for s in scripts]
    assert [f.get("array") for f in flags] == [None, "0-2%2", "0-2%2", "0-2%2", None]
    assert "dependency" not in flags[0]
    assert all(f["dependency"] == "afterok:1000" and f["kill-on-invalid-dep"] == "yes"
               for f in flags[1:])
    assert all("#SBATCH --partition=debug" in s for s in scripts)
    phase = DelayedSubmission.load(results / "slurm" / "1000" / "1000_submitted.pkl").function
    assert phase.job.name == "dense" and phase.job.cell.method in ("magnitude", "random")
    subs = json.loads((results / "submissions.json").read_text())["cells"]
    job_ids = sorted(e["job_id"] for e in subs.values())
    assert job_ids == sorted([f"{a}_{i}" for a in (1001, 1002, 1003) for i in range(3)] + ["1004"])
    assert {e["grid"] for e in subs.values()} == {"g"}
    assert {tuple(e["after"]) for e in subs.values()} == {(phase.job.id,)}

    # The pickled job of the single job is a CellJob for its cell: run it as the node would
    # (submitit's process_job minus the process), and check its requeue resubmits itself.
    cell_id = next(c for c, e in subs.items() if e["job_id"] == "1004")
    delayed = DelayedSubmission.load(results / "slurm" / "1004" / "1004_submitted.pkl")
    job = delayed.function
    assert job.config.id == cell_id and job.results == str(results.resolve())
    assert job.checkpoint().function is job  # requeue: the same cell again
    result = delayed.result()
    assert (result["id"], result["action"], result["status"]) == (cell_id, "ran", "ok")
    record = json.loads((results / "records" / f"{cell_id}.json").read_text())
    assert record["status"] == "ok"

    # Submitting again: the done cell is skipped, cells Slurm still holds are not resubmitted,
    # and the dense network that cell put in the cache needs no phase job any more.
    (tmp_path / "squeue.out").write_text("1001_0|RUNNING\n1001_1|PENDING\n1001_2|PENDING\n")
    res = main_here("bench.run", capsys, *args)
    assert res.returncode == 0, res.stderr
    assert "1 done, 3 already queued or running in Slurm, 6 to submit" in res.stdout
    assert "plan: 0 phase job(s)" in res.stdout
    assert "2 job array(s): 1005 (3 tasks), 1006 (3 tasks)" in res.stdout


def test_status_joins_store_submissions_squeue_and_sacct(tmp_path, monkeypatch):
    from bench.plan.grid import make_config
    from bench.slurm import record_submissions
    from bench.slurm.queue import _expand_job_ids
    from bench.slurm.states import collect
    from bench.store import ResultStore

    assert _expand_job_ids("12_[1-3,7%2]") == ["12_1", "12_2", "12_3", "12_7"]
    assert _expand_job_ids("12_4") == ["12_4"] and _expand_job_ids("15") == ["15"]
    monkeypatch.setenv("PATH", f"{fake_slurm_bin(tmp_path)}:{os.environ['PATH']}")
    cells = [make_config(method="magnitude", sparsity=s, **TINY)
             for s in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85)]
    store = ResultStore(tmp_path / "r")
    ok, failed, running, queued, cancelled, lost, missing, requeued, rerun = cells
    store.write({"id": ok.id, "label": ok.label, "status": "ok", "config": ok.to_dict(),
                 "accuracy": {"test": 0.75}, "started": "2030-01-01T00:00:00"})
    store.write({"id": rerun.id, "label": rerun.label, "status": "ok", "config": rerun.to_dict(),
                 "accuracy": {"test": 0.5}, "started": "2029-01-01T00:00:00"})  # before --force
    store.write({"id": failed.id, "label": failed.label, "status": "failed",
                 "config": failed.to_dict(), "started": "2030-01-01T00:00:00",
                 "error": {"type": "RuntimeError", "message": "bad luck\nmore", "traceback": ""}})
    record_submissions(store, {c.id: {"job_id": j, "submitted": "2030-01-01T00:00:00",
                                      "log_dir": f"/logs/{j}"}
                               for c, j in ((ok, "7_0"), (failed, "7_1"), (running, "7_2"),
                                            (queued, "7_3"), (cancelled, "8"), (lost, "7_5"),
                                            (requeued, "7_6"), (rerun, "7_7"))})
    (tmp_path / "squeue.out").write_text("7_2|RUNNING\n7_3|PENDING\n7_6|REQUEUED\n7_7|RUNNING\n")
    (tmp_path / "sacct.out").write_text("7_0|COMPLETED\n7_1|FAILED\n7_[3,6]|PENDING\n"
                                        "8|CANCELLED by 0\n7_5|COMPLETED\n")
    notes = []
    states = collect(cells, store, notes)
    assert not notes
    got = {c.id: (states[c.id].state, states[c.id].detail) for c in cells}
    assert got[ok.id] == ("done", "test acc 0.7500")
    assert got[failed.id] == ("failed", "RuntimeError: bad luck")
    assert got[running.id] == ("running", "")
    assert got[queued.id] == ("queued", "")
    assert got[requeued.id] == ("queued", "REQUEUED")
    assert got[cancelled.id] == ("failed", "Slurm job 8 CANCELLED, no record (log: /logs/8)")
    assert got[lost.id][0] == "failed" and "completed without writing a record" in got[lost.id][1]
    assert got[missing.id] == ("missing", "")
    assert got[rerun.id] == ("running", "")  # an older ok record, being rerun (--force)


@pytest.mark.e2e
def test_status_command_without_slurm_reads_the_store(tmp_path, capsys):
    grid = write_grid(tmp_path, sparsities=[0.5, 0.9])
    res = main_here("bench.run", capsys, "--grid", grid, "--results", tmp_path / "r",
                    "--no-progress", "--sparsities", "0.5")
    assert res.returncode == 0, res.stderr
    res = main_here("bench.status", capsys, "--grid", grid, "--results", tmp_path / "r")
    assert res.returncode == 0, res.stderr
    assert re.search(r"\s+done\s+magnitude .* s=0.5 .*test acc", res.stdout)
    assert re.search(r"\s+missing\s+magnitude .* s=0.9", res.stdout)
    assert "summary: 1 done, 0 queued, 0 running, 0 failed, 1 missing" in res.stdout
    one_line_error(main_here("bench.status", capsys, "--grid", "nosuch"),
                   "unknown grid 'nosuch'")


# --- the real local cluster --------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster():
    """Skip (saying why) unless the local cluster answers; .ci/run starts it."""
    if shutil.which("sbatch") is None:
        pytest.skip("Slurm tests: sbatch is not on PATH (no Slurm client); "
                    "install and start it with: bash slurm/local-cluster.sh start")
    res = subprocess.run(["bash", str(ROOT / "slurm" / "local-cluster.sh"), "status"],
                         capture_output=True, text=True, timeout=60)
    if res.returncode != 0:
        tail = " | ".join(res.stdout.strip().splitlines()[-2:])
        pytest.skip(f"Slurm tests: the local cluster is not usable ({tail}); "
                    "start it with: bash slurm/local-cluster.sh start")
    return True


def job_of(results, cell_id):
    return json.loads((Path(results) / "submissions.json").read_text())["cells"][cell_id]["job_id"]


def job_logs(results):
    return "\n".join(p.read_text(errors="replace")
                     for p in sorted((Path(results) / "slurm").glob("*/*_log.out")))


def wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def squeue_state(job_id):
    res = subprocess.run(["squeue", "-h", "-r", "-j", job_id.split("_")[0], "-o", "%i|%T"],
                         capture_output=True, text=True)
    return dict(line.split("|") for line in res.stdout.split()).get(job_id)


@pytest.mark.e2e
@pytest.mark.slurm
def test_sweep_on_slurm_records_each_cell_once_and_reports_a_failure(cluster, tmp_path):
    """Three cells as one array on the real cluster: two share a cached dense phase, one raises."""
    from bench.store import ResultStore

    plugin = write_plugin(tmp_path)
    grid = write_grid(tmp_path, methods=["magnitude"], sparsities=[0.5, 0.9],
                      extra_points=[["boom", 0.5]])
    results = tmp_path / "r"
    t0 = time.monotonic()
    res = run_cli("bench.run", "--grid", grid, "--plugin", plugin, "--results", results,
                  "--executor", "slurm", "--cluster", "local", "--wait", "--no-progress",
                  timeout=240)
    print(res.stdout, res.stderr, f"wall {time.monotonic() - t0:.1f}s", sep="\n")
    assert res.returncode == 1, res.stderr  # one cell failed
    assert re.search(r"as 1 job array\(s\): \d+ \(3 tasks\)", res.stdout)
    assert "summary: 2 done, 0 queued, 0 running, 1 failed, 0 missing" in res.stdout

    records, problems = ResultStore(results).load_all()
    assert len(records) == 3 and not problems
    by_label = {(r["label"], r["config"]["sparsity"]): r for r in records}
    failed = by_label[("boom", 0.5)]
    assert failed["status"] == "failed"
    assert "boom: this cell fails on purpose" in failed["error"]["traceback"]
    assert all(r["status"] == "ok" for r in records if r is not failed)
    assert all(r["provenance"]["slurm_job_id"] for r in records)
    # The cells share one dense phase: trained once, by its own phase job, and read by both
    # (their jobs waited for it, never on its lock).
    dense = [by_label[("magnitude", s)]["phases"]["dense"] for s in (0.5, 0.9)]
    assert [d["cached"] for d in dense] == [True, True]
    assert dense[0]["cache_key"] == dense[1]["cache_key"]
    assert all(r["cost"]["seconds_lock_wait"] < 1.0 for r in records)
    assert "plan: 1 phase job(s) in 1 level(s), then 3 cell(s) in 1 array(s)" in res.stdout
    # Every cell ran (and wrote its record) exactly once.
    logs = job_logs(results)
    for r in records:
        assert len(re.findall(rf"cell {r['id']}: ran", logs)) == 1, logs
    # The failure is in the job's log with its traceback, and Slurm saw the job fail.
    assert "RuntimeError: boom: this cell fails on purpose" in logs
    sacct = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "State", "-j",
                            job_of(results, failed["id"])], capture_output=True, text=True)
    assert "FAILED" in sacct.stdout

    status = run_cli("bench.status", "--grid", grid, "--plugin", plugin, "--results", results)
    print(status.stdout)
    assert status.returncode == 0, status.stderr
    assert re.search(rf"{failed['id']}\s+failed\s+boom .*: RuntimeError: boom: this cell fails "
                     r"on purpose$", status.stdout, re.M)
    assert "summary: 2 done, 0 queued, 0 running, 1 failed, 0 missing" in status.stdout


@pytest.mark.e2e
@pytest.mark.slurm
def test_a_failed_phase_job_blocks_its_cells_visibly_and_a_rerun_completes(cluster, tmp_path):
    plugin = write_plugin(tmp_path)
    (tmp_path / "broken.flag").write_text("")
    grid = write_grid(tmp_path, methods=["brokenshared"], sparsities=[0.5, 0.9])
    results = tmp_path / "r"
    args = ["bench.run", "--grid", grid, "--plugin", plugin, "--results", results, "--executor",
            "slurm", "--cluster", "local", "--wait", "--no-progress"]
    res = run_cli(*args, timeout=240)
    print(res.stdout, res.stderr, sep="\n")
    assert res.returncode == 1
    assert not list((results / "records").glob("*.json")) if (results / "records").exists() else True
    (phase,) = [json.loads(p.read_text()) for p in (results / "phases").glob("*.json")]
    assert phase["state"] == "failed" and phase["name"] == "warm"
    subs = json.loads((results / "submissions.json").read_text())["cells"]
    states = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j",
                             ",".join({e["job_id"].split("_")[0] for e in subs.values()})],
                            capture_output=True, text=True).stdout
    assert states and "COMPLETED" not in states and "RUNNING" not in states  # never ran
    status = run_cli("bench.status", "--grid", grid, "--plugin", plugin, "--results", results)
    print(status.stdout)
    blocked = re.findall(r"blocked: phase warm \(job \d+\) failed: RuntimeError: the shared "
                         r"phase fails on purpose", status.stdout)
    assert len(blocked) == 2, status.stdout

    (tmp_path / "broken.flag").unlink()  # fixed: run again
    res = run_cli(*args, timeout=240)
    print(res.stdout, res.stderr, sep="\n")
    assert res.returncode == 0, res.stderr
    records = [json.loads(p.read_text()) for p in (results / "records").glob("*.json")]
    assert len(records) == 2 and all(r["status"] == "ok" for r in records)
    assert all(r["phases"]["warm"]["cached"] for r in records)  # its phase job computed it


def start_slowft(tmp_path, epochs):
    """One slowft cell (a second's sleep per fine-tuning epoch) submitted with --wait in the
    background: (grid, plugin, results, the waiting bench.run)."""
    plugin = write_plugin(tmp_path)
    grid = write_grid(tmp_path, methods=["slowft"], base={**BASE, "sparse_epochs": epochs})
    results = tmp_path / "r"
    waiter = submit_and_wait(["--grid", grid, "--plugin", plugin, "--results", results,
                              "--executor", "slurm", "--cluster", "local", "--no-progress"])
    return grid, plugin, results, waiter


def submit_and_wait(args):
    """`bench.run ... --wait` in the background: it submits, then blocks until the jobs end."""
    return subprocess.Popen([sys.executable, "-m", "bench.run", *map(str, args), "--wait"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def submitted_job(results, timeout=90):
    path = Path(results) / "submissions.json"
    wait_until(path.is_file, timeout, f"{path} to be written")
    (cell_id, entry), = json.loads(path.read_text())["cells"].items()
    return cell_id, entry["job_id"]


def finish(waiter, timeout):
    try:
        out, err = waiter.communicate(timeout=timeout)
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.communicate()
    print(out, err, sep="\n")
    return out, err


@pytest.mark.e2e
@pytest.mark.slurm
def test_cancelled_job_is_reported_not_waited_on(cluster, tmp_path):
    grid, plugin, results, waiter = start_slowft(tmp_path, 30)
    try:
        cell_id, job = submitted_job(results)
        wait_until(lambda: squeue_state(job) == "RUNNING", 60, f"job {job} to run")
        subprocess.run(["scancel", job], check=True)
    finally:
        out, err = finish(waiter, 90)
    assert waiter.returncode == 1, err
    assert re.search(rf"{cell_id}\s+failed\s+slowft .*Slurm job {job} CANCELLED", out)
    assert "summary: 0 done, 0 queued, 0 running, 1 failed, 0 missing" in out
    assert not (results / "records" / f"{cell_id}.json").exists()


@pytest.mark.e2e
@pytest.mark.slurm
def test_timeout_signal_requeues_and_resumes_from_the_checkpoint(cluster, tmp_path):
    """USR2 (what Slurm sends signal_delay_s before the time limit; submitit's
    job._interrupt(timeout=True) sends the same) after the first fine-tuning epoch checkpoint:
    the job requeues itself, --wait keeps waiting, and the cell continues from that epoch."""
    epochs = 6
    grid, plugin, results, waiter = start_slowft(tmp_path, epochs)
    try:
        cell_id, job = submitted_job(results)
        checkpoint = results / "work" / cell_id / "finetune.pt"
        wait_until(checkpoint.is_file, 90, f"the first epoch checkpoint {checkpoint}")
        t_signal = time.monotonic()
        subprocess.run(["scancel", "--signal", "USR2", job], check=True)
        wait_until(lambda: squeue_state(job) in ("PENDING", "REQUEUED"), 30,
                   f"job {job} to be requeued")
        status = run_cli("bench.status", "--grid", grid, "--plugin", plugin, "--results", results)
        print(status.stdout)
        # queued while requeued (held ~10 s for its credential to expire), then running again
        assert re.search(rf"{cell_id}\s+(queued|running)\s+slowft", status.stdout)
    finally:
        out, err = finish(waiter, 180)
    print(f"signal -> done {time.monotonic() - t_signal:.1f}s")
    assert waiter.returncode == 0, err
    assert "summary: 1 done, 0 queued, 0 running, 0 failed, 0 missing" in out

    record = json.loads((results / "records" / f"{cell_id}.json").read_text())
    assert record["status"] == "ok"
    finetune = record["phases"]["finetune"]
    print("finetune phase:", {k: finetune[k] for k in ("resumed_from_epoch", "epochs")},
          "train_loss entries:", len(finetune["train_loss"]))
    assert 0 < finetune["resumed_from_epoch"] < epochs  # continued, not from scratch
    assert len(finetune["train_loss"]) == epochs  # the history carried over the requeue
    logs = job_logs(results)
    assert "once requeued it resumes from finetune.pt" in logs
    assert f"Requeued job {job}" in logs  # submitit's own log line
    assert logs.count(f"cell {cell_id} (slowft") == 2  # started twice: before and after requeue
    assert len(re.findall(rf"cell {cell_id}: ran", logs)) == 1
    sacct = subprocess.run(["sacct", "-n", "-X", "-D", "-P", "-o", "State", "-j",
                            job.split("_")[0]], capture_output=True, text=True).stdout.split()
    assert sacct[0] == "REQUEUED" and sacct[-1] == "COMPLETED", sacct


@pytest.mark.e2e
@pytest.mark.slurm
def test_status_shows_the_progress_of_a_running_job(cluster, tmp_path):
    """While a job runs on the cluster, bench.status shows its phase, epoch / epochs, latest
    validation accuracy and time left, read from the cell's metrics file in the results folder
    (the job writes it on the node; shared phases go there too)."""
    epochs = 20  # a second's sleep per epoch: time for bench.status to start while it runs
    grid, plugin, results, waiter = start_slowft(tmp_path, epochs)
    try:
        cell_id, job = submitted_job(results)
        metrics = results / "work" / cell_id / "metrics.jsonl"

        def finetune_epochs():
            if not metrics.is_file():
                return 0
            lines = [json.loads(x) for x in metrics.read_text().splitlines() if x.endswith("}")]
            return sum(e["event"] == "epoch" and e["phase"] == "finetune" for e in lines)

        wait_until(lambda: finetune_epochs() >= 2, 120, f"two fine-tuning epochs in {metrics}")
        status = run_cli("bench.status", "--grid", grid, "--plugin", plugin, "--results", results)
        print(status.stdout)
        seen = re.search(rf"^  {cell_id}  running  slowft .*job {job}: finetune (\d+)/{epochs}, "
                         rf"val acc (\d\.\d{{4}}), ≈(\d+)s left in finetune$", status.stdout, re.M)
        assert seen, status.stdout
        epoch, val, left = int(seen.group(1)), float(seen.group(2)), int(seen.group(3))
        assert 2 <= epoch < epochs and 0 < left <= (epochs - epoch) * 3
    finally:
        out, err = finish(waiter, 240)
    assert waiter.returncode == 0, err
    record = json.loads((results / "records" / f"{cell_id}.json").read_text())
    assert record["phases"]["finetune"]["val_acc"][epoch - 1] == pytest.approx(val, abs=5e-5)
    assert "summary: 1 done, 0 queued, 0 running, 0 failed, 0 missing" in out
