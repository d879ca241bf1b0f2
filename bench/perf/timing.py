"""The measuring tools every bench.perf row shares: synthetic CIFAR-shaped data and timers that
interleave the contenders (one warm-up each, then the median of repeats), so a ratio survives a
noisy machine better than either number alone. Apart from the command (bench/perf/command.py) so
that the row modules use them without importing the command line back."""
from __future__ import annotations

import statistics
import time
from typing import Callable, Mapping, TypeVar

import torch

from bench.data import DataBundle, DatasetSpec, Split

K = TypeVar("K")


def cifar_like(n: int, classes: int = 10, size: int = 32, seed: int = 0) -> DataBundle:
    g = torch.Generator().manual_seed(seed)
    split = Split(torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8),
                  torch.randint(0, classes, (n,), generator=g))
    empty = Split(split.images[:0], split.labels[:0])
    spec = DatasetSpec("cifar-like", classes, 3, size, load=lambda root, dl: (split, split))
    return DataBundle(spec, split, empty, split, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


def alternate(a: Callable[[], float], b: Callable[[], float], repeats: int) -> tuple[float, float]:
    """Median of `repeats` runs of each, interleaved a, b, a, b, ... after one warm-up each."""
    a(), b()
    ta, tb = [], []
    for _ in range(repeats):
        ta.append(a())
        tb.append(b())
    return statistics.median(ta), statistics.median(tb)


def interleave(fns: Mapping[K, Callable[[], float]], repeats: int) -> dict[K, float]:
    """`alternate` for any number of contenders: one warm-up each, then `repeats` rounds that run
    each once in turn; the median per contender."""
    for fn in fns.values():
        fn()
    times: dict[K, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            times[k].append(fn())
    return {k: statistics.median(v) for k, v in times.items()}


def timed(fn: Callable[[], None], sync: Callable[[], None]) -> Callable[[], float]:
    def run() -> float:
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        return time.perf_counter() - t0
    return run
