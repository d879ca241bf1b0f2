"""bench/method/rounds.py: the round-by-round state survives a kill, and the seconds of finished rounds
are counted once, from the saved state."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from bench.exec.cell import RunOptions, run_cell
from bench.config import RunConfig
from bench.method.rounds import STATE_FILE, RoundState, resume
from bench.store import ResultStore

REPO = Path(__file__).resolve().parents[2]


def fake_ctx(work_dir: Path, cell_id: str = "cell0") -> SimpleNamespace:
    return SimpleNamespace(work_dir=work_dir, phases={"dense": {"seconds": 5.0, "shared": True}},
                           extra={}, config=SimpleNamespace(id=cell_id))


def run_rounds(ctx, stop_after: int, total: int = 4) -> list[int]:
    """A toy iterative method: round i records a phase of i seconds and saves {"w": i}."""
    seen = []
    rounds = resume(ctx)
    w = rounds.payload.get("w", torch.zeros(3))
    for rnd in rounds:
        if rnd.index > total:
            break
        if rnd.index > stop_after:
            raise KeyboardInterrupt  # the "kill": the round is not saved
        ctx.phases[rnd.phase("train")] = {"seconds": float(rnd.index)}
        ctx.phases[rnd.phase("prune")] = {"seconds": 0.5}
        (ctx.work_dir / f"{rnd.phase('train')}.pt").write_bytes(b"epoch checkpoint")
        w = w + 1
        rnd.save({"w": w}, sparsity=0.1 * rnd.index)
        seen.append(rnd.index)
    return seen


def test_resume_continues_at_the_first_unfinished_round(tmp_path):
    ctx = fake_ctx(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        run_rounds(ctx, stop_after=2)
    assert ctx.extra["rounds_total"]["count"] == 2
    # the epoch checkpoints of finished rounds are superseded by the round state
    assert not (tmp_path / "round1-train.pt").exists()

    ctx2 = fake_ctx(tmp_path)  # a new process
    assert run_rounds(ctx2, stop_after=99) == [3, 4]
    records = ctx2.extra["rounds"]
    assert [r["round"] for r in records] == [1, 2, 3, 4]
    assert [r["resumed"] for r in records] == [True, True, False, False]
    assert [r["seconds"] for r in records] == [1.5, 2.5, 3.5, 4.5]
    total = ctx2.extra["rounds_total"]
    assert total == {"count": 4, "seconds": 12.0, "resumed_rounds": 2, "seconds_resumed": 4.0}
    # the phases of the resumed rounds are back in the cell's phases, marked, so costs include them
    assert ctx2.phases["round1-train"] == {"seconds": 1.0, "resumed": True}
    assert "resumed" not in ctx2.phases["round3-train"]
    state = RoundState.load(tmp_path / STATE_FILE, "cell0")
    assert state.done == 4 and torch.equal(state.payload["w"], torch.full((3,), 4.0))
    # the shared phase recorded before the loop is not a round's
    assert all("dense" not in r["phases"] for r in records)


def test_state_of_another_cell_is_ignored(tmp_path):
    run_rounds(fake_ctx(tmp_path, "cellA"), stop_after=99, total=2)
    ctx = fake_ctx(tmp_path, "cellB")
    rounds = resume(ctx)
    assert rounds.done == 0 and rounds.payload == {}


def test_a_round_must_save_or_break(tmp_path):
    rounds = resume(fake_ctx(tmp_path))
    with pytest.raises(RuntimeError, match="without Round.save"):
        for _ in rounds:
            pass


# --- a real run, killed with SIGKILL between rounds and started again ---------------------------

CHILD = textwrap.dedent("""
    import sys
    from bench.exec.cell import RunOptions, run_cell
    from bench.config import RunConfig
    from bench.plugins import load_builtins
    from bench.store import ResultStore
    load_builtins()  # a script loads the built-ins once, as the command lines do
    cfg = RunConfig.from_dict({cfg!r})
    rec = run_cell(cfg, ResultStore({store!r}), RunOptions(progress=False, save_checkpoints=False))
    sys.exit(0 if rec["status"] == "ok" else 1)
