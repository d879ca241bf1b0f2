"""Researchers' own inputs: decoded caches that never go stale, image folders, training subsets
and checkpoints of their own models (issue 18). Every file is made here, small."""
import os

import numpy as np
import pytest
import torch

from bench.config import RunConfig
from bench.data import DataError, load_dataset, train_subset
from bench.registry import UsageError
from conftest import run_cli
from conftest import write_tinyimagenet


# -- TinyImageNet: validation before caching, fingerprinted caches ---------------------------------

def test_extra_classes_are_named_no_cache_is_written_and_a_fix_in_place_loads(tmp_path):
    folder = write_tinyimagenet(tmp_path, extra=("n02480855", "n10148035"))
    with pytest.raises(DataError, match="lists 202 classes; tiny-imagenet-200 has 200: "
                                        "extra n02480855, n10148035"):
        load_dataset("tinyimagenet", tmp_path)
    assert not list(folder.glob("prunebench-decoded*"))
    wnids = (folder / "wnids.txt").read_text().split()[:200]  # the user fixes the folder in place
    (folder / "wnids.txt").write_text("\n".join(wnids) + "\n")
    bundle = load_dataset("tinyimagenet", tmp_path)
    assert bundle.spec.num_classes == 200 and len(bundle.test) == 5


def _save_noise(path, seed, size=64):
    from PIL import Image

    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(
        path, format="JPEG" if path.suffix == ".JPEG" else "PNG")


