"""Issue 17 §2: a full results file system loses nothing (a real, small tmpfs; needs root)."""
import json
import os
import subprocess
from pathlib import Path

import pytest

from bench.store import ResultStore, StorageFull, atomic_torch_save, atomic_write_bytes
from conftest import run_cli


@pytest.fixture
def small_fs(tmp_path):
    """A 2 MB tmpfs, unmounted afterwards; skipped where mounting is not permitted."""
    mnt = tmp_path / "fs"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {res.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(folder: Path, leave: int) -> Path:
    """A filler file that leaves about `leave` bytes free."""
    st = os.statvfs(folder)
    free = st.f_bavail * st.f_frsize
    filler = folder / "filler"
    with open(filler, "wb") as fh:
        fh.write(b"\0" * max(0, free - leave))
    return filler


def leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob(".*.tmp")]


def test_a_write_that_does_not_fit_leaves_the_old_file_and_names_the_path(small_fs):
    target = small_fs / "records" / "a.json"
    atomic_write_bytes(target, b"old")
    fill(small_fs, 8192)
    with pytest.raises(StorageFull, match=r"no space left on the device writing .*a\.json"):
        atomic_write_bytes(target, b"x" * 100_000)
    import torch

    with pytest.raises(StorageFull, match=r"writing .*c\.pt"):
        atomic_torch_save({"w": torch.zeros(100_000)}, small_fs / "c.pt")
    assert target.read_bytes() == b"old" and not leftovers(small_fs)
    assert not (small_fs / "c.pt").exists()


@pytest.mark.e2e
def test_a_grid_on_a_full_disk_stops_cleanly_and_a_rerun_completes_it(tmp_path, small_fs):
    from conftest import all_records_valid, write_grid

    grid = write_grid(tmp_path, sparsities=(0.5, 0.7, 0.9))
    # how much a whole run writes, measured on the ordinary disk
    probe = tmp_path / "probe"
    assert run_cli("bench.run", "--grid", grid, "--results", probe, "--no-progress").returncode == 0
    total = sum(p.stat().st_size for p in probe.rglob("*") if p.is_file())
    results = small_fs / "r"
    filler = fill(small_fs, total // 2)
    res = run_cli("bench.run", "--grid", grid, "--results", results, "--no-progress")
    assert res.returncode == 1, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert lines[0].startswith("error: no space left on the device writing " + str(results))
    assert "free some space and run again" in lines[0]
    before, stray = all_records_valid(results)
    assert not stray and not leftovers(results) and len(before) < 6
    from bench.store import sha256_file

    for sidecar in (results / "cache").rglob("*.json"):  # every cache entry is whole or absent
        side = json.loads(sidecar.read_text())
        assert sha256_file(sidecar.parent / side["blob"]) == side["sha256"]
    for blob in (results / "cache").rglob("*.pt"):  # and no tensors without an entry are left
        assert any(json.loads(p.read_text()).get("blob") == blob.name
                   for p in blob.parent.glob("*.json")), blob
    failed = [json.loads(p.read_text()) for p in before]
    assert all(r["status"] == "ok" for r in failed)  # a full disk fails no cell
    stamps = {p.name: p.stat().st_mtime_ns for p in before}
    filler.unlink()
    res = run_cli("bench.run", "--grid", grid, "--results", results, "--no-progress")
    assert res.returncode == 0, res.stderr
    assert f"{len(before)} already done" in res.stdout
    after, _ = all_records_valid(results)
    assert len(after) == 6 and all(p.stat().st_mtime_ns == stamps[p.name] for p in before)
    records, problems = ResultStore(results).load_all()
    assert not problems and all(r["status"] == "ok" for r in records)
