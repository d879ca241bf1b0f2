import json
import multiprocessing as mp
import time

import pytest
import torch

from bench.store.cache import PhaseCache


def test_computed_once_then_read(tmp_path):
    cache = PhaseCache(tmp_path)
    calls = []

    def compute(scratch):
        calls.append(1)
        return {"w": torch.arange(3.0)}, {"acc": 0.5}

    a = cache.get_or_compute("teacher", {"k": 1}, compute)
    b = cache.get_or_compute("teacher", {"k": 1}, compute)
    c = cache.get_or_compute("teacher", {"k": 2}, compute)
    assert (a.hit, b.hit, c.hit) == (False, True, False) and len(calls) == 2
    assert torch.equal(b.payload["w"], torch.arange(3.0)) and b.meta["acc"] == 0.5
    assert "seconds" in b.meta


def test_a_damaged_entry_is_recomputed(tmp_path):
    cache = PhaseCache(tmp_path)
    entry = cache.get_or_compute("t", {"k": 1}, lambda scratch: ({"w": torch.ones(4)}, {}))
    blob, meta, _ = cache.paths("t", entry.key_hash)
    blob.write_bytes(blob.read_bytes()[:20])  # truncated
    again = cache.get_or_compute("t", {"k": 1}, lambda scratch: ({"w": torch.zeros(4)}, {}))
    assert not again.hit and torch.equal(again.payload["w"], torch.zeros(4))
    meta.unlink()  # a missing sidecar means an unfinished write
    assert not cache.get_or_compute("t", {"k": 1}, lambda scratch: ({"w": torch.ones(1)}, {})).hit


def _worker(root, out):
    def compute(scratch):
        time.sleep(1.0)  # long enough for the other process to be waiting on the lock
        return {"w": torch.ones(2)}, {"pid": mp.current_process().pid}

    entry = PhaseCache(root).get_or_compute("teacher", {"k": 1}, compute)
    out.put((entry.hit, entry.meta["pid"]))


@pytest.mark.slow
def test_two_processes_never_both_compute(tmp_path):
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(str(tmp_path), out)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    results = sorted(out.get(timeout=5) for _ in procs)
    assert [hit for hit, _ in results] == [False, True]
    assert results[0][1] == results[1][1]  # both see the one computing process's result
    metas = list(tmp_path.rglob("*.json"))
    assert len(metas) == 1 and json.loads(metas[0].read_text())["meta"]["pid"] == results[0][1]


def test_a_computation_killed_half_way_resumes_from_its_scratch_folder(tmp_path):
    cache = PhaseCache(tmp_path)

    def killed(scratch):
        (scratch / "teacher.pt").write_text("epoch 3 of 5")
        raise KeyboardInterrupt  # a preempted job

    with pytest.raises(KeyboardInterrupt):
        cache.get_or_compute("teacher", {"k": 1}, killed)
    seen = []

    def resumed(scratch):
        seen.append((scratch / "teacher.pt").read_text())
        return {"w": torch.ones(1)}, {}

    entry = cache.get_or_compute("teacher", {"k": 1}, resumed)
    assert seen == ["epoch 3 of 5"] and not entry.hit
    assert not list(tmp_path.rglob("*.partial"))  # removed once the entry is complete


def test_two_writers_without_a_working_lock_publish_one_whole_entry(tmp_path, monkeypatch):
    """Where flock does not reach across nodes, two jobs may compute the same entry at once:
    the first to publish wins, the second discards its files and returns the published entry."""
    import contextlib
    import threading

    import torch

    import bench.store.cache

    monkeypatch.setattr(bench.store.cache, "_lock", lambda path: contextlib.nullcontext())
    cache = PhaseCache(tmp_path)
    both_computing = threading.Barrier(2)
    results = {}

    def compute_as(name):
        def compute(scratch):
            both_computing.wait(timeout=30)  # neither sees the other's entry before computing
            return {"w": torch.full((3,), float(len(name)))}, {"by": name}
        results[name] = cache.get_or_compute("t", {"k": 1}, compute)

    threads = [threading.Thread(target=compute_as, args=(n,)) for n in ("a", "bb")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    a, b = results["a"], results["bb"]
    assert sorted([a.hit, b.hit]) == [False, True]  # one published, one read it
    winner = a if not a.hit else b
    assert torch.equal(a.payload["w"], b.payload["w"]) and a.meta["by"] == b.meta["by"]
    assert len(list((tmp_path / "t").glob("*.pt"))) == 1  # the loser's tensors are gone
    assert not list((tmp_path / "t").glob("*.staged"))
    again = cache.get_or_compute("t", {"k": 1}, lambda s: (_ for _ in ()).throw(AssertionError))
    assert again.hit and torch.equal(again.payload["w"], winner.payload["w"])


def test_a_file_system_refusing_flock_falls_back_to_a_lock_file(tmp_path, monkeypatch):
    import bench.store.cache

    class Refusing:
        def __init__(self, path):
            pass

        def acquire(self):
            raise OSError(37, "No locks available")

    monkeypatch.setattr(bench.store.cache, "FileLock", Refusing)
    entry = PhaseCache(tmp_path).get_or_compute("t", {"k": 2}, lambda s: ({}, {"x": 1}))
    assert entry.meta["x"] == 1 and not entry.hit
    assert not list((tmp_path / "t").glob("*.soft"))  # released
