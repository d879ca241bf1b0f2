"""bench/exec/dispatch.py: the cell lock, and --executor local (cells in spawned worker processes)."""
import os
import subprocess
import sys

import pytest
import yaml
from filelock import FileLock

from bench.exec.cell import RunOptions
from bench.exec.locked import Outcome, pending, run_one_locked
from bench.plan.grid import make_config
from bench.store import ResultStore
from conftest import ROOT, TINY

# Loaded by the workers only when the parent passes --plugin on to them.
PLUGIN = '''
import os

from bench.masks import magnitude_scores
from bench.method import register_method


@register_method("dispatch-whoami")
def whoami(ctx):
    ctx.extra["pid"] = os.getpid()
    ctx.extra["ppid"] = os.getppid()
    model = ctx.dense_model()
    with ctx.clock("prune"):
        ctx.prune(model, magnitude_scores(model))
    ctx.train(model, ctx.phase("finetune", ctx.config.sparse_epochs))
    return model


@register_method("dispatch-boom")
def boom(ctx):
    raise ValueError("dispatch-boom fails on purpose")
'''


@pytest.mark.e2e
def test_local_executor_runs_cells_in_worker_processes(tmp_path):
    plugin = tmp_path / "plugin.py"
    plugin.write_text(PLUGIN)
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({
        "name": "local", "methods": ["dispatch-whoami"], "datasets": ["synthetic"],
        "sparsities": [0.5, 0.9], "extra_points": [["dispatch-boom", 0.5]],
        "base": {k: v for k, v in TINY.items() if k != "dataset"}}))
    results = tmp_path / "r"
    proc = subprocess.Popen([sys.executable, "-m", "bench.run", "--grid", str(grid), "--plugin",
                             str(plugin), "--results", str(results), "--executor", "local",
                             "--workers", "2", "--no-progress"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 1, err  # one cell failed; the others completed
    assert "2 ran, 0 already done, 1 failed" in out
    assert "failed: ValueError: dispatch-boom fails on purpose" in err
    assert "Traceback" not in err
    records, problems = ResultStore(results).load_all()
    assert len(records) == 3 and not problems
    ok = [r for r in records if r["status"] == "ok"]
    failed = [r for r in records if r["status"] == "failed"]
    assert len(ok) == 2 and len(failed) == 1
    assert "dispatch-boom fails on purpose" in failed[0]["error"]["traceback"]
    # ran in bench.run's worker subprocesses, not in bench.run itself
    assert all(r["extra"]["ppid"] == proc.pid for r in ok)
    assert proc.pid not in {r["extra"]["pid"] for r in ok}
    # The shared dense phase was trained once (by one worker) and read by the other.
    assert sorted(r["phases"]["dense"]["cached"] for r in ok) == [False, True]
    assert all(r["provenance"]["plugins"] == [str(plugin.resolve())] for r in records)


TINY_CELL = ["--methods", "magnitude", "--datasets", "synthetic", "--sparsities", "0.5",
             "--seeds", "0", "--no-progress", "--no-checkpoints",
             *(f"--set={k}={v}" for k, v in TINY.items() if k != "dataset")]


@pytest.mark.e2e
def test_threads_reach_torch_in_the_local_workers(tmp_path):
    """--threads 1 is neither the default of one worker (all the cores) nor what torch takes
    from the environment given here, so the record shows whether it reached the worker's torch."""
    out = subprocess.run([sys.executable, "-m", "bench.run", *TINY_CELL, "--results",
                          str(tmp_path / "r"), "--executor", "local", "--workers", "1",
                          "--threads", "1"], cwd=ROOT, capture_output=True, text=True,
                         timeout=600, env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert out.returncode == 0, out.stderr[-2000:]
    (record,) = ResultStore(tmp_path / "r").load_all()[0]
    assert record["status"] == "ok", record.get("error")
    assert record["provenance"]["threads"] == 1, "the worker's torch did not get --threads 1"


@pytest.mark.e2e
def test_threads_reach_torch_in_an_inprocess_run(tmp_path, capsys):
    import torch

    from bench.run import main

    before = torch.get_num_threads()
    torch.set_num_threads(2)  # so that --threads 1 is not what this process had already
    try:
        code = main([*TINY_CELL, "--results", str(tmp_path / "r"), "--threads", "1"])
        ran_with = torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
    assert code == 0, capsys.readouterr().err[-2000:]
    (record,) = ResultStore(tmp_path / "r").load_all()[0]
    assert record["status"] == "ok", record.get("error")
    assert record["provenance"]["threads"] == 1 == ran_with, "torch did not get --threads 1"


def test_run_one_locked_skips_a_busy_cell_and_a_done_one(tmp_path):
    store = ResultStore(tmp_path)
    cfg = make_config(method="magnitude", sparsity=0.5, **TINY)
    store.lock_path(cfg.id).parent.mkdir(parents=True)
    outcome = Outcome()
    with FileLock(str(store.lock_path(cfg.id))):  # another process runs it right now
        assert run_one_locked(cfg, store, RunOptions(progress=False), False, outcome) is None
    assert outcome.busy == [cfg.id]
    store.write({"id": cfg.id, "label": cfg.label, "status": "ok", "config": cfg.to_dict(),
                 "accuracy": {"test": 0.5}})
    assert run_one_locked(cfg, store, RunOptions(progress=False), False, outcome) is None
    assert outcome.skipped == [cfg.id]
    assert pending([cfg], store, force=False) == [] and pending([cfg], store, force=True) == [cfg]


def test_force_does_not_resume_the_finished_runs_leftover_checkpoints(tmp_path, monkeypatch):
    """A kill between writing the record and clearing the work folder leaves the last epoch's
    checkpoints; --force must retrain, not resume at the end and train nothing."""
    import bench.exec.cell as cell_module

    store = ResultStore(tmp_path)
    cfg = make_config(method="magnitude", sparsity=0.5, **{**TINY, "sparse_epochs": 2})
    with monkeypatch.context() as m:  # the kill: the clean-up after the record never runs
        m.setattr(cell_module.shutil, "rmtree", lambda *a, **k: None)
        first = run_one_locked(cfg, store, RunOptions(progress=False), False, Outcome())
    assert first["status"] == "ok" and any(store.work_dir(cfg.id).iterdir())
    again = run_one_locked(cfg, store, RunOptions(progress=False), True, Outcome())
    assert again["phases"]["finetune"]["resumed_from_epoch"] == 0
    assert len(again["accuracy"]["val_history"]["finetune"]) == 2


def test_a_prefetch_leaves_the_work_of_a_cell_running_elsewhere(tmp_path):
    from bench.exec.cell import clear_work_unless_running

    store = ResultStore(tmp_path)
    work = store.work_dir("abc123")
    work.mkdir(parents=True)
    (work / "finetune.pt").write_bytes(b"epoch checkpoint")
    store.lock_path("abc123").parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(store.lock_path("abc123"))):  # the cell runs in another process
        clear_work_unless_running(store, "abc123")
    assert (work / "finetune.pt").is_file()
    clear_work_unless_running(store, "abc123")  # nobody runs it: the stale work goes
    assert not work.exists()


@pytest.mark.parametrize("args,needle", [
    (["--executor", "local", "--workers", "0"], "--workers 0 is invalid; it must be >= 1"),
    (["--workers", "2"], "--workers is for --executor local (not inprocess)"),
    (["--executor", "local", "--workers", "two"], "argument --workers: invalid int value"),
    (["--threads", "0"], "--threads 0 is invalid; it must be >= 1"),
    (["--executor", "slurm", "--cluster", "local", "--threads", "1"],
     "--threads is for the inprocess and local executors"),
])
def test_bad_worker_arguments(tmp_path, capsys, args, needle):
    from bench.run import main

    try:
        code = main(["--results", str(tmp_path / "r"), *args])
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and needle in err, err
    assert not (tmp_path / "r").exists()


def test_inprocess_stays_the_default():
    from bench.run import build_parser

    args = build_parser().parse_args([])
    assert (args.executor, args.workers, args.cluster, args.wait) == ("inprocess", None, None,
                                                                       False)


@pytest.mark.e2e
def test_threads_reach_torch_in_both_runs_of_a_parity_check(tmp_path, capsys):
    """bench.parity passes --threads to each of its two bench.run calls, so a parity check can
    run at one thread beside a background study."""
    import torch

    from bench.parity import main

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        main([*(a for a in TINY_CELL if a not in ("--no-progress", "--no-checkpoints")),
              "--results", str(tmp_path / "p"), "--threads", "1"])
    finally:
        torch.set_num_threads(before)
    for precision in ("fp32", "bf16"):
        (record,) = ResultStore(tmp_path / "p" / precision).load_all()[0]
        assert record["status"] == "ok", record.get("error")
        assert record["provenance"]["threads"] == 1, f"the {precision} run did not get --threads 1"


COUNTED_DATA = '''
import dataclasses
import os

from bench.data import register_dataset
from bench.data.datasets import DATASETS

SYNTHETIC = DATASETS.get("synthetic")


def load(root, download):
    with open(os.environ["PRUNEBENCH_TEST_LOADS"], "a") as fh:
        fh.write(f"{os.getpid()}\\n")
    return SYNTHETIC.load(root, download)


register_dataset(dataclasses.replace(SYNTHETIC, name="counted-loads", load=load))
'''


@pytest.mark.e2e
def test_an_inprocess_run_holds_one_copy_of_its_dataset(tmp_path):
    """bench.run loads each dataset before running (to fail fast on a bad root) and its cells then
    use that copy: a TinyImageNet cell held its 1.4 GB of splits twice while the preflight and the
    cells asked for it with two different lru_cache keys. Two cells: one load."""
    plugin = tmp_path / "counted.py"
    plugin.write_text(COUNTED_DATA)
    (tmp_path / "data").mkdir()
    loads = tmp_path / "loads.txt"
    cell = [a for a in TINY_CELL if a not in ("--datasets", "synthetic")]
    out = subprocess.run([sys.executable, "-m", "bench.run", *cell, "--plugin", str(plugin),
                          "--datasets", "counted-loads", "--sparsities", "0.5,0.9",
                          "--data-root", "data", "--results", str(tmp_path / "r")],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PRUNEBENCH_TEST_LOADS": str(loads),
                              "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr[-2000:]
    assert len(ResultStore(tmp_path / "r").load_all()[0]) == 2
    assert len(loads.read_text().splitlines()) == 1, "the dataset was loaded more than once"
