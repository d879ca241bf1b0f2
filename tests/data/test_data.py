import pickle

import pytest
import torch
import torch.nn.functional as F

from bench.data import DataError, load_dataset
from bench.data.loader import DeviceLoader, gather_crops
from conftest import write_cifar10, write_cifar100, write_tinyimagenet


def test_digits_is_real_and_split_three_ways():
    b = load_dataset("digits")
    assert b.train.images.dtype == torch.uint8 and b.train.images.shape[1:] == (1, 8, 8)
    assert len(b.train) + len(b.val) + len(b.test) == 1797
    assert int(b.train.images.max()) == 255 and set(b.test.labels.tolist()) == set(range(10))


def test_validation_split_is_deterministic_and_disjoint():
    a, b = load_dataset("digits"), load_dataset("digits")
    assert torch.equal(a.val.images, b.val.images) and torch.equal(a.train.labels, b.train.labels)
    train = {tuple(x.flatten().tolist()) for x in a.train.images}
    clash = sum(tuple(x.flatten().tolist()) in train for x in a.val.images)
    assert clash < len(a.val) // 4  # digits has a few duplicate glyphs, not shared rows


def test_cifar10_official_layout(tmp_path, caplog):
    write_cifar10(tmp_path)
    b = load_dataset("cifar10", tmp_path)
    # a small copy loads, and says it is not the official release
    assert "holds 100 training and 30 test images, not the official 50000 and 10000" in caplog.text
    assert b.train.images.shape[1:] == (3, 32, 32)
    assert len(b.train) + len(b.val) == 100 and len(b.test) == 30
    # pixel layout: 1024 R, then G, then B, row-major
    raw = pickle.load(open(tmp_path / "cifar-10-batches-py" / "test_batch", "rb"))
    assert torch.equal(b.test.images[0, 1].flatten(), torch.as_tensor(raw["data"][0, 1024:2048]))


def test_cifar100_official_layout(tmp_path):
    folder = write_cifar100(tmp_path)
    b = load_dataset("cifar100", tmp_path)
    assert b.spec.num_classes == 100 and len(b.test) == 20
    files = {}
    for name in ("train", "test"):
        with open(folder / name, "rb") as fh:
            files[name] = pickle.load(fh, encoding="latin1")
    test = files["test"]
    # the fine labels (0..99), in the file's order; the coarse ones (0..19) would differ
    assert b.test.labels.tolist() == [int(v) for v in test["fine_labels"]]
    assert sorted(b.train.labels.tolist() + b.val.labels.tolist()) == \
        sorted(int(v) for v in files["train"]["fine_labels"])
    # a row holds the red plane, then green, then blue, each 32 rows of 32 pixels
    image, channel, y, x = 7, 2, 5, 30
    assert b.test.images.dtype == torch.uint8
    assert int(b.test.images[image, channel, y, x]) == \
        int(test["data"][image][channel * 1024 + y * 32 + x])
    assert torch.equal(b.test.images[3].flatten(), torch.from_numpy(test["data"][3]))


