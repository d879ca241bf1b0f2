"""The device-resident loader: the whole split lives on the device as uint8; crop, flip and
normalisation run per batch.

No padded or mirrored copy of the split is kept: each batch gathers its images, pads only them
and takes the crops as one strided gather, and mirrors the flipped ones. A TinyImageNet split of
1.1 GB used to carry 2.8 GB of padded and mirrored windows beside it; now the extra memory is one
padded batch. The crops are the same bytes as before (tests/test_data.py pins them to a per-pixel
reference), so results on the same seed do not change.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterator, NamedTuple

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from bench.data.datasets import DataBundle, Split


class Batch(NamedTuple):
    x: torch.Tensor  # float, normalised, on the device
    y: torch.Tensor  # int64 labels
    idx: torch.Tensor  # positions in the split (for per-sample state such as PS-KD's table)


IndexSampler = Callable[[int, torch.Generator], list[torch.Tensor]]
"""(epoch, generator) -> the epoch's batches as index tensors; lets a method pair samples."""


class DeviceLoader:
    """Batches of a split held on the device, augmented per batch with the loader's generator."""

    def __init__(self, split: "Split", bundle: "DataBundle", batch_size: int, *, train: bool,
                 seed: int = 0, device: torch.device | str = "cpu", channels_last: bool = False,
                 sampler: IndexSampler | None = None):
        self.device = torch.device(device)
        self.split = split.to(self.device)
        self.batch_size = batch_size
        self.train = train
        self.pad = bundle.spec.crop_padding if train else 0
        self.flip = bundle.spec.flip and train
        self.channels_last = channels_last
        self.sampler = sampler
        self.generator = torch.Generator().manual_seed(seed)
        self.epoch = 0
        shape = (1, -1, 1, 1)
        self.mean = torch.tensor(bundle.mean, device=self.device).view(shape) * 255.0
        self.inv_std = 1.0 / (torch.tensor(bundle.std, device=self.device).view(shape) * 255.0)

    def index_batches(self) -> list[torch.Tensor]:
        n = len(self.split)
        if self.sampler is not None:
            return self.sampler(self.epoch, self.generator)
        if not self.train:
            return list(torch.arange(n).split(self.batch_size))
        batches = list(torch.randperm(n, generator=self.generator).split(self.batch_size))
        # A last batch of one sample breaks BatchNorm, and a ragged one adds noise: drop it.
        if len(batches) > 1 and len(batches[-1]) < self.batch_size:
            batches.pop()
        return batches

    def __len__(self) -> int:
        n = len(self.split)
        if self.sampler is not None:  # ask it, on a copy of the generator: nothing is consumed
            probe = torch.Generator().set_state(self.generator.get_state())
            return len(self.sampler(self.epoch, probe))
        if self.train and n > self.batch_size:
            return n // self.batch_size
        return -(-n // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        batches = self.index_batches()
        self.epoch += 1
        if not batches:
            return
        total = sum(len(b) for b in batches)
        # All of the epoch's random numbers are drawn at once on the host and moved in one copy.
        if self.pad:
            shifts = torch.randint(0, 2 * self.pad + 1, (2, total), generator=self.generator)
        if self.flip:
            flips = torch.rand(total, generator=self.generator) < 0.5
        index = torch.cat(batches).to(self.device, non_blocking=True)
        extras = []
        if self.pad:
            extras.append(shifts.to(self.device, non_blocking=True))
        if self.flip:
            extras.append(flips.to(self.device, non_blocking=True))
        start = 0
        for b in batches:
            sl = slice(start, start + len(b))
            start += len(b)
            idx = index[sl]
            if not (self.pad or self.flip):
                images = self.split.images[idx]
            else:
                images = self._crops(idx, extras[0][:, sl] if self.pad else None,
                                     extras[-1][sl] if self.flip else None)
            x = (images.float() - self.mean) * self.inv_std
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield Batch(x, self.split.labels[idx], idx)

    def _crops(self, idx: torch.Tensor, shifts: torch.Tensor | None,
               flips: torch.Tensor | None) -> torch.Tensor:
        return gather_crops(self.split.images, idx, self.pad, shifts, flips)


def gather_crops(images: torch.Tensor, idx: torch.Tensor, pad: int, shifts: torch.Tensor | None,
                 flips: torch.Tensor | None) -> torch.Tensor:
    """The crops of images `idx` at offsets `shifts` (2 x B: rows, cols) of the image zero-padded
    by `pad`, mirrored where `flips`.

    Only the batch is padded; its every shifted window is one strided view (B, C, 2·pad+1,
    2·pad+1, H, W), so the crops are one gather with no per-pixel index tensors."""
    batch = images[idx]
    b, _, h, w = batch.shape
    if shifts is not None and pad:
        padded = F.pad(batch, (pad, pad, pad, pad))
        windows = padded.unfold(2, h, 1).unfold(3, w, 1)
        batch = windows[torch.arange(b, device=idx.device), :, shifts[0], shifts[1]]
    if flips is not None:
        batch = torch.where(flips.view(-1, 1, 1, 1), batch.flip(3), batch)
    return batch
