"""How the self-distillation methods batch their training data (methods/self_distillation.py).

Each sampler is an `IndexSampler`: (epoch, generator) -> the epoch's batches as index tensors.
The loader asks it how many steps an epoch has, so the schedule follows it.

`new` is the number of new samples a step takes (the official codes' batch size): every sample is
new exactly once per epoch, in ⌈N / new⌉ steps. The permutation's last chunk is filled up from
its start, so every step has the same size (the official loaders keep a ragged last batch; a
ragged batch of one breaks BatchNorm, and equal batches keep the steps alike).
"""
from __future__ import annotations

import math

import torch


def epoch_chunks(n: int, size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """A random permutation of range(n) in ⌈n / size⌉ chunks of `size`, the last filled up from
    the permutation's start: every index at least once, none skipped."""
    steps = max(1, math.ceil(n / size))
    perm = torch.randperm(n, generator=generator)
    perm = perm.repeat(math.ceil(steps * size / n))[:steps * size]
    return list(perm.split(size))


class EverySampleSampler:
    """Plain batches of `batch_size` that cover every sample each epoch (PS-KD: a skipped sample's
    soft target would stay an epoch staler)."""

    def __init__(self, n: int, batch_size: int):
        if batch_size < 1:
            raise ValueError("the batch size must be at least 1")
        self.n, self.batch_size = n, batch_size

    def __call__(self, epoch: int, generator: torch.Generator) -> list[torch.Tensor]:
        return epoch_chunks(self.n, self.batch_size, generator)


class ClassPairSampler:
    """CS-KD batching (the official `PairBatchSampler`): `new` anchors (each sample once per
    epoch), then for each anchor a random other sample of the same class, in the same order:
    batch = [anchors ; partners], 2 × new samples."""

    def __init__(self, labels: torch.Tensor, new: int):
        if new < 1:
            raise ValueError("CS-KD needs at least one anchor per step")
        labels = labels.detach().cpu().long()
        self.new = new
        self.n = len(labels)
        self.by_class = torch.argsort(labels, stable=True)  # sample indices grouped by class
        counts = torch.bincount(labels)
        starts = torch.cumsum(counts, 0) - counts
        self.class_start = starts[labels]  # per sample: where its class begins in by_class
        self.class_size = counts[labels]
        self.rank = torch.empty_like(labels)  # per sample: its position within its class
        self.rank[self.by_class] = torch.arange(self.n) - starts[labels[self.by_class]]

    def partners(self, anchors: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        size = self.class_size[anchors]
        shift = 1 + (torch.rand(len(anchors), generator=generator) * (size - 1)).long()
        shift = shift.clamp(max=(size - 1).clamp(min=1))  # guards rand() * (size-1) rounding up
        return self.by_class[self.class_start[anchors] + (self.rank[anchors] + shift) % size]

    def __call__(self, epoch: int, generator: torch.Generator) -> list[torch.Tensor]:
        anchors = epoch_chunks(self.n, self.new, generator)
        partners = self.partners(torch.cat(anchors), generator).split(self.new)
        return [torch.cat([a, p]) for a, p in zip(anchors, partners)]


class LastBatchSampler:
    """DLB batching: batch t = [fresh_t ; fresh_{t−1}], `new` fresh samples each, 2 × new
    samples; the epoch's first batch is fresh_0 alone."""

    def __init__(self, n: int, new: int):
        if new < 1:
            raise ValueError("DLB needs at least one fresh sample per step")
        self.n, self.new = n, new

    def __call__(self, epoch: int, generator: torch.Generator) -> list[torch.Tensor]:
        fresh = epoch_chunks(self.n, self.new, generator)
        return [fresh[0]] + [torch.cat([h, prev]) for prev, h in zip(fresh, fresh[1:])]
