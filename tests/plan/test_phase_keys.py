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
from bench.plan.grid import make_config
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


def test_the_converged_follow_up_reuses_every_shared_phase_of_the_declared_run():
    # cifar-converged-long changes one budget of cifar-converged (retraining 10 -> 30 epochs)
    # and must find the teacher and both dense students that the declared run cached
    from bench.plan.grid import load_grid

    def by_coords(name):
        return {(c.label, c.sparsity, c.seed): c for c in load_grid(name).cells()}

    declared, follow_up = by_coords("cifar-converged"), by_coords("cifar-converged-long")
    assert declared.keys() == follow_up.keys() and len(declared) == 33
    for coords, cfg in declared.items():
        other = follow_up[coords]
        changed = {k for k, v in cfg.to_dict().items() if other.to_dict()[k] != v}
        assert changed == {"sparse_epochs"}, coords
        assert (cfg.sparse_epochs, other.sparse_epochs) == (10, 30)
        assert cached(cfg) and cached(cfg) == cached(other), coords


def cached(cfg):
    """The cache keys of a cell's shared phases (a matched cell's own phases, ('cell', id, ...),
    are that grid's cell, not the cache)."""
    return [p.key for p in cell_phases(cfg) if p.key is not None and p.key[0] != "cell"]


def test_a_step_schedule_keys_shared_phases_by_the_dense_length_its_milestones_count_in():
    """Milestones are in dense epochs and scale into every phase, so a teacher of the same
    length drops its lr elsewhere when dense_epochs differs: two cache entries, not one."""

    def keys(**fields):
        cfg = make_config(method="tg-oneshot", dataset="digits", schedule="step",
                          milestones=(91, 136), teacher_epochs=182, **fields)
        return {p.name: p.key for p in cell_phases(cfg) if p.key is not None}

    assert keys(dense_epochs=182)["teacher"] != keys(dense_epochs=150)["teacher"]
    # without milestones the dense length does not reach the teacher: one entry, as before
    plain = [make_config(method="tg-oneshot", dataset="digits", dense_epochs=d) for d in (10, 20)]
    assert len({[p.key for p in cell_phases(c) if p.name == "teacher"][0] for c in plain}) == 1


def test_egp_rounds_are_keyed_by_the_layers_that_carry_masks():
    from methods.egp import trajectory_key

    conv = make_config(method="egp", dataset="digits", prunable="conv")
    assert trajectory_key(conv) != trajectory_key(conv.replace(prunable="all"))
    assert "prunable" not in trajectory_key(conv.replace(prunable="all"))  # old keys stay valid


def test_a_cached_phase_from_another_copy_of_the_data_is_refused_not_reused(tmp_path):
    """Two CIFAR copies that differ in one image the key's sampled fingerprint skips: the
    second run must not train on top of the first copy's dense network."""
    import pickle

    from conftest import write_cifar10

    roots = [tmp_path / "a", tmp_path / "b"]
    for root in roots:
        write_cifar10(root, n_per_batch=40, n_test=130)  # every 2nd test image is sampled
    test_file = roots[1] / "cifar-10-batches-py" / "test_batch"
    entry = pickle.loads(test_file.read_bytes())
    entry["data"][1, :10] ^= 0xFF  # test image 1: not sampled by the fingerprint
    test_file.write_bytes(pickle.dumps(entry))
    store = ResultStore(tmp_path / "store")
    cfg = make_config(method="magnitude", sparsity=0.5, dataset="cifar10", model="smallcnn",
                      dense_epochs=1, sparse_epochs=1, batch_size=32)
    first = run_cell(cfg, store, RunOptions(progress=False, data_root=str(roots[0])))
    assert first["status"] == "ok", first.get("error")
    again = run_cell(cfg.replace(sparsity=0.9), store,  # the same dense network's key
                     RunOptions(progress=False, data_root=str(roots[1])))
    assert again["status"] == "failed"
    assert "computed from another copy of cifar10" in again["error"]["message"]
