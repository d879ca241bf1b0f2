import json
import multiprocessing as mp
import time

import torch

from bench.cache import PhaseCache


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

    import pytest

    with pytest.raises(KeyboardInterrupt):
        cache.get_or_compute("teacher", {"k": 1}, killed)
    seen = []

    def resumed(scratch):
        seen.append((scratch / "teacher.pt").read_text())
        return {"w": torch.ones(1)}, {}

    entry = cache.get_or_compute("teacher", {"k": 1}, resumed)
    assert seen == ["epoch 3 of 5"] and not entry.hit
    assert not list(tmp_path.rglob("*.partial"))  # removed once the entry is complete
