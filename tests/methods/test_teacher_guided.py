import pytest
import torch

from bench.exec.cell import RunOptions, run_cell
from bench.config import RunConfig
from bench.masks import keep_count
from bench.store import ResultStore

OPTS = RunOptions(progress=False)


def cfg(tiny, **kw):
    return RunConfig(method="tg-oneshot", **{**tiny, **kw})


@pytest.mark.e2e
def test_dense_phases_are_computed_once_across_sparsities(tiny, tmp_path):
    store = ResultStore(tmp_path)
    first = run_cell(cfg(tiny, sparsity=0.5), store, OPTS)
    second = run_cell(cfg(tiny, sparsity=0.9, options=(("retrain", "ft"),)), store, OPTS)
    assert first["status"] == second["status"] == "ok"
    p1, p2 = first["phases"], second["phases"]
    assert not p1["teacher"]["cached"] and not p1["student"]["cached"]
    assert p2["teacher"]["cached"] and p2["student"]["cached"]
    assert p2["teacher"]["shared"] and p2["student"]["shared"] and not p2["retrain"]["shared"]
    # shared costs are reported, with the seconds of the run that computed them
    assert p2["student"]["seconds"] == p1["student"]["seconds"] > 0
    assert second["cost"]["seconds_shared"] >= p2["teacher"]["seconds"] + p2["student"]["seconds"]
    assert second["extra"]["teacher"]["test_acc"] == first["extra"]["teacher"]["test_acc"]
    assert second["extra"]["scored_steps"] > 0
    for r in (first, second):
        sp = r["sparsity"]
        assert sp["prunable_kept"] == keep_count(sp["prunable_total"], r["config"]["sparsity"])


@pytest.mark.e2e
def test_options_change_the_cached_student(tiny, tmp_path):
    store = ResultStore(tmp_path)
    run_cell(cfg(tiny), store, OPTS)
    other = run_cell(cfg(tiny, options=(("score", "grad"),)), store, OPTS)
    assert other["phases"]["teacher"]["cached"] and not other["phases"]["student"]["cached"]
    assert other["label"] == "tg-oneshot-kd[score=grad]"


@pytest.mark.e2e
def test_retraining_keeps_pruned_weights_zero(tiny, tmp_path):
    store = ResultStore(tmp_path)
    rec = run_cell(cfg(tiny, sparsity=0.95, sparse_epochs=2), store, OPTS)
    blob = torch.load(store.checkpoint_path(rec["id"]), weights_only=False)["state_dict"]
    masks = {k[:-len("_mask")]: v for k, v in blob.items() if k.endswith("weight_mask")}
    assert masks and all(torch.all(blob[k][~m] == 0) for k, m in masks.items())
    assert rec["phases"]["retrain"]["epochs"] == 2 and len(rec["phases"]["retrain"]["val_acc"]) == 2


@pytest.mark.e2e
def test_nan_marks_the_cell_failed_with_phase_and_epoch(tiny, tmp_path):
    rec = run_cell(cfg(tiny, lr=1e30, sparsity=0.5), ResultStore(tmp_path), OPTS)
    assert rec["status"] == "failed" and rec["error"]["type"] == "NonFiniteLoss"
    assert "in phase" in rec["error"]["message"] and "at epoch 1/1" in rec["error"]["message"]
    assert ResultStore(tmp_path).read(rec["id"])["status"] == "failed"
