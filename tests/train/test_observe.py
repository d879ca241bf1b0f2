"""Watching a sweep while it runs (issue 24): the per-epoch metrics file, TensorBoard event files
read back by TensorBoard's own reader, and bench.status's progress of running cells."""
import json
import os
import re
import socket
import subprocess
import sys
import time

import pytest
import torch
import yaml

from conftest import TINY, run_cli


def lines_of(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


# --- the metrics file -------------------------------------------------------------------------


@pytest.mark.e2e
def test_metrics_file_of_a_cell_with_a_shared_phase(tmp_path):
    """A cell that trains a shared dense phase (cached_phase, a direct trainer.fit) and its own
    fine-tuning, then fails: its work folder (kept for a failed cell) holds every epoch."""
    from bench.exec.cell import RunOptions, run_cell
    from bench.plan.grid import make_config
    from bench.masks import magnitude_scores
    from bench.method import register_method
    from bench.store import ResultStore

    @register_method("observe-then-fail", replace=True)
    def observe_then_fail(ctx):
        model = ctx.dense_model()
        with ctx.clock("prune"):
            ctx.prune(model, magnitude_scores(model))
        ctx.train(model, ctx.phase("finetune", ctx.config.sparse_epochs))
        raise RuntimeError("fails after training, so that its work folder stays")

    cfg = make_config(method="observe-then-fail", sparsity=0.75,
                      **{**TINY, "dense_epochs": 2, "sparse_epochs": 3})
    store = ResultStore(tmp_path / "r")
    record = run_cell(cfg, store, RunOptions(progress=False))
    assert record["status"] == "failed"
    events = lines_of(store.work_dir(cfg.id) / "metrics.jsonl")
    assert [e["event"] for e in events] == \
        ["cell", "phase", "epoch", "epoch", "phase", "epoch", "epoch", "epoch", "end"]
    cell, dense, finetune, end = events[0], events[1], events[4], events[-1]
    assert (cell["id"], cell["label"], cell["pid"]) == (cfg.id, cfg.label, os.getpid())
    assert cell["host"] == socket.gethostname()
    assert (dense["phase"], dense["epochs"], dense["start_epoch"], dense["shared"]) == \
        ("dense", 2, 0, "dense-ce")
    assert (finetune["phase"], finetune["epochs"], finetune["shared"]) == ("finetune", 3, None)
    assert end["status"] == "failed"
    epochs = [e for e in events if e["event"] == "epoch"]
    assert [(e["phase"], e["epoch"]) for e in epochs] == \
        [("dense", 1), ("dense", 2), ("finetune", 1), ("finetune", 2), ("finetune", 3)]
    # the same numbers as the record's histories, and a cosine lr that falls
    fine = [e for e in epochs if e["phase"] == "finetune"]
    assert [e["val_acc"] for e in fine] == record["phases"]["finetune"]["val_acc"]
    assert [e["train_loss"] for e in fine] == record["phases"]["finetune"]["train_loss"]
    assert fine[0]["lr"] > fine[1]["lr"] > fine[2]["lr"] > 0
    for e in epochs:
        assert e["images"] > 0 and e["seconds"] > 0
        assert e["images_per_s"] == pytest.approx(e["images"] / e["seconds"])
        assert e["time"] >= cell["time"]
    # sparsity only after pruning: overall and per layer, per-layer matching the exact count
    assert all("sparsity" not in e for e in epochs if e["phase"] == "dense")
    sp = fine[-1]["sparsity"]
    assert sp["prunable"] == pytest.approx(0.75, abs=1e-3)
    assert 0 < sp["overall"] < sp["prunable"]  # biases and norms are not pruned
    assert set(sp["layers"]) and all(0 <= v <= 1 for v in sp["layers"].values())
    assert record["phases"]["dense"]["shared"] is True  # the record keeps what it kept


@pytest.mark.slow
def test_a_killed_phase_resumes_appending_each_epoch_once(tmp_path, monkeypatch):
    """Lines and TensorBoard events (handed over every epoch here) of a phase killed after its
    second epoch's checkpoint and resumed: every epoch once."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    import bench.train.metrics_log
    from bench.data import load_dataset
    from bench.train.metrics_log import MetricsLog
    from bench.train.models import build_model
    from bench.train.trainer import Hook, Phase, Trainer, ce_objective

    monkeypatch.setattr(bench.train.metrics_log, "TB_FLUSH_S", 0.0)
    data = load_dataset("synthetic")
    path, tb = tmp_path / "metrics.jsonl", tmp_path / "tb"

    class Kill(Hook):
        def on_epoch_start(self, s):
            if s.epoch == 2:
                raise KeyboardInterrupt  # killed during epoch 3, after epoch 2's checkpoint

    def model():
        torch.manual_seed(0)
        return build_model("smallcnn", data.spec.num_classes, data.spec.channels,
                           data.spec.image_size)

    phase, ckpt = Phase("p", 4, batch_size=32), tmp_path / "p.pt"
    with pytest.raises(KeyboardInterrupt):
        Trainer(data, progress=False, observers=[MetricsLog(path, tensorboard=tb)]).fit(
            model(), phase, ce_objective, [Kill()], checkpoint=ckpt)  # killed: never closed
    with open(path, "a") as fh:
        fh.write('{"event": "epoch", "phase": "p", "ep')  # a line cut by the kill
    log = MetricsLog(path, tensorboard=tb)
    result = Trainer(data, progress=False, observers=[log]).fit(model(), phase, checkpoint=ckpt)
    log.close()
    from bench.train.progress import read_progress

    raw = path.read_text().splitlines()
    assert raw[-4] == '{"event": "epoch", "phase": "p", "ep'  # left alone, on its own line
    events = [json.loads(line) for line in raw if not line.endswith('"ep')]
    assert [(e["event"], e.get("start_epoch", e.get("epoch"))) for e in events] == \
        [("phase", 0), ("epoch", 1), ("epoch", 2), ("phase", 2), ("epoch", 3), ("epoch", 4)]
    progress = read_progress(tmp_path)
    assert (progress.phase, progress.epoch, progress.epochs) == ("p", 4, 4)
    assert progress.seconds_left() == 0.0
    acc = EventAccumulator(str(tb / "p"))
    acc.Reload()
    val = acc.Scalars("val/acc")
    assert [e.step for e in val] == [1, 2, 3, 4]
    assert [e.value for e in val] == pytest.approx(result.val_acc)


# --- TensorBoard --------------------------------------------------------------------------------


@pytest.mark.e2e
def test_tensorboard_event_files_read_back_by_tensorboard(tmp_path):
    """A tiny quick-style grid through the command line: one run per cell, one folder per
    phase, the scalars TensorBoard's own reader finds equal the records' histories."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from bench.train.metrics_log import run_name
    from bench.store import ResultStore

    base = {k: v for k, v in TINY.items() if k != "dataset"}
    grid = tmp_path / "g.yaml"
    grid.write_text(yaml.safe_dump({"name": "g", "methods": ["magnitude"],
                                    "datasets": ["synthetic"], "sparsities": [0.5, 0.9],
                                    "seeds": [0], "base": {**base, "dense_epochs": 2,
                                                           "sparse_epochs": 3}}))
    tb = tmp_path / "tb"
    res = run_cli("bench.run", "--grid", grid, "--results", tmp_path / "r", "--no-progress",
                  "--tensorboard", tb)
    assert res.returncode == 0, res.stderr
    records, _ = ResultStore(tmp_path / "r").load_all()
    assert len(records) == 2
    runs = sorted(p.name for p in tb.iterdir())
    assert runs == sorted(f"magnitude_synthetic_s{r['config']['sparsity']:g}_seed0_{r['id']}"
                          for r in records)
    for r in records:
        cfg_name = [n for n in runs if n.endswith(r["id"])][0]
        phases = {p.name for p in (tb / cfg_name).iterdir()}
        # the shared dense phase is logged by the cell that trained it, not the one that read it
        assert phases == ({"dense", "finetune"} if not r["phases"]["dense"]["cached"]
                          else {"finetune"})
        acc = EventAccumulator(str(tb / cfg_name / "finetune"))
        acc.Reload()
        tags = set(acc.Tags()["scalars"])
        assert {"train/loss", "train/lr", "val/acc", "speed/images_per_s", "sparsity/prunable",
                "sparsity/overall"} <= tags
        assert any(t.startswith("sparsity_layer/") for t in tags)
        val = acc.Scalars("val/acc")
        assert [e.step for e in val] == [1, 2, 3]
        assert [e.value for e in val] == pytest.approx(r["phases"]["finetune"]["val_acc"])
        loss = [e.value for e in acc.Scalars("train/loss")]
        assert loss == pytest.approx(r["phases"]["finetune"]["train_loss"], rel=1e-6)
        sp = acc.Scalars("sparsity/prunable")[-1].value
        assert sp == pytest.approx(r["sparsity"]["prunable"], abs=1e-6)
    from bench.plan.grid import make_config

    assert run_name(make_config(method="magnitude", sparsity=0.5, **TINY)).startswith(
        "magnitude_synthetic_s0.5_seed0_")


def test_tensorboard_flag_without_the_package_is_one_line(tmp_path, capsys, monkeypatch):
    from bench.run import main

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    capsys.readouterr()
    code = main(["--tensorboard", str(tmp_path / "tb"), "--results", str(tmp_path / "r"),
                 "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "--tensorboard needs the tensorboard package: pip install -e '.[tb]'" in err[0]
    assert not (tmp_path / "r").exists() and not (tmp_path / "tb").exists()


# --- bench.status ---------------------------------------------------------------------------------


def fabricate(work, *, pid, host=None, phase="finetune", done=3, epochs=10, seconds=2.0,
              ended=False, now=None):
    now = time.time() if now is None else now
    host = host or socket.gethostname()
    work.mkdir(parents=True, exist_ok=True)
    t = now - done * seconds
    events = [{"event": "cell", "id": "x", "label": "magnitude", "host": host, "pid": pid,
               "time": t - 5},
              {"event": "phase", "phase": "dense", "epochs": 1, "start_epoch": 0,
               "shared": "dense-ce", "time": t - 4},
              {"event": "epoch", "phase": "dense", "epoch": 1, "epochs": 1, "val_acc": 0.5,
               "seconds": 40.0, "time": t - 1},
              {"event": "phase", "phase": phase, "epochs": epochs, "start_epoch": 0,
               "shared": None, "time": t}]
    for e in range(1, done + 1):
        events.append({"event": "epoch", "phase": phase, "epoch": e, "epochs": epochs,
                       "val_acc": 0.8 + e / 160, "seconds": seconds, "time": t + e * seconds})
    if ended:
        events.append({"event": "end", "status": "failed", "time": now})
    (work / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))


def test_progress_estimate_and_phrase():
    from bench.train.progress import describe, progress_from_lines

    now = 1000.0
    lines = [json.dumps(e) for e in (
        {"event": "phase", "phase": "retrain", "epochs": 10, "start_epoch": 0, "time": 900},
        {"event": "epoch", "phase": "retrain", "epoch": 1, "epochs": 10, "val_acc": 0.5,
         "seconds": 30.0, "time": 930},
        {"event": "epoch", "phase": "retrain", "epoch": 2, "epochs": 10, "val_acc": 0.6,
         "seconds": 10.0, "time": 990})] + ["{not json"]
    p = progress_from_lines(lines)
    assert (p.phase, p.epoch, p.epochs, p.val_acc, p.epoch_seconds) == ("retrain", 2, 10, 0.6, 20)
    # 8 epochs at 20 s, less the 10 s the third epoch has already run
    assert p.seconds_left(now) == pytest.approx(150.0)
    assert describe(p, now) == "retrain 2/10, val acc 0.6000, ≈2m30s left in retrain"
    fresh = progress_from_lines(lines[:1])
    assert describe(fresh, now) == "retrain 0/10, first epoch running"


@pytest.mark.e2e
def test_status_shows_progress_of_a_cell_running_here(tmp_path, capsys):
    """Fabricated work folders: a live process of this machine runs one cell (this test's own
    pid), a dead one had run another (missing, as before), a third failed (its record)."""
    from bench.plan.grid import make_config
    from bench.status import main
    from bench.store import ResultStore

    base = {k: v for k, v in TINY.items() if k != "dataset"}
    grid = tmp_path / "g.yaml"
    grid.write_text(yaml.safe_dump({"name": "g", "methods": ["magnitude"],
                                    "datasets": ["synthetic"], "sparsities": [0.5, 0.7, 0.9],
                                    "seeds": [0], "base": base}))
    cells = [make_config(method="magnitude", sparsity=s, **TINY) for s in (0.5, 0.7, 0.9)]
    store = ResultStore(tmp_path / "r")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    fabricate(store.work_dir(cells[0].id), pid=os.getpid())
    fabricate(store.work_dir(cells[1].id), pid=dead.pid)
    fabricate(store.work_dir(cells[2].id), pid=os.getpid(), ended=True)
    store.write({"id": cells[2].id, "label": "magnitude", "status": "failed",
                 "config": cells[2].to_dict(), "error": {"type": "RuntimeError",
                                                         "message": "boom"}})
    capsys.readouterr()
    assert main(["--grid", str(grid), "--results", str(store.root)]) == 0
    out = capsys.readouterr().out
    print(out)
    line = re.search(rf"^  {cells[0].id}  running .*$", out, re.M)
    assert line, out
    assert re.search(rf"pid {os.getpid()}: finetune 3/10, val acc 0\.8188, ≈(13|14)s left in "
                     r"finetune$", line.group(0))
    assert re.search(rf"^  {cells[1].id}  missing  magnitude .*seed=0$", out, re.M)
    assert re.search(rf"^  {cells[2].id}  failed   magnitude .*seed=0  RuntimeError: boom$", out, re.M)
    assert "summary: 0 done, 0 queued, 1 running, 1 failed, 1 missing" in out


def test_status_shows_progress_of_a_slurm_job_on_another_node(tmp_path, monkeypatch, capsys):
    from bench.plan.grid import make_config
    from bench.slurm import record_submissions
    from bench.status import main
    from bench.store import ResultStore
    from conftest import fake_slurm_bin

    monkeypatch.setenv("PATH", f"{fake_slurm_bin(tmp_path)}:{os.environ['PATH']}")
    base = {k: v for k, v in TINY.items() if k != "dataset"}
    grid = tmp_path / "g.yaml"
    grid.write_text(yaml.safe_dump({"name": "g", "methods": ["magnitude"],
                                    "datasets": ["synthetic"], "sparsities": [0.5],
                                    "seeds": [0], "base": base}))
    cell = make_config(method="magnitude", sparsity=0.5, **TINY)
    store = ResultStore(tmp_path / "r")
    record_submissions(store, {cell.id: {"job_id": "77_0", "submitted": "2030-01-01T00:00:00",
                                         "log_dir": "x"}})
    (tmp_path / "squeue.out").write_text("77_0|RUNNING\n")
    fabricate(store.work_dir(cell.id), pid=1, host="node-elsewhere", phase="retrain", done=4,
              epochs=5, seconds=60.0)
    capsys.readouterr()
    assert main(["--grid", str(grid), "--results", str(store.root)]) == 0
    out = capsys.readouterr().out
    assert re.search(rf"^  {cell.id}  running  magnitude .*job 77_0: retrain 4/5, val acc 0\.8250, "
                     r"≈(59|1m00)s left in retrain$", out, re.M), out


def test_tensorboard_folder_from_the_flag_or_the_slurm_profile(tmp_path, monkeypatch):
    from argparse import Namespace

    from bench.registry import UsageError
    from bench.run import tensorboard_dir
    from bench.slurm import profile_from_mapping

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TB_ROOT", str(tmp_path / "shared"))
    profile = profile_from_mapping({"partition": "debug", "tensorboard": "$TB_ROOT/tb"}, "p.yaml")
    assert tensorboard_dir(Namespace(tensorboard=None), profile) == str(tmp_path / "shared" / "tb")
    assert tensorboard_dir(Namespace(tensorboard="mine"), profile) == str(tmp_path / "mine")
    assert tensorboard_dir(Namespace(tensorboard=None), None) is None
    (tmp_path / "afile").write_text("x")
    with pytest.raises(UsageError, match="--tensorboard 'afile' is a file"):
        tensorboard_dir(Namespace(tensorboard="afile"), None)
    with pytest.raises(UsageError, match="key 'tensorboard' must be a non-empty string"):
        profile_from_mapping({"tensorboard": ""}, "p.yaml")
