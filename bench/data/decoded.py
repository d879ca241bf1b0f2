"""Decoding image files into uint8 tensors, and caches of the result that cannot go stale.

A cache stores the fingerprint of what it was decoded from: every file's path (relative to the
dataset folder), label, size and modification time, plus the decoder's version. A changed,
added or removed image, a relabelled class or a new Pillow gives another fingerprint, and the
cache is rebuilt instead of read; a truncated or damaged cache is rebuilt too. Caches are
written atomically, so a killed decode leaves none behind.
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import PIL
import torch
from PIL import Image

from bench.console import progress_bar
from bench.data.datasets import DataError, Split
from bench.store import DamagedFile, atomic_torch_save, safe_torch_load

log = logging.getLogger(__name__)

DECODER_VERSION = 2  # raise when decode_images() would produce other pixels from the same files

Files = Sequence[tuple[Path, int]]


def fingerprint(root: Path, *splits: Files) -> str:
    h = hashlib.sha256(f"decoder={DECODER_VERSION};pillow={PIL.__version__}".encode())
    for files in splits:
        h.update(b"|split|")
        for path, label in files:
            try:
                st = path.stat()
            except OSError:
                raise DataError(f"missing image {path}") from None
            h.update(f"{path.relative_to(root)}\t{label}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def load_or_decode(cache: Path, root: Path, train_files: Files, test_files: Files,
                   decode: Callable[[Files], Split]) -> tuple[Split, Split]:
    """The decoded (train, test) splits, from `cache` when it was made from these very files."""
    digest = fingerprint(root, train_files, test_files)
    if cache.is_file():
        try:
            blob = safe_torch_load(cache)
            if isinstance(blob, dict) and blob.get("fingerprint") == digest:
                return (Split(blob["train_x"], blob["train_y"]),
                        Split(blob["test_x"], blob["test_y"]))
            log.info("%s was decoded from other files; decoding again", cache)
        except (DamagedFile, KeyError, AssertionError) as exc:
            log.warning("%s is unreadable (%s); decoding again", cache, exc)
    train, test = decode(train_files), decode(test_files)
    blob = {"fingerprint": digest, "train_x": train.images, "train_y": train.labels,
            "test_x": test.images, "test_y": test.labels}
    try:
        atomic_torch_save(blob, cache)
    except PermissionError:  # a read-only shared copy: decode each time rather than fail
        log.warning("cannot write %s (read-only); the decode is not cached", cache)
    return train, test


def image_size_of(path: Path) -> int:
    """The side of a square image; a clear error for a non-square one."""
    try:
        with Image.open(path) as im:
            w, h = im.size
    except Exception as exc:
        raise DataError(f"{path} is not a readable image ({type(exc).__name__})") from None
    if w != h:
        raise DataError(f"{path} is {w}x{h} pixels, not square; add ?size=N to the dataset name "
                        "to resize every image (shorter side to N, then a centre crop)")
    return w


def decode_images(files: Files, size: int, *, resize: bool) -> Split:
    """RGB uint8 tensor N x 3 x size x size. Without `resize`, every image must already be
    size x size; with it, the shorter side is scaled to `size` (bilinear, antialiased) and the
    centre cropped."""
    if not files:
        raise DataError("no images found")
    # Streamed into one preallocated tensor: a list of images and its stack would be 2x the split.
    images = torch.empty((len(files), 3, size, size), dtype=torch.uint8)
    bar = _bar(len(files))
    for i, (path, _) in enumerate(files):
        try:
            with Image.open(path) as im:
                im = im.convert("RGB")
                if resize and im.size != (size, size):
                    im = _resize_crop(im, size)
                array = np.asarray(im)
        except FileNotFoundError:
            raise DataError(f"missing image {path}") from None
        except Exception as exc:
            raise DataError(f"{path} is not a readable image ({type(exc).__name__}: {exc})") \
                from None
        if array.shape != (size, size, 3):
            raise DataError(f"{path} is {array.shape[1]}x{array.shape[0]} pixels; expected "
                            f"{size}x{size} (images of mixed sizes: add ?size=N to an "
                            "imagefolder: name to resize them)")
        images[i] = torch.from_numpy(array.copy()).permute(2, 0, 1)
        if bar is not None and i % 1024 == 1023:
            bar.update(1024)
    if bar is not None:
        bar.close()
    return Split(images, torch.tensor([y for _, y in files], dtype=torch.int64))


def _resize_crop(im, size: int):
    w, h = im.size
    scale = size / min(w, h)
    im = im.resize((max(size, round(w * scale)), max(size, round(h * scale))),
                   Image.Resampling.BILINEAR)
    w, h = im.size
    left, top = (w - size) // 2, (h - size) // 2
    return im.crop((left, top, left + size, top + size))


def _bar(total: int):
    if total < 5000:  # small folders decode in a blink; no bar to flash by
        return None
    return progress_bar(total=total, desc="decoding images", unit="img", leave=False)
