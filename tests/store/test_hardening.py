"""Issue 17: files in a results or data folder cannot run code, and the last bad-input gaps."""
import hashlib
import json
import logging
import os
import pickle
import signal
import subprocess
import sys
import time

import pytest
import torch

from bench.store.cache import PhaseCache, key_hash
from bench.exec.cell import RunOptions, run_cell
from bench.config import RunConfig
from bench.data import DataError, load_dataset
from bench.method.rounds import RoundState
from bench.store import DamagedFile, ResultStore, safe_torch_load
from conftest import ROOT, TINY, run_cli


class Planted:
    """A pickle whose loading would create a marker file: the attack of issue 17."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def plant(path, marker, as_torch=True):
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"state_dict": Planted(marker), "version": 1}
    if as_torch:
        torch.save(payload, path)  # a real torch zip file with the gadget inside
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    return path


def test_the_planted_pickle_really_runs_code_under_the_old_load(tmp_path):
    """The test's own control: without weights_only the gadget fires."""
    marker = tmp_path / "pwned"
    path = plant(tmp_path / "x.pt", marker)
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_safe_load_refuses_the_planted_pickle_and_names_the_file(tmp_path):
    marker = tmp_path / "pwned"
    path = plant(tmp_path / "x.pt", marker)
    with pytest.raises(DamagedFile, match="x.pt is damaged or not a plain tensor file"):
        safe_torch_load(path)
    assert not marker.exists()
    torch.save({"w": torch.ones(2), "n": [1, 2.5, "a", None], "g": torch.get_rng_state()},
               tmp_path / "ok.pt")
    assert safe_torch_load(tmp_path / "ok.pt")["n"] == [1, 2.5, "a", None]


def test_a_planted_cache_entry_with_a_forged_checksum_is_recomputed(tmp_path, caplog):
    marker = tmp_path / "pwned"
    cache = PhaseCache(tmp_path / "cache")
    key = {"k": 1}
    blob, meta_path, _ = cache.paths("dense-ce", key_hash("dense-ce", key))
    plant(blob, marker)
    digest = hashlib.sha256(blob.read_bytes()).hexdigest()
    meta_path.write_text(json.dumps({"sha256": digest, "meta": {"x": 1}}))  # the forged sidecar
    calls = []

    def compute(scratch):
        calls.append(1)
        return {"w": torch.arange(3.0)}, {"x": 2}

    with caplog.at_level(logging.WARNING):
        entry = cache.get_or_compute("dense-ce", key, compute)
    assert not marker.exists()
    assert calls == [1] and not entry.hit and torch.equal(entry.payload["w"], torch.arange(3.0))
    assert "is damaged" in caplog.text and str(blob) in caplog.text
    again = cache.get_or_compute("dense-ce", key, compute)  # the recomputed entry is trusted
    assert again.hit and calls == [1]


@pytest.mark.e2e
def test_planted_work_state_is_ignored_and_the_cell_recomputes(tmp_path, caplog):
    """Epoch checkpoints in work/ and in a cache entry's scratch folder, and the rounds state."""
    marker = tmp_path / "pwned"
    store = ResultStore(tmp_path / "r")
    cfg = RunConfig(method="magnitude", sparsity=0.5, **TINY)
    plant(store.work_dir(cfg.id) / "finetune.pt", marker)
    partial = store.cache_dir / "dense-ce"
    with caplog.at_level(logging.WARNING):
        assert RoundState.load(plant(tmp_path / "w" / "rounds.pt", marker), cfg.id) is None
        # the dense phase's scratch folder: its name is the entry's digest, found by a first run
        first = run_cell(cfg, ResultStore(tmp_path / "probe"), RunOptions(progress=False))
        digest = next((tmp_path / "probe" / "cache" / "dense-ce").glob("*.json")).stem
        plant(partial / f"{digest}.partial" / "dense.pt", marker)
        rec = run_cell(cfg, store, RunOptions(progress=False))
    assert not marker.exists()
    assert rec["status"] == "ok", rec.get("error")
    assert rec["accuracy"]["test"] == first["accuracy"]["test"]  # trained from the start
    assert "finetune.pt is damaged" in caplog.text and "dense.pt is damaged" in caplog.text
    assert "rounds.pt is damaged" in caplog.text