""")


def _child(cfg: RunConfig, store: Path, log: Path) -> subprocess.Popen:
    code = CHILD.format(cfg=cfg.to_dict(), store=str(store))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # tiny tensors; and robust on a shared machine
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env, stdout=out,
                                stderr=subprocess.STDOUT)


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.parametrize("method,sparsity", [("egp", 0.8), ("colt", 0.5)])
def test_sigkill_between_rounds_resumes_with_honest_seconds(tmp_path, method, sparsity):
    # 3 to 4 rounds of a few tenths of a second each: the kill lands between two of them
    cfg = RunConfig(method=method, dataset="synthetic", model="smallcnn", sparsity=sparsity,
                    dense_epochs=1, round_epochs=10, sparse_epochs=1,
                    options=(("prune_fraction", 0.25),) if method == "colt" else ())
    store = ResultStore(tmp_path)
    state_path = store.work_dir(cfg.id) / STATE_FILE
    log = tmp_path / "child.log"
    proc = _child(cfg, tmp_path, log)
    deadline = time.monotonic() + 120
    while not state_path.exists():  # the file appears when round 1 is saved
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "round 1 never finished"
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert store.read(cfg.id) is None, "the run finished before it could be killed"
    saved = RoundState.load(state_path, cfg.id)
    done = saved.done
    assert done >= 1 and done == len(saved.records)

    proc = _child(cfg, tmp_path, log)
    assert proc.wait(timeout=300) == 0, log.read_text()
    record = store.read(cfg.id)
    rounds, total = record["extra"]["rounds"], record["extra"]["rounds_total"]
    assert len(rounds) > done, "no round left after the kill: make the run longer"
    assert total["resumed_rounds"] == done
    assert [r["round"] for r in rounds] == list(range(1, len(rounds) + 1))
    assert [r["resumed"] for r in rounds] == [True] * done + [False] * (len(rounds) - done)
    # seconds of the rounds done before the kill come from the saved state, and are counted
    assert [r["seconds"] for r in rounds[:done]] == [r["seconds"] for r in saved.records]
    assert total["seconds"] == pytest.approx(sum(r["seconds"] for r in rounds))
    assert total["seconds_resumed"] == pytest.approx(sum(r["seconds"] for r in saved.records))
    assert record["phases"]["round1-prune"]["resumed"] is True
    round_phase_seconds = sum(p["seconds"] for n, p in record["phases"].items()
                              if n.startswith("round"))
    assert round_phase_seconds == pytest.approx(total["seconds"])
    assert record["cost"]["seconds_total"] >= total["seconds"]  # shared rounds count as if alone
    assert record["sparsity"]["prunable"] == pytest.approx(sparsity, abs=1e-4)
    assert not store.work_dir(cfg.id).exists()


@pytest.mark.e2e
@pytest.mark.parametrize("method", ["egp", "colt"])
def test_resumed_run_equals_uninterrupted_run(tmp_path, monkeypatch, method):
    """Stop a run right after round 1 is saved, resume it: same rounds, same final weights."""
    cfg = RunConfig(method=method, dataset="synthetic", model="smallcnn",
                    sparsity={"egp": 0.7, "colt": 0.3}[method],
                    dense_epochs=1, round_epochs=1, sparse_epochs=1)
    options = RunOptions(progress=False)
    whole = ResultStore(tmp_path / "whole")
    assert run_cell(cfg, whole, options)["status"] == "ok"

    import bench.method.rounds

    original = bench.method.rounds.Round.save

    def save_then_die(self, *args, **kwargs):
        rec = original(self, *args, **kwargs)
        if self.index == 1:
            raise RuntimeError("preempted")
        return rec

    cut = ResultStore(tmp_path / "cut")
    monkeypatch.setattr(bench.method.rounds.Round, "save", save_then_die)
    assert run_cell(cfg, cut, options)["status"] == "failed"
    monkeypatch.setattr(bench.method.rounds.Round, "save", original)
    record = run_cell(cfg, cut, options)
    assert record["status"] == "ok"
    assert record["extra"]["rounds_total"]["resumed_rounds"] == 1
    assert len(record["extra"]["rounds"]) >= 2
    reference = whole.read(cfg.id)
    strip = ("seconds", "seconds_wall", "resumed")
    assert [{k: v for k, v in r.items() if k not in strip} for r in record["extra"]["rounds"]] == \
        [{k: v for k, v in r.items() if k not in strip} for r in reference["extra"]["rounds"]]
    a = torch.load(whole.checkpoint_path(cfg.id), weights_only=False)["state_dict"]
    b = torch.load(cut.checkpoint_path(cfg.id), weights_only=False)["state_dict"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_mask_in_the_payload_is_saved_as_a_plain_dict_of_tensors(tmp_path):
    from bench.masks import Mask

    ctx = fake_ctx(tmp_path)
    rounds = resume(ctx)
    for rnd in rounds:
        rnd.save({"mask": Mask({"conv": torch.tensor([1, 0, 1])})}, sparsity=1 / 3)
        break
    blob = torch.load(tmp_path / STATE_FILE, map_location="cpu", weights_only=True)
    saved = blob["payload"]["mask"]
    assert type(saved) is dict and saved["conv"].tolist() == [True, False, True]
