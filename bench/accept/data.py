"""Small CIFAR-10 copies in the official python pickle layout (cifar-10-batches-py/), which the
harness's own loader then reads: real images from --data-root where it holds CIFAR-10, otherwise
generated ones (uniform noise, classes in turn so every class has samples)."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from bench.catalog import DATASETS
from bench.data import Split

SUBDIR = "cifar-10-batches-py"


def cifar_folder(root: str | Path | None) -> Path | None:
    """The folder holding the official files under `root` (as the harness's loader looks for
    them: root/cifar-10-batches-py or root itself), or None."""
    if not root:
        return None
    root = Path(root).expanduser()
    for candidate in (root / SUBDIR, root):
        if (candidate / "test_batch").is_file() and (candidate / "data_batch_1").is_file():
            return candidate
    return None


def write_cifar10(root: Path, train: Split, test: Split) -> Path:
    """`train` and `test` as the official files under root/cifar-10-batches-py: the training
    images in five batches, as the release has them."""
    folder = root / SUBDIR
    folder.mkdir(parents=True, exist_ok=True)

    def dump(name: str, split: Split, label: str) -> None:
        entry = {"data": split.images.reshape(len(split), -1).numpy(),
                 "labels": split.labels.tolist(), "batch_label": label}
        with open(folder / name, "wb") as fh:
            pickle.dump(entry, fh)

    parts = torch.arange(len(train)).tensor_split(5)
    for i, index in enumerate(parts, start=1):
        dump(f"data_batch_{i}", train.subset(index), f"training batch {i} of 5")
    dump("test_batch", test, "testing batch 1 of 1")
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)], "num_vis": 3072}, fh)
    return folder


def generated(n: int, seed: int) -> Split:
    rng = np.random.default_rng(seed)
    images = torch.from_numpy(rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8))
    return Split(images, torch.arange(n, dtype=torch.int64) % 10)


def prepare(root: Path, n_train: int | None, n_test: int | None, source: Path | None) -> str:
    """Write a CIFAR-10 copy of n_train / n_test images (None: the release's 50,000 / 10,000)
    under `root`; its images come from `source` (a folder cifar_folder found) or are generated.
    Returns where the images came from."""
    n_train_all, n_test_all = n_train or 50_000, n_test or 10_000
    if source is None:
        write_cifar10(root, generated(n_train_all, 0), generated(n_test_all, 1))
        return "generated: uniform noise"
    train, test = DATASETS.get("cifar10").load(source.parent if source.name == SUBDIR else source,
                                               False)
    write_cifar10(root, _first(train, n_train), _first(test, n_test))
    return f"the first {n_train or len(train)} / {n_test or len(test)} images of {source}"


def _first(split: Split, n: int | None) -> Split:
    return split if n is None else split.subset(torch.arange(min(n, len(split))))