@pytest.mark.e2e
def test_a_planted_cifar_batch_runs_no_code_and_is_named(tmp_path):
    from conftest import write_cifar10

    folder = write_cifar10(tmp_path)
    marker = tmp_path / "pwned"
    (folder / "data_batch_3").write_bytes(pickle.dumps(Planted(marker), protocol=2))
    with pytest.raises(DataError, match="data_batch_3 is not a readable CIFAR pickle.*posix.system"
                                        "|data_batch_3 is not a readable CIFAR pickle.*os.system"):
        load_dataset("cifar10", tmp_path)
    assert not marker.exists()
    res = run_cli("bench.run", "--datasets", "cifar10", "--data-root", tmp_path, "--results",
                  tmp_path / "r", "--methods", "magnitude", "--no-progress")
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
    assert "data_batch_3" in res.stderr and not marker.exists()


def test_old_numpy_module_names_still_load(tmp_path):
    """The official files are Python 2 pickles naming numpy.core.multiarray (numpy 2: numpy._core)."""
    import numpy as np

    from bench.data.datasets import _read_pickle

    entry = {"data": np.arange(12, dtype=np.uint8).reshape(2, 6), "labels": [np.int64(3), 1],
             "batch_label": b"x"}
    raw = pickle.dumps(entry, protocol=2).replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray" in raw
    (tmp_path / "b").write_bytes(raw)
    got = _read_pickle(tmp_path / "b")
    assert got["data"].tolist() == entry["data"].tolist() and got["labels"] == [3, 1]


# --- §3: bad input --------------------------------------------------------------------------


@pytest.mark.e2e
def test_results_pointing_at_a_file_is_one_line(tmp_path):
    f = tmp_path / "results.txt"
    f.write_text("x")
    for target in (f, f / "sub"):
        res = run_cli("bench.run", "--results", target, "--dry-run")
        assert res.returncode == 2, res.stderr
        assert len(res.stderr.strip().splitlines()) == 1 and "is a file, not a folder" in res.stderr
        assert str(f) in res.stderr


@pytest.mark.e2e
def test_device_is_checked_before_a_dry_run(tmp_path):
    res = run_cli("bench.run", "--device", "tpu", "--dry-run", "--results", tmp_path)
    assert res.returncode == 2 and "--device 'tpu' is invalid; valid: auto, cpu" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and not res.stdout


@pytest.mark.e2e
def test_an_unknown_timm_model_is_rejected_before_anything_runs(tmp_path):
    res = run_cli("bench.run", "--set", "model=timm:resnet_bogus", "--results", tmp_path / "r",
                  "--no-progress")
    assert res.returncode == 2 and "unknown timm model 'resnet_bogus'" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r" / "records").exists()
    res = run_cli("bench.run", "--set", "model=timm:resnet10t", "--dry-run", "--results",
                  tmp_path / "r")
    assert res.returncode == 0, res.stderr


