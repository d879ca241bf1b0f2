"""bench/plan/phase_keys.py: a shared phase has one identity. The cache entries a cell computes
carry exactly the plan keys the estimate (and so the Slurm plan) gives its shared phases, for
trained and for loaded teachers and dense networks."""
import pytest
import torch

from bench import catalog
from bench.config import RunConfig
from bench.exec.cell import RunOptions, run_cell
from bench.plan import phase_keys
from bench.plan.estimate import cell_phases
from bench.store import ResultStore
from bench.store.cache import PhaseCache
from bench.train.models import build_model
from conftest import TINY


def saved_model(path, arch="smallcnn"):
    spec = catalog.DATASETS.get("synthetic")
    torch.save(build_model(arch, spec.num_classes, spec.channels, spec.image_size).state_dict(),
               path)
    return str(path)


@pytest.mark.e2e
@pytest.mark.parametrize("method,checkpoints", [
    ("magnitude", {}), ("tg-oneshot", {}),
    ("magnitude", {"dense_checkpoint": "dense.pt"}),
    ("tg-oneshot", {"teacher_checkpoint": "teacher.pt"}),
])
def test_the_cell_caches_each_shared_phase_under_the_estimates_key(tmp_path, method, checkpoints):
    fields = {name: saved_model(tmp_path / file) for name, file in checkpoints.items()}
    cfg = RunConfig(method=method, sparsity=0.5, **TINY, **fields)
    store = ResultStore(tmp_path / "r")
    record = run_cell(cfg, store, RunOptions(progress=False, save_checkpoints=False))
    assert record["status"] == "ok", record.get("error")
    planned = {p.key for p in cell_phases(cfg) if p.key is not None}
    assert PhaseCache(store.cache_dir).plan_keys() == planned
    kinds = {key[0] for key in planned}
    assert kinds == {phase_keys.dense(cfg).kind} if method == "magnitude" else \
        kinds == {phase_keys.teacher(cfg).kind, "tg-student"}


def test_a_loaded_model_is_a_phase_of_its_own_keyed_by_its_architecture(tmp_path):
    cfg = RunConfig(**TINY, teacher_checkpoint=saved_model(tmp_path / "t.pt"),
                    dense_checkpoint=saved_model(tmp_path / "d.pt"))
    assert phase_keys.teacher(cfg) == ("teacher-loaded", {"model": "smallcnn"}, "teacher",
                                       "teacher_checkpoint")
    assert phase_keys.dense(cfg) == ("dense-loaded", {"model": "smallcnn"}, "dense",
                                     "dense_checkpoint")
    trained = RunConfig(**TINY)
    assert phase_keys.teacher(trained) == ("teacher", {"model": "smallcnn", "epochs": 1},
                                           "teacher", None)
    assert phase_keys.dense(trained).kind == "dense-ce"
    # the loaded file's content hash keys everything downstream of it
    assert phase_keys.cache_fields(cfg)["teacher_checkpoint"] == cfg.teacher_checkpoint_sha256