def test_a_replaced_image_rebuilds_the_cache_and_a_truncated_cache_is_rebuilt(tmp_path):
    folder = write_tinyimagenet(tmp_path)
    first = load_dataset("tinyimagenet", tmp_path)
    image = folder / "val" / "images" / "val_0.JPEG"
    _save_noise(image, seed=99)
    st = image.stat()
    os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a later mtime, for sure
    second = load_dataset("tinyimagenet", tmp_path)
    assert not torch.equal(first.test.images[0], second.test.images[0])
    assert torch.equal(first.test.images[1:], second.test.images[1:])

    cache = folder / "prunebench-decoded.pt"
    cache.write_bytes(cache.read_bytes()[: cache.stat().st_size // 3])
    third = load_dataset("tinyimagenet", tmp_path)
    assert torch.equal(third.test.images, second.test.images)
    assert cache.stat().st_size > 1000 and torch.load(cache, weights_only=True)["fingerprint"]


# -- imagefolder:PATH ------------------------------------------------------------------------------

def write_imagefolder(root, classes=("cat", "dog", "emu"), per_class=4, n_test=2, size=16):
    for split, n in (("train", per_class), ("test", n_test)):
        for k, c in enumerate(classes):
            d = root / split / c
            d.mkdir(parents=True)
            for j in range(n):
                _save_noise(d / f"{j}.png", seed=hash((split, k, j)) % 2**31, size=size)
    return root


def test_an_image_folder_loads_with_sorted_classes_and_its_own_statistics(tmp_path):
    root = write_imagefolder(tmp_path / "pets", classes=("emu", "cat", "dog"))
    bundle = load_dataset(f"imagefolder:{root}")
    assert bundle.spec.num_classes == 3 and bundle.spec.image_size == 16
    assert bundle.train.images.shape[1:] == (3, 16, 16)
    assert len(bundle.train) + len(bundle.val) == 12 and len(bundle.test) == 6
    assert bundle.test.labels.tolist() == [0, 0, 1, 1, 2, 2]  # cat, dog, emu
    expected = bundle.train.images.float().div(255).mean(dim=(0, 2, 3))
    assert torch.allclose(torch.tensor(bundle.mean), expected, atol=1e-5)
    # a relative spelling is the same dataset: one absolute name in ids and caches
    os.chdir(tmp_path)
    assert RunConfig(dataset="imagefolder:pets").dataset == f"imagefolder:{root.resolve()}"


def test_image_folder_errors_are_one_line_in_the_folders_terms(tmp_path):
    root = write_imagefolder(tmp_path / "a")
    for f in (root / "train" / "dog").iterdir():
        f.unlink()
    with pytest.raises(DataError, match="class 'dog'.*holds no images"):
        load_dataset(f"imagefolder:{root}")

    root = write_imagefolder(tmp_path / "b")
    (root / "train" / "cat" / "0.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"0\.png is not a readable image"):
        load_dataset(f"imagefolder:{root}")

    root = write_imagefolder(tmp_path / "c")
    _save_noise(root / "train" / "emu" / "9.png", seed=1, size=24)
    with pytest.raises(DataError, match=r"9\.png is 24x24 pixels; expected 16x16.*\?size=N"):
        load_dataset(f"imagefolder:{root}")
    resized = load_dataset(f"imagefolder:{root}?size=8")  # the stated resize policy
    assert resized.train.images.shape[1:] == (3, 8, 8) and resized.spec.image_size == 8

    with pytest.raises(DataError, match="size='x' is invalid"):
        load_dataset(f"imagefolder:{root}?size=x")
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(f"imagefolder:{tmp_path / 'nowhere'}")


@pytest.mark.e2e
def test_an_image_folder_runs_as_a_grid_dataset_from_the_command_line(tmp_path):
    root = write_imagefolder(tmp_path / "pets", per_class=6)
    out = run_cli("bench.run", "--methods", "magnitude", "--datasets", f"imagefolder:{root}",
                  "--sparsities", "0.5", "--seeds", "0", "--results", tmp_path / "r",
                  "--set", "model=smallcnn", "--set", "dense_epochs=1", "--set", "sparse_epochs=1",
                  "--no-progress")
    assert out.returncode == 0, out.stderr[-2000:]
    import json

    (record,) = [json.loads(p.read_text()) for p in (tmp_path / "r" / "records").glob("*.json")]
    assert record["status"] == "ok" and record["config"]["dataset"] == f"imagefolder:{root}"


# -- train_fraction --------------------------------------------------------------------------------

def test_train_fraction_is_stratified_fixed_and_leaves_the_test_split_alone():
    full = load_dataset("digits")
    half = train_subset(full, 0.5)
    again = train_subset(full, 0.5)
    assert torch.equal(half.train.labels, again.train.labels)  # no seed: the same for every cell
    assert torch.equal(half.test.images, full.test.images)  # the test split stays whole
    assert len(half.val) == sum(max(1, round(0.5 * int((full.val.labels == c).sum())))
                                for c in range(10))
    for c in range(10):
        n = int((full.train.labels == c).sum())
        assert int((half.train.labels == c).sum()) == max(1, round(0.5 * n))
    # a subset's images are rows of the full split
    rows = {tuple(x.flatten().tolist()) for x in full.train.images}
    assert all(tuple(x.flatten().tolist()) in rows for x in half.train.images[:20])
    assert train_subset(full, 1.0) is full
    with pytest.raises(UsageError, match=r"train_fraction=0.0 is invalid; must be a number in \(0, 1\]"):
        RunConfig(train_fraction=0)
    assert RunConfig(train_fraction=1.0).id == RunConfig().id
    assert RunConfig(train_fraction=0.25).id != RunConfig().id


# -- teacher_checkpoint / dense_checkpoint ---------------------------------------------------------

def _trained_smallcnn(path, num_classes=4, wrap=True, seed=5):
    from bench.train.models import build_model

    torch.manual_seed(seed)
    model = build_model("smallcnn", num_classes, 3, 8)
    state = model.state_dict()
    torch.save({"epoch": 3, "state_dict": state} if wrap else state, path)
    return model


def test_a_checkpoint_is_identified_by_its_content_not_its_path(tmp_path, tiny):
    a = tmp_path / "a.pt"
    _trained_smallcnn(a)
    cfg = RunConfig(**tiny, dense_checkpoint=str(a))
    b = tmp_path / "moved" / "b.pt"
    b.parent.mkdir()
    b.write_bytes(a.read_bytes())
    assert RunConfig(**tiny, dense_checkpoint=str(b)).id == cfg.id
    assert cfg.id != RunConfig(**tiny).id
    assert "dense_checkpoint" not in cfg.canonical()
    restored = RunConfig.from_dict(cfg.to_dict())  # a record's config does not rehash the file
    a.unlink()
    assert RunConfig.from_dict(cfg.to_dict()).id == restored.id == cfg.id
    with pytest.raises(UsageError, match="does not exist"):
        RunConfig(**tiny, dense_checkpoint=str(a))


def test_the_dense_model_and_the_teacher_a_method_gets_are_the_checkpoints(tmp_path, tiny):
    """What ctx.dense_model() and ctx.teacher() hand a method (the model it prunes, the teacher
    it distils from) carries the files' weights, not a fresh initialisation of the architecture."""
    from bench.exec.cell import RunOptions, make_context
    from bench.exec.checkpoints import read_state_dict
    from bench.store import ResultStore
    from bench.train.models import build_model

    dense_path, teacher_path = tmp_path / "dense.pt", tmp_path / "teacher.pt"
    _trained_smallcnn(dense_path, wrap=True, seed=5)
    _trained_smallcnn(teacher_path, wrap=False, seed=6)
    cfg = RunConfig(**tiny, method="magnitude", options=(("retrain", "kd"),),
                    dense_checkpoint=str(dense_path), teacher_checkpoint=str(teacher_path))
    ctx = make_context(cfg, ResultStore(tmp_path / "r"), RunOptions(progress=False),
                       torch.device("cpu"))
    for got, path in ((ctx.dense_model(), dense_path), (ctx.teacher(), teacher_path)):
        want = read_state_dict(path)
        state = got.state_dict()
        assert set(state) == set(want)
        differ = [k for k in want if not torch.equal(state[k].cpu(), want[k])]
        assert not differ, f"{path.name}: {differ} are not the file's"
    # the teacher's logits are those of the file's model in eval mode
    reference = build_model("smallcnn", 4, 3, 8)
    reference.load_state_dict(read_state_dict(teacher_path))
    x = torch.randn(16, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(ctx.teacher()(x), reference.eval()(x), atol=1e-6)
    assert ctx.loaded == {"dense_checkpoint", "teacher_checkpoint"}


@pytest.mark.e2e
def test_a_loaded_dense_model_is_measured_recorded_and_kept_apart_in_the_cache(tmp_path, tiny):
    from bench.exec.cell import run_cell
    from bench.store import ResultStore

    path = tmp_path / "dense.pt"
    _trained_smallcnn(path, wrap=True)
    store = ResultStore(tmp_path / "r")
    from bench.exec.cell import RunOptions

    opts = RunOptions(progress=False, save_checkpoints=False)
    loaded = run_cell(RunConfig(**tiny, method="magnitude", dense_checkpoint=str(path)), store,
                      RunOptions(progress=False))
    trained = run_cell(RunConfig(**tiny, method="magnitude"), store, opts)
    assert loaded["status"] == trained["status"] == "ok"
    assert loaded["extra"]["dense_checkpoint"]["sha256"] == loaded["config"]["dense_checkpoint_sha256"]
    assert loaded["phases"]["dense"]["loaded"] is True and "loaded" not in trained["phases"]["dense"]
    assert loaded["phases"]["dense"]["cache_key"] != trained["phases"]["dense"]["cache_key"]
    # the recorded accuracy is the checkpoint's own, measured on the test split
    from bench.exec.cell import cached_dataset
    from bench.train.trainer import Trainer

    model = _trained_smallcnn(tmp_path / "again.pt")
    data = cached_dataset("synthetic", None, False)
    assert loaded["extra"]["dense_test_acc"] == pytest.approx(Trainer(data, progress=False).accuracy(model, data.test))
    # the weights pruned are the checkpoint's: the cell's mask (fine-tuning leaves it as it is)
    # is the global top-|w| of the checkpoint's conv and linear weights at the cell's count
    saved = torch.load(store.checkpoint_path(loaded["id"]), weights_only=True)["state_dict"]
    masks = {k[: -len(".weight")]: saved[k + "_mask"].bool()
             for k, w in model.state_dict().items() if k.endswith(".weight") and w.dim() > 1}
    assert len(masks) == 5 and len(saved) == len(model.state_dict()) + 5
    kept = sum(int(m.sum()) for m in masks.values())
    assert kept == loaded["sparsity"]["prunable_kept"]
    magnitudes = torch.cat([model.state_dict()[n + ".weight"].abs().flatten() for n in masks])
    threshold = magnitudes.topk(kept).values[-1]
    wrong = {n: int((mask != (model.state_dict()[n + ".weight"].abs() >= threshold)).sum())
             for n, mask in masks.items()}
    assert not any(wrong.values()), f"positions off the checkpoint's magnitude mask: {wrong}"
    unused = run_cell(RunConfig(**tiny, method="magnitude", teacher_checkpoint=str(path)), store, opts)
    assert unused["extra"]["unused_checkpoints"] == ["teacher_checkpoint"]


@pytest.mark.e2e
def test_a_checkpoint_of_another_architecture_or_class_count_is_exit_2_before_training(tmp_path):
    path = tmp_path / "ten.pt"
    _trained_smallcnn(path, num_classes=10, wrap=False)
    out = run_cli("bench.run", "--methods", "tg-oneshot", "--datasets", "synthetic",
                  "--sparsities", "0.5", "--seeds", "0", "--results", tmp_path / "r",
                  "--set", "teacher=smallcnn", "--set", f"teacher_checkpoint={path}")
    assert out.returncode == 2, out.stderr[-2000:]
    assert len(out.stderr.strip().splitlines()) == 1
    assert "teacher_checkpoint=" in out.stderr and "does not fit" in out.stderr
    assert "checkpoint (10," in out.stderr or "(10, " in out.stderr
    assert not (tmp_path / "r" / "records").exists() or not list((tmp_path / "r" / "records").iterdir())


@pytest.mark.e2e
def test_a_dense_cell_is_a_teacher_checkpoint_as_it_stands(tmp_path, tiny):
    from bench.exec.cell import RunOptions, run_cell
    from bench.store import ResultStore

    store = ResultStore(tmp_path / "r")
    opts = RunOptions(progress=False)
    dense = run_cell(RunConfig(**tiny, method="dense", sparsity=0.0), store, opts)
    assert dense["status"] == "ok" and dense["sparsity"]["prunable"] == 0.0
    path = store.checkpoint_path(dense["id"])
    tg = run_cell(RunConfig(**{**tiny, "method": "tg-oneshot", "sparsity": 0.5,
                               "teacher_checkpoint": str(path)}), store, opts)
    assert tg["status"] == "ok", tg.get("error")
    assert tg["extra"]["teacher"]["test_acc"] == pytest.approx(dense["accuracy"]["test"])
    assert tg["extra"]["teacher"]["sha256"] == tg["config"]["teacher_checkpoint_sha256"]
    bad = run_cell(RunConfig(**tiny, method="dense", sparsity=0.5), store, opts)
    assert bad["status"] == "failed" and "sparsity 0" in bad["error"]["message"]