@pytest.mark.e2e
def test_sigterm_ends_like_ctrl_c_with_143_and_nothing_corrupt(tmp_path):
    from conftest import all_records_valid, write_grid

    # long retraining, so that the stop comes with a cell part-way through its epochs
    grid = write_grid(tmp_path, sparsities=(0.5,), dense_epochs=2, sparse_epochs=12)
    results = tmp_path / "r"
    proc = subprocess.Popen([sys.executable, "-m", "bench.run", "--no-progress", "--grid", str(grid),
                             "--results", str(results)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    def cut_short():  # a finished cell and another's epoch checkpoint (not the finished one's)
        return list(results.glob("records/*.json")) and any(
            not (results / "records" / f"{p.parent.name}.json").exists()
            for p in results.glob("work/*/*.pt"))

    while time.time() < deadline and not cut_short():
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    (cut,) = ResultStore(results).unfinished_work()
    assert cut.parent.name == "work"
    # the second line says where the cell cut short keeps its last epoch (a store moved
    # without that folder starts it afresh)
    assert err.strip().splitlines() == [
        "interrupted; finished cells are saved, run again to continue",
        f"kept: epoch checkpoints in 1 folder(s), {cut}; a run on this store resumes from "
        "them (take these folders along to resume elsewhere)"]
    before, leftovers = all_records_valid(results)
    assert before and not leftovers
    res = run_cli("bench.run", "--grid", grid, "--results", results, "--no-progress")
    assert res.returncode == 0 and f"{len(before)} already done" in res.stdout


def test_the_kept_line_leaves_out_finished_cells_and_work_still_running(tmp_path, capsys):
    """Only folders a rerun would resume: not a finished cell's (killed before its clean-up),
    not one whose lock is held (a local worker finishing its cell, another bench.run)."""
    from filelock import FileLock

    from bench.cli.guards import say_kept_work

    store = ResultStore(tmp_path)
    done = RunConfig(method="magnitude", sparsity=0.5, **TINY)
    store.write({"id": done.id, "label": "magnitude", "status": "ok", "config": done.to_dict(),
                 "accuracy": {"test": 0.5}})
    folders = {name: tmp_path / path for name, path in [
        ("cut", "work/aaa"), ("done", f"work/{done.id}"), ("running", "work/ccc"),
        ("cut phase", "cache/dense-ce/d1.partial"), ("running phase", "cache/dense-ce/d2.partial")]}
    for folder in folders.values():
        folder.mkdir(parents=True)
        (folder / "dense.pt").write_bytes(b"x")
    store.lock_path("ccc").parent.mkdir(parents=True)
    held = [FileLock(str(store.lock_path("ccc"))), FileLock(str(tmp_path / "cache/dense-ce/d2.lock"))]
    for lock in held:
        lock.acquire()
    try:
        say_kept_work(tmp_path)
    finally:
        for lock in held:
            lock.release()
    err = capsys.readouterr().err
    assert err.startswith("kept: epoch checkpoints in 2 folder(s), "), err
    assert f"{folders['cut phase']}, {folders['cut']};" in err
    say_kept_work(tmp_path / "nothing here")
    assert capsys.readouterr().err == ""


def test_data_that_cannot_fit_the_device_is_one_line_before_training(monkeypatch):
    from argparse import Namespace

    from bench.cli import guards
    from bench.registry import UsageError

    cells = [RunConfig(method="magnitude", sparsity=0.5, **TINY)]
    args = Namespace(data_root=None, download=False)
    need = 3 * 8 * 8 * (320 + 128) + 8 * (320 + 128)  # synthetic: uint8 images and int64 labels
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (need, 10 * need))
    with pytest.raises(UsageError, match=r"synthetic: its splits need 0\.0 GiB on cuda.*"
                                         r"use a larger device or --device cpu"):
        guards.check_data_fits(cells, args, "cuda")
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (2 * need, 10 * need))
    guards.check_data_fits(cells, args, "cuda")  # fits with a quarter to spare
    guards.check_data_fits(cells, args, "cpu")


@pytest.mark.e2e
def test_a_closed_pipe_ends_the_listing_quietly(tmp_path):
    """`bench.run --dry-run | head -1`: the reader leaves after one line; no traceback."""
    proc = subprocess.Popen([sys.executable, "-m", "bench.run", "--grid", "paper", "--dry-run",
                             "--results", str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    first = proc.stdout.readline()
    proc.stdout.close()  # what `head -1` does after its line
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert first.startswith(b"grid paper: 1170 cells")
    assert "Traceback" not in err and err == ""
