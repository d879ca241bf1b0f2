"""Datasets as uint8 image tensors + labels (the loader that batches them is bench/data/loader.py).

Every dataset yields (train, test); the validation split is carved from the training set with a
fixed generator, so it is identical for every method, seed and grid. Datasets stored as image
files (TinyImageNet, `imagefolder:PATH`) live in bench/data/folders.py.
"""
from __future__ import annotations

import hashlib
import logging
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from bench.catalog import DATASETS
from bench.registry import UsageError

VAL_SPLIT_SEED = 20251120


class DataError(UsageError):
    """A data root that is missing, incomplete or malformed."""


@dataclass(frozen=True)
class Split:
    images: torch.Tensor  # uint8, N x C x H x W
    labels: torch.Tensor  # int64, N

    def __post_init__(self) -> None:
        assert self.images.dtype == torch.uint8 and self.images.dim() == 4, self.images.shape
        assert self.labels.dtype == torch.int64 and len(self.labels) == len(self.images)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: torch.Tensor) -> "Split":
        return Split(self.images[index], self.labels[index])

    def to(self, device: torch.device | str) -> "Split":
        if self.images.device == torch.device(device):
            return self
        return Split(self.images.to(device), self.labels.to(device))


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    num_classes: int
    channels: int
    image_size: int
    load: Callable[[Path | None, bool], tuple[Split, Split]]  # (data_root, download) -> train, test
    crop_padding: int = 4
    flip: bool = True
    val_fraction: float = 0.1
    default_temperature: float = 3.0


@dataclass(frozen=True)
class DataBundle:
    spec: DatasetSpec
    train: Split
    val: Split
    test: Split
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def to(self, device: torch.device | str) -> "DataBundle":
        return DataBundle(self.spec, self.train.to(device), self.val.to(device),
                          self.test.to(device), self.mean, self.std)


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    return DATASETS.register(spec.name)(spec)


def load_dataset(name: str, data_root: str | Path | None = None, download: bool = False,
                 ) -> DataBundle:
    spec = DATASETS.get(name)
    root = Path(data_root).expanduser() if data_root else None
    train, test = spec.load(root, download)
    _check_labels(spec, train, "train")
    _check_labels(spec, test, "test")
    large = train.images.numel() > LARGE_SPLIT
    # a large split is handed over by its load(): carved in place rather than copied
    train, val = carve_validation(train, spec.val_fraction, in_place=large)
    mean, std = channel_stats(train.images)
    return DataBundle(spec, train, val, test, mean, std)


LARGE_SPLIT = 1 << 28
"""Elements (uint8) above which a training split is carved in place and its statistics are summed
in chunks: TinyImageNet (1.1e9) is above, CIFAR (1.4e8) and digits below, so their normalisation
and hence their results are unchanged, bit for bit."""


SUBSET_SEED = 20261130


def train_subset(bundle: DataBundle, fraction: float) -> DataBundle:
    """`fraction` of the training split, stratified by class: the same images for every method,
    seed and grid (a fixed generator, not the cell's seed), so that cells on a subset stay
    comparable. Each class keeps round(fraction * its count), at least one image. The
    validation split (carved from the training data) shrinks by the same fraction, so that
    validating each epoch does not cost more than training; the test split is untouched, and the
    normalisation statistics stay those of the full training split."""
    if fraction >= 1.0:
        return bundle
    return DataBundle(bundle.spec, _stratified(bundle.train, fraction),
                      _stratified(bundle.val, fraction), bundle.test, bundle.mean, bundle.std)


