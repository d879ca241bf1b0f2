"""Faults a long sweep meets: kills, concurrent runs, NaNs, damaged files, and bad input."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.exec.cell import RunOptions, run_cell
from bench.config import RunConfig
from bench.plan.grids import QUICK_BASE
from bench.registry import UsageError
from bench.store import ResultStore, validate_record
from conftest import ROOT, all_records_valid, run_cli, write_grid


def popen_run(*args):
    return subprocess.Popen([sys.executable, "-m", "bench.run", "--no-progress", *map(str, args)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def assert_cache_entries_whole(cache):
    import json

    from bench.store import sha256_file

    for sidecar in cache.rglob("*.json"):
        data = json.loads(sidecar.read_text())
        assert sha256_file(sidecar.parent / data["blob"]) == data["sha256"], sidecar


@pytest.mark.e2e
def test_sigkill_mid_grid_then_rerun_completes_only_the_missing_cells(tmp_path):
    grid = write_grid(tmp_path, dense_epochs=3, sparse_epochs=3)
    results = tmp_path / "r"
    proc = popen_run("--grid", grid, "--results", results)
    deadline = time.time() + 240
    while time.time() < deadline and len(list((results / "records").glob("*.json"))
                                            if (results / "records").exists() else []) < 2:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)  # in the middle of the third cell (or the dense phase)
    proc.wait()
    before, leftovers = all_records_valid(results)
    assert 2 <= len(before) < 6, "the kill must land mid-grid"
    stamps = {p.name: p.stat().st_mtime_ns for p in before}
    # the cache holds only complete entries: every sidecar names whole tensors (a kill between
    # the two leaves tensors no sidecar names: not an entry, never read)
    assert_cache_entries_whole(results / "cache")
    again = run_cli("bench.run", "--grid", grid, "--results", results, "--no-progress")
    assert again.returncode == 0, again.stderr
    assert f"{6 - len(before)} ran, {len(before)} already done" in again.stdout
    after, leftovers = all_records_valid(results)
    assert len(after) == 6 and not leftovers
    assert all(p.stat().st_mtime_ns == stamps[p.name] for p in after if p.name in stamps)


@pytest.mark.e2e
def test_two_concurrent_runs_write_each_cell_once_and_train_shared_phases_once(tmp_path):
    grid = write_grid(tmp_path, methods=("magnitude", "tg-oneshot"), sparsities=(0.5, 0.8, 0.9))
    results = tmp_path / "r"
    procs = [popen_run("--grid", grid, "--results", results) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    records, problems = ResultStore(results).load_all()
    assert len(records) == 6 and not problems
    ran = sum(int(out.split(" ran,")[0].split()[-1]) for out, _ in outs)
    assert ran == 6  # no cell ran in both processes
    for kind in ("teacher", "dense-ce", "tg-student"):
        assert len(list((results / "cache" / kind).glob("*.json"))) == 1
    computed = [r for r in records if "teacher" in r["phases"] and not r["phases"]["teacher"]["cached"]]
    assert len(computed) == 1


NAN_PLUGIN = '''
from bench.method import register_method

@register_method("explodes")
def explodes(ctx):
    model = ctx.make_model()
    def objective(m, batch):
        logits = m(batch.x)
        return logits.sum() * float("inf"), logits
    ctx.train(model, ctx.phase("sparse", ctx.config.sparse_epochs), objective)
    return model
'''


@pytest.mark.e2e
def test_a_nan_cell_fails_with_phase_and_epoch_and_the_grid_goes_on(tmp_path):
    plugin = tmp_path / "nan_plugin.py"
    plugin.write_text(NAN_PLUGIN)
    grid = write_grid(tmp_path, methods=("explodes", "magnitude"), sparsities=(0.5,))
    res = run_cli("bench.run", "--plugin", plugin, "--grid", grid, "--results", tmp_path / "r",
                  "--no-progress")
    assert res.returncode == 1  # finished, but not everything is ok
    assert "1 ran, 0 already done, 1 failed" in res.stdout
    assert "[1 failed]" in res.stdout
    records, _ = ResultStore(tmp_path / "r").load_all()
    failed = [r for r in records if r["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["error"]["type"] == "NonFiniteLoss"
    assert "in phase 'sparse' at epoch 1/1" in failed[0]["error"]["message"]
    assert "NonFiniteLoss" in failed[0]["error"]["traceback"]
    # a failed cell is retried on the next run, an ok one is not
    again = run_cli("bench.run", "--plugin", plugin, "--grid", grid, "--results", tmp_path / "r",
                    "--no-progress")
    assert "1 already done, 1 failed" in again.stdout


@pytest.mark.e2e
def test_damaged_records_and_cache_files_are_recomputed(tmp_path):
    grid = write_grid(tmp_path, methods=("magnitude",), sparsities=(0.5, 0.9))
    results = tmp_path / "r"
    assert run_cli("bench.run", "--grid", grid, "--results", results, "--no-progress").returncode == 0
    store = ResultStore(results)
    records, _ = store.load_all()
    truncated = store.record_path(records[0]["id"])
    truncated.write_text(truncated.read_text()[:100])
    edited = store.record_path(records[1]["id"])
    data = json.loads(edited.read_text())
    data["accuracy"]["test"] = 1.0
    edited.write_text(json.dumps(data))
    blob = next((results / "cache" / "dense-ce").glob("*.pt"))
    blob.write_bytes(blob.read_bytes()[:50])
    res = run_cli("bench.run", "--grid", grid, "--results", results, "--no-progress")
    assert res.returncode == 0 and "2 ran, 0 already done" in res.stdout
    records, problems = store.load_all()
    assert len(records) == 2 and not problems
    # the damaged cache entry was computed again, once, and the second cell read it
    assert sorted(r["phases"]["dense"]["cached"] for r in records) == [False, True]


@pytest.mark.e2e
def test_bad_data_files_name_the_file(tmp_path):
    from conftest import write_cifar10

    write_cifar10(tmp_path, columns=1000)
    res = run_cli("bench.run", "--datasets", "cifar10", "--data-root", tmp_path,
                  "--results", tmp_path / "r", "--methods", "magnitude")
    assert res.returncode == 2
    assert "data_batch_1" in res.stderr and "expected N x 3072" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r" / "records").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    res = run_cli("bench.run", "--datasets", "cifar10", "--data-root", empty, "--results",
                  tmp_path / "r")
    assert res.returncode == 2 and "does not hold cifar-10-batches-py" in res.stderr


@pytest.mark.e2e
def test_unknown_model_on_the_command_line(tmp_path):
    res = run_cli("bench.run", "--set", "model=vgg99", "--dry-run", "--results", tmp_path)
    assert res.returncode == 2 and "unknown model 'vgg99'; valid: " in res.stderr


@pytest.mark.e2e
def test_same_cell_twice_is_bit_identical_on_cpu(tmp_path):
    """The quick grid's setting (digits, resnet20 student, resnet32 teacher), every phase of
    tg-oneshot, at two epochs a phase (the full budgets made this one test cost 73 s)."""
    cfg = RunConfig(method="tg-oneshot", sparsity=0.9, **{**QUICK_BASE, "teacher_epochs": 2,
                                                           "dense_epochs": 2, "sparse_epochs": 2})
    a = run_cell(cfg, ResultStore(tmp_path / "a"), RunOptions(progress=False))
    b = run_cell(cfg, ResultStore(tmp_path / "b"), RunOptions(progress=False))
    assert a["status"] == b["status"] == "ok"
    assert a["accuracy"] == b["accuracy"]
    assert a["sparsity"]["layers"] == b["sparsity"]["layers"]
    sa = torch.load(ResultStore(tmp_path / "a").checkpoint_path(cfg.id), weights_only=True)
    sb = torch.load(ResultStore(tmp_path / "b").checkpoint_path(cfg.id), weights_only=True)
    for key in sa["state_dict"]:
        assert torch.equal(sa["state_dict"][key], sb["state_dict"][key]), key


# --- fuzzing the config ---------------------------------------------------------------------

FIELDS = {
    "sparsity": st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-3, 3)),
    "alpha": st.floats(allow_nan=True, allow_infinity=True),
    "temperature": st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
    "dense_epochs": st.one_of(st.integers(-5, 50), st.floats(-1, 5)),
    "batch_size": st.integers(-4, 600),
    "seed": st.integers(-3, 2 ** 31),
    "lr": st.floats(allow_nan=True, allow_infinity=True),
    "method": st.sampled_from(["magnitude", "random", "tg-oneshot", "nosuch", "MAGNITUDE"]),
    "dataset": st.sampled_from(["digits", "cifar10", "tinyimagenet", "mnist"]),
    "schedule": st.sampled_from(["cosine", "step", "linear"]),
}


def _valid(kw):
    import math

    def num(x):
        return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)

    return (num(kw["sparsity"]) and 0 <= kw["sparsity"] < 1 and num(kw["alpha"])
            and 0 <= kw["alpha"] <= 1
            and (kw["temperature"] is None or (num(kw["temperature"]) and kw["temperature"] > 0))
            and isinstance(kw["dense_epochs"], int) and kw["dense_epochs"] >= 0
            and not (kw["method"] == "tg-oneshot" and kw["dense_epochs"] == 0)
            and kw["batch_size"] >= 1 and kw["seed"] >= 0 and num(kw["lr"]) and kw["lr"] > 0
            and kw["method"] != "nosuch" and kw["dataset"] != "mnist"
            and kw["schedule"] != "linear")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.fixed_dictionaries(FIELDS))
def test_fuzz_every_invalid_config_is_rejected_and_every_valid_one_round_trips(kw):
    if not _valid(kw):
        with pytest.raises(UsageError) as err:
            RunConfig(**kw)
        message = str(err.value)
        assert "\n" not in message and ("=" in message or "unknown" in message)
        return
    cfg = RunConfig(**kw)
    again = RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and again.id == cfg.id
    record = {"id": cfg.id, "label": cfg.label, "status": "failed", "config": cfg.to_dict()}
    from bench.store import seal

    sealed = json.loads(json.dumps(seal(record)))
    validate_record(sealed, "fuzz")
    assert RunConfig.from_dict(sealed["config"]).id == cfg.id