def test_cifar_bad_folders_say_what_is_wrong(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("cifar10", tmp_path / "nope")
    with pytest.raises(DataError, match="does not hold cifar-10-batches-py"):
        load_dataset("cifar10", tmp_path)
    with pytest.raises(DataError, match="needs --data-root"):
        load_dataset("cifar10", None)
    write_cifar10(tmp_path / "bad", columns=100)
    with pytest.raises(DataError, match=r"data_batch_1: 'data' is \(20, 100\).*expected N x 3072"):
        load_dataset("cifar10", tmp_path / "bad")
    (tmp_path / "trunc" / "cifar-10-batches-py").mkdir(parents=True)
    write_cifar10(tmp_path / "t2")
    folder = tmp_path / "t2" / "cifar-10-batches-py"
    (folder / "data_batch_3").write_bytes(b"\x80\x02garbage")
    with pytest.raises(DataError, match="data_batch_3 is not a readable CIFAR pickle"):
        load_dataset("cifar10", tmp_path / "t2")


def test_tinyimagenet_layout_is_decoded_once_and_cached(tmp_path, monkeypatch):
    folder = write_tinyimagenet(tmp_path)
    b = load_dataset("tinyimagenet", tmp_path)
    assert b.train.images.shape[1:] == (3, 64, 64)
    assert len(b.train) + len(b.val) == 200 and len(b.test) == 5
    assert b.test.labels.tolist() == [0, 1, 2, 3, 4]
    assert (folder / "prunebench-decoded.pt").is_file()

    import bench.data.decoded

    def no_decode(*a, **k):
        raise AssertionError("decoded again although nothing changed")

    monkeypatch.setattr(bench.data.decoded, "decode_images", no_decode)
    monkeypatch.setattr("bench.data.folders.decode_images", no_decode)
    again = load_dataset("tinyimagenet", tmp_path)  # the second load comes from the cache
    assert torch.equal(again.test.images, b.test.images)


def test_tinyimagenet_missing_pieces(tmp_path):
    with pytest.raises(DataError, match="wnids.txt"):
        load_dataset("tinyimagenet", tmp_path)
    folder = write_tinyimagenet(tmp_path)
    (folder / "val" / "val_annotations.txt").unlink()
    with pytest.raises(DataError, match="val_annotations.txt"):
        load_dataset("tinyimagenet", tmp_path)


def random_crop(images: torch.Tensor, pad: int, shifts: torch.Tensor | None,
                flips: torch.Tensor | None = None) -> torch.Tensor:
    """The per-pixel reference for gather_crops(): zero-pad by `pad`, take one crop per image at
    offsets `shifts` (2 x B) and mirror the images where `flips` is true."""
    b, c, h, w = images.shape
    padded = F.pad(images, (pad, pad, pad, pad)) if pad else images
    device = images.device
    if shifts is None:
        shifts = torch.zeros(2, b, dtype=torch.int64, device=device)
    across = torch.arange(w, device=device).expand(b, w)
    if flips is not None:
        across = torch.where(flips.view(b, 1), w - 1 - across, across)
    rows = (shifts[0].view(b, 1) + torch.arange(h, device=device)).view(b, 1, h, 1)
    cols = (shifts[1].view(b, 1) + across).view(b, 1, 1, w)
    batch = torch.arange(b, device=device).view(b, 1, 1, 1)
    chan = torch.arange(c, device=device).view(1, c, 1, 1)
    return padded[batch, chan, rows, cols]


def test_random_crop_matches_a_manual_crop():
    images = torch.arange(2 * 3 * 5 * 5, dtype=torch.uint8).view(2, 3, 5, 5)
    shifts = torch.tensor([[0, 3], [2, 1]])  # rows, cols per image
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    loader_path = gather_crops(images, torch.arange(2), 2, shifts, None)
    for out in (random_crop(images, 2, shifts), loader_path):
        assert torch.equal(out[0], padded[0, :, 0:5, 2:7])
        assert torch.equal(out[1], padded[1, :, 3:8, 1:6])


def test_loader_is_seeded_normalised_and_covers_the_split():
    b = load_dataset("synthetic")
    xs1 = [bt.x for bt in DeviceLoader(b.train, b, 64, train=True, seed=3)]
    xs2 = [bt.x for bt in DeviceLoader(b.train, b, 64, train=True, seed=3)]
    xs3 = [bt.x for bt in DeviceLoader(b.train, b, 64, train=True, seed=4)]
    assert all(torch.equal(a, c) for a, c in zip(xs1, xs2))
    assert not torch.equal(xs1[0], xs3[0])
    ev = list(DeviceLoader(b.test, b, 50, train=False))
    assert torch.equal(torch.cat([bt.idx for bt in ev]), torch.arange(len(b.test)))
    x = torch.cat([bt.x for bt in DeviceLoader(b.train, b, 1000, train=False)])
    assert abs(float(x.mean())) < 0.05 and abs(float(x.std()) - 1) < 0.05
    loader = DeviceLoader(b.train, b, 64, train=True, seed=0)
    idx = torch.cat([bt.idx for bt in loader])
    assert len(idx) == len(loader) * 64 and len(set(idx.tolist())) == len(idx)


def test_flip_and_crop_only_in_training():
    b = load_dataset("synthetic")
    train = DeviceLoader(b.train, b, 320, train=True, seed=0)
    evalu = DeviceLoader(b.train, b, 320, train=False)
    bt, be = next(iter(train)), next(iter(evalu))
    clean = be.x[bt.idx]
    assert not torch.allclose(bt.x, clean)  # augmented
    assert bt.x.shape == clean.shape
    # the evaluation loader is not augmented: its batch is the split itself, normalised
    assert torch.equal(be.idx, torch.arange(len(b.train))[:len(be.idx)])
    mean = torch.tensor(b.mean).view(1, -1, 1, 1) * 255.0
    std = torch.tensor(b.std).view(1, -1, 1, 1) * 255.0
    plain = (b.train.images[be.idx].float() - mean) / std
    torch.testing.assert_close(be.x, plain, rtol=1e-5, atol=1e-5)
    again = next(iter(DeviceLoader(b.train, b, 320, train=False)))
    assert torch.equal(again.x, be.x)


def test_a_sampler_decides_the_batches_and_the_length():
    b = load_dataset("synthetic")

    def pairs(epoch, g):  # 3 batches of 10, drawn from the generator
        return list(torch.randperm(len(b.train), generator=g)[:30].split(10))

    loader = DeviceLoader(b.train, b, 128, train=True, sampler=pairs)
    assert len(loader) == 3  # asked of the sampler, without consuming the generator
    first = [bt.idx for bt in loader]
    assert len(first) == 3 and all(len(i) == 10 for i in first)
    again = DeviceLoader(b.train, b, 128, train=True, sampler=pairs)
    assert all(torch.equal(x.idx, y) for x, y in zip(again, first))


def test_crop_and_flip_in_one_gather():
    images = torch.arange(2 * 1 * 4 * 4, dtype=torch.uint8).view(2, 1, 4, 4)
    shifts = torch.tensor([[1, 0], [0, 2]])
    flips = torch.tensor([True, False])
    padded = torch.nn.functional.pad(images, (1, 1, 1, 1))
    loader_path = gather_crops(images, torch.arange(2), 1, shifts, flips)
    for out in (random_crop(images, 1, shifts, flips), loader_path):
        assert torch.equal(out[0], padded[0, :, 1:5, 0:4].flip(2))
        assert torch.equal(out[1], padded[1, :, 0:4, 2:6])
    both = torch.tensor([True, True])
    assert torch.equal(random_crop(images, 0, None, both), images.flip(3))
    assert torch.equal(gather_crops(images, torch.arange(2), 0, None, both),
                       images.flip(3))


@pytest.mark.parametrize("pad", [1, 2, 4])
@pytest.mark.parametrize("flip", [False, True])
def test_window_gather_equals_the_reference_crop(pad, flip):
    g = torch.Generator().manual_seed(pad)
    images = torch.randint(0, 256, (9, 3, 6, 5), generator=g, dtype=torch.uint8)
    idx = torch.tensor([4, 0, 8, 4, 2, 7])
    shifts = torch.randint(0, 2 * pad + 1, (2, len(idx)), generator=g)
    flips = torch.rand(len(idx), generator=g) < 0.5 if flip else None
    got = gather_crops(images, idx, pad, shifts, flips)
    assert torch.equal(got, random_crop(images[idx], pad, shifts, flips))
    if flip:  # both branches really ran
        assert 0 < int(flips.sum()) < len(idx)


def test_the_loader_keeps_no_copy_of_the_split():
    """No padded or mirrored copy of the split is built: the loader's only large tensor is the
    split itself (the memory of a TinyImageNet cell depends on it)."""
    b = load_dataset("synthetic")
    loader = DeviceLoader(b.train, b, 64, train=True)
    assert loader.split is b.train and b.train.to("cpu") is b.train
    held = [v for v in vars(loader).values() if isinstance(v, torch.Tensor)]
    assert all(t.numel() <= 3 for t in held)  # mean and 1/std
    list(loader)
    held = [v for v in vars(loader).values() if isinstance(v, torch.Tensor)]
    assert all(t.numel() <= 3 for t in held) and not vars(b.train).get("_windows")


def test_large_splits_are_carved_in_place_with_the_same_rows_and_statistics(monkeypatch):
    """TinyImageNet takes the large-split path: in-place carving and chunked integer sums."""
    import bench.data.datasets as data

    small = load_dataset("synthetic")
    monkeypatch.setattr(data, "LARGE_SPLIT", 0)
    large = load_dataset("synthetic")
    for a, b in ((small.train, large.train), (small.val, large.val), (small.test, large.test)):
        assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert large.mean != small.mean  # really the other path, and yet the same numbers:
    assert large.mean == pytest.approx(small.mean, abs=1e-6)
    assert large.std == pytest.approx(small.std, abs=1e-6)
    images = torch.randint(0, 256, (5000, 3, 4, 4), dtype=torch.uint8)
    mean, std = data.channel_stats(images)
    ref = images.double() / 255
    assert mean == pytest.approx(ref.mean(dim=(0, 2, 3)).tolist(), abs=1e-12)
    assert std == pytest.approx(ref.std(dim=(0, 2, 3)).tolist(), abs=1e-12)


def test_no_progress_silences_the_image_decoding_bar():
    """Decoding a large image folder shows a bar; `bench.run --no-progress` turns it off too."""
    from bench import console, run
    from bench.data.decoded import _bar

    try:
        assert run.main(["--dry-run", "--no-progress"]) == 0
        assert _bar(10_000).disable
        assert run.main(["--dry-run"]) == 0
        bar = _bar(10_000)
        assert not bar.disable
        bar.close()
    finally:
        console.show_progress(True)