def _stratified(split: Split, fraction: float) -> Split:
    if not len(split):
        return split
    g = torch.Generator().manual_seed(SUBSET_SEED)
    labels = split.labels.cpu()
    order = torch.randperm(len(labels), generator=g)
    keep = []
    for c in labels.unique().tolist():
        members = order[labels[order] == c]
        keep.append(members[:max(1, round(fraction * len(members)))])
    index = torch.cat(keep).sort().values
    return split.subset(index.to(split.labels.device))


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of images / 255 (std clamped at 1e-3)."""
    if images.numel() <= LARGE_SPLIT:
        imgs = images.float()
        imgs.div_(255.0)  # in place: the same values as `/ 255.0` with one float copy, not two
        return (tuple(imgs.mean(dim=(0, 2, 3)).tolist()),
                tuple(imgs.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist()))
    # Exact integer sums over chunks: a float copy of TinyImageNet would be 4.4 GB (8.8 GB while
    # divided), the bulk of the 11.4 GB a cell used to peak at.
    c = images.shape[1]
    counts = torch.zeros(c, 256, dtype=torch.int64)  # a histogram per channel: sums stay exact
    for chunk in images.split(4096):
        for ch in range(c):
            counts[ch] += torch.bincount(chunk[:, ch].reshape(-1), minlength=256)
    values = torch.arange(256, dtype=torch.int64)
    total = [int(v) for v in (counts * values).sum(1)]
    squares = [int(v) for v in (counts * values * values).sum(1)]
    n = images.numel() // c
    mean = tuple(t / (255.0 * n) for t in total)
    var = [(sq * n - t * t) / (n * (n - 1)) / 255.0 ** 2 for t, sq in zip(total, squares)]
    std = tuple(max(v ** 0.5, 1e-3) for v in var)
    return mean, std


def carve_validation(train: Split, fraction: float, in_place: bool = False
                     ) -> tuple[Split, Split]:
    g = torch.Generator().manual_seed(VAL_SPLIT_SEED)
    perm = torch.randperm(len(train), generator=g)
    n_val = int(round(fraction * len(train)))
    keep, held_out = perm[n_val:].sort().values, perm[:n_val].sort().values
    val = train.subset(held_out)
    if not in_place:
        return train.subset(keep), val
    # Compact the kept rows to the front of the same tensor, chunk by chunk: `keep` is sorted, so
    # row keep[i] >= i and a chunk's sources lie at or after its destination, never in a part
    # already overwritten. The split then never exists twice (1.1 GB for TinyImageNet).
    images = train.images
    for lo in range(0, len(keep), 2048):
        part = keep[lo:lo + 2048]
        images[lo:lo + len(part)] = images[part]
    return Split(images[:len(keep)], train.labels[keep]), val


def _check_labels(spec: DatasetSpec, split: Split, what: str) -> None:
    if len(split) == 0:
        raise DataError(f"{spec.name}: the {what} split is empty")
    lo, hi = int(split.labels.min()), int(split.labels.max())
    if lo < 0 or hi >= spec.num_classes:
        raise DataError(f"{spec.name}: {what} labels span {lo}..{hi}; expected 0..{spec.num_classes - 1}")
    c, h, w = split.images.shape[1:]
    if (c, h, w) != (spec.channels, spec.image_size, spec.image_size):
        raise DataError(f"{spec.name}: {what} images are {c}x{h}x{w}; expected "
                        f"{spec.channels}x{spec.image_size}x{spec.image_size}")


# ---------------------------------------------------------------------------------------------
# digits: scikit-learn's bundled handwritten digits, the default that needs no download


def _load_digits(root: Path | None, download: bool) -> tuple[Split, Split]:
    from sklearn.datasets import load_digits  # deferred: ~2 s of start-up, for digits only

    bunch = load_digits()
    # Values are 0..16 counts of set pixels in a 4x4 block; scale to the uint8 range.
    images = torch.from_numpy(bunch.images).mul(255.0 / 16.0).round().to(torch.uint8).unsqueeze(1)
    labels = torch.from_numpy(bunch.target).long()
    g = torch.Generator().manual_seed(VAL_SPLIT_SEED + 1)
    perm = torch.randperm(len(labels), generator=g)
    n_test = len(labels) // 5
    test_idx, train_idx = perm[:n_test].sort().values, perm[n_test:].sort().values
    return Split(images[train_idx], labels[train_idx]), Split(images[test_idx], labels[test_idx])


register_dataset(DatasetSpec("digits", num_classes=10, channels=1, image_size=8, load=_load_digits,
                             crop_padding=1, flip=False))  # a mirrored digit is another glyph


# ---------------------------------------------------------------------------------------------
# synthetic: tiny generated data for tests (class-dependent mean patterns plus noise)


def _load_synthetic(root: Path | None, download: bool) -> tuple[Split, Split]:
    g = torch.Generator().manual_seed(7)
    classes, size = 4, 8
    prototypes = torch.rand(classes, 3, size, size, generator=g) * 200 + 20

    def make(n: int) -> Split:
        labels = torch.arange(n) % classes
        noise = torch.randn(n, 3, size, size, generator=g) * 25
        images = (prototypes[labels] + noise).clamp(0, 255).to(torch.uint8)
        return Split(images, labels.long())

    return make(320), make(128)


register_dataset(DatasetSpec("synthetic", num_classes=4, channels=3, image_size=8,
                             load=_load_synthetic, crop_padding=1))


# ---------------------------------------------------------------------------------------------
# CIFAR-10 / CIFAR-100: the official python pickle release, read directly


class _CifarUnpickler(pickle.Unpickler):
    """Builds only what the official CIFAR files hold: dicts, lists, strings, bytes, numbers and
    numpy arrays. Any other global (os.system, a class with a __reduce__, ...) is refused, so a
    planted "dataset" cannot run code."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
               ("numpy", "ndarray"), ("numpy", "dtype"),
               ("_codecs", "encode")}  # how protocol-2 pickles from Python 3 spell bytes

    def find_class(self, module: str, name: str):  # type: ignore[override]
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused to load {module}.{name}: not part of a CIFAR file")


def _read_pickle(path: Path) -> dict:
    if not path.is_file():
        raise DataError(f"missing file {path}")
    try:
        with open(path, "rb") as fh:
            entry = _CifarUnpickler(fh, encoding="latin1").load()
        if not isinstance(entry, dict):
            raise pickle.UnpicklingError(f"holds a {type(entry).__name__}, not a dict")
        return entry
    except Exception as exc:
        raise DataError(f"{path} is not a readable CIFAR pickle ({type(exc).__name__}: {exc})") \
            from exc


def _cifar_arrays(path: Path, label_key: str, expected: int | None) -> Split:
    entry = _read_pickle(path)
    if "data" not in entry or label_key not in entry:
        raise DataError(f"{path} lacks the keys 'data' and {label_key!r} (has {sorted(entry)})")
    data = torch.as_tensor(entry["data"])
    labels = torch.as_tensor(list(entry[label_key]), dtype=torch.int64)
    if data.dtype != torch.uint8 or data.dim() != 2 or data.shape[1] != 3072:
        raise DataError(f"{path}: 'data' is {tuple(data.shape)} {data.dtype}; expected N x 3072 uint8")
    if expected is not None and len(data) != expected:
        raise DataError(f"{path}: holds {len(data)} images; expected {expected}")
    if len(labels) != len(data):
        raise DataError(f"{path}: {len(labels)} labels for {len(data)} images")
    return Split(data.reshape(-1, 3, 32, 32).contiguous(), labels)


def _cifar_folder(root: Path | None, name: str, subdir: str, download: bool) -> Path:
    if root is None:
        raise DataError(f"{name} needs --data-root DIR holding {subdir}/ (the official python release)")
    if download:
        import torchvision  # deferred: only --download uses it

        cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
        root.mkdir(parents=True, exist_ok=True)
        cls(str(root), train=True, download=True)
    for candidate in (root / subdir, root):
        if (candidate / ("test_batch" if name == "cifar10" else "test")).exists():
            return candidate
    if not root.exists():
        raise DataError(f"--data-root {root} does not exist (expected it to hold {subdir}/)")
    raise DataError(f"{root} does not hold {subdir}/ with the official {name} python release "
                    f"(use --download where the internet is reachable)")


OFFICIAL_SIZES = (50_000, 10_000)  # CIFAR-10 and CIFAR-100: training and test images


def _warn_if_unofficial(name: str, folder: Path, train: Split, test: Split) -> tuple[Split, Split]:
    """Small copies in the official layout load (tests, the GPU acceptance run's generated files),
    but a truncated release must not pass for the real one unnoticed: say so once, on stderr (the
    record's `data` holds the sizes too)."""
    if (len(train), len(test)) != OFFICIAL_SIZES:
        logging.getLogger(__name__).warning(
            "%s in %s holds %d training and %d test images, not the official %d and %d: "
            "accuracies are not comparable with published ones", name, folder, len(train),
            len(test), *OFFICIAL_SIZES)
    return train, test


def _load_cifar10(root: Path | None, download: bool) -> tuple[Split, Split]:
    folder = _cifar_folder(root, "cifar10", "cifar-10-batches-py", download)
    parts = [_cifar_arrays(folder / f"data_batch_{i}", "labels", None) for i in range(1, 6)]
    train = Split(torch.cat([p.images for p in parts]), torch.cat([p.labels for p in parts]))
    return _warn_if_unofficial("cifar10", folder, train,
                               _cifar_arrays(folder / "test_batch", "labels", None))


def _load_cifar100(root: Path | None, download: bool) -> tuple[Split, Split]:
    folder = _cifar_folder(root, "cifar100", "cifar-100-python", download)
    return _warn_if_unofficial("cifar100", folder,
                               _cifar_arrays(folder / "train", "fine_labels", None),
                               _cifar_arrays(folder / "test", "fine_labels", None))


register_dataset(DatasetSpec("cifar10", 10, 3, 32, _load_cifar10))
register_dataset(DatasetSpec("cifar100", 100, 3, 32, _load_cifar100))


def dataset_sha256(bundle: DataBundle) -> str:
    """Every byte of every split (images and labels) and the normalisation: what a cache entry
    records it was computed from, checked where the sampled fingerprint cannot tell two copies
    apart (bench/exec/context.py). About 0.3 s for CIFAR, a few seconds for TinyImageNet."""
    h = hashlib.sha256()
    for split in (bundle.train, bundle.val, bundle.test):
        for tensor in (split.images, split.labels):
            h.update(str(tuple(tensor.shape)).encode())
            h.update(tensor.contiguous().cpu().numpy().tobytes())
    h.update(repr((bundle.mean, bundle.std)).encode())
    return h.hexdigest()


def dataset_fingerprint(bundle: DataBundle) -> str:
    """A short content hash in every cache key: the shapes, every label and every (N/64)-th image
    of train and test. Two copies that differ only in pixels it does not sample share a key; the
    entry's `data_sha256` (dataset_sha256, every byte) then refuses the other copy. Keying by
    the full hash instead would change every existing key, the converged study's included."""
    h = hashlib.sha256()
    for split in (bundle.train, bundle.test):
        h.update(str(tuple(split.images.shape)).encode())
        h.update(split.images[:: max(1, len(split) // 64)].cpu().numpy().tobytes())
        h.update(split.labels.cpu().numpy().tobytes())
    return h.hexdigest()[:16]

