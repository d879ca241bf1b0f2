"""Per-layer allocations and the masks of the controls (docs/methods.md, Controls): how many weights
each layer keeps (uniform, ERK, or copied from another mask), top-k within each layer, and positions
shuffled within each layer. Pure functions of tensors and counts.

Rounding rule (uniform and ERK): each layer's ideal real-valued count is floored, and the
remaining survivors, up to the exact total `keep_count(N, s)`, go one each to the layers with the
largest fractional remainders (ties: the earlier layer); no layer gets more than its size.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch

from bench.masks.mask import Mask
from bench.masks.ranking import keep_best, keep_count

ALLOCATIONS = ("global", "uniform", "erk")


def largest_remainder(ideal: Mapping[str, float], sizes: Mapping[str, int], total: int
                      ) -> dict[str, int]:
    """Integer counts, each ≤ its size, adding up to `total`: floors of `ideal`, then one more for
    the largest fractional remainders (ties by layer order)."""
    if not 0 <= total <= sum(sizes.values()):
        raise ValueError(f"cannot keep {total} of {sum(sizes.values())} weights")
    counts = {n: min(sizes[n], max(0, math.floor(ideal[n]))) for n in sizes}
    left = total - sum(counts.values())
    names = list(sizes)
    while left != 0:  # a loop only because capping at a layer's size can leave some over
        step = 1 if left > 0 else -1
        order = sorted(range(len(names)), key=lambda i: (-(ideal[names[i]] - counts[names[i]])
                                                         * step, i))
        moved = 0
        for i in order:
            n = names[i]
            if (step > 0 and counts[n] < sizes[n]) or (step < 0 and counts[n] > 0):
                counts[n] += step
                left -= step
                moved += 1
                if left == 0:
                    break
        if not moved:
            raise ValueError("no layer can take the remaining count")
    return counts


def uniform_counts(sizes: Mapping[str, int], sparsity: float) -> dict[str, int]:
    """Every layer at the target sparsity: ideal (1 − s)·N_l, exact total by largest remainder."""
    return largest_remainder({n: (1.0 - sparsity) * t for n, t in sizes.items()}, sizes,
                             keep_count(sum(sizes.values()), sparsity))


def erk_densities(shapes: Mapping[str, Sequence[int]], sparsity: float) -> dict[str, float]:
    """Erdős–Rényi-Kernel densities (Evci et al. 2020, RigL's `get_sparsities` with
    erdos_renyi_kernel): density_l = ε·Σ(shape_l)/Π(shape_l), with ε chosen so that the kept total
    is (1 − s)·N; a layer whose density would exceed 1 is made dense and ε is solved again over
    the others. A Linear weight (out, in) has the Erdős–Rényi factor (in + out)/(in·out)."""
    sizes = {n: math.prod(s) for n, s in shapes.items()}
    raw = {n: sum(s) / math.prod(s) for n, s in shapes.items()}
    target = (1.0 - sparsity) * sum(sizes.values())
    dense: set[str] = set()
    while True:
        rest = [n for n in shapes if n not in dense]
        budget = target - sum(sizes[n] for n in dense)
        eps = budget / sum(raw[n] * sizes[n] for n in rest) if rest else 0.0
        over = [n for n in rest if eps * raw[n] > 1.0]
        if not over:
            break
        dense.update(over)
    return {n: 1.0 if n in dense else eps * raw[n] for n in shapes}


def erk_counts(shapes: Mapping[str, Sequence[int]], sparsity: float) -> dict[str, int]:
    """ERK per-layer kept counts, exact total by largest remainder."""
    sizes = {n: math.prod(s) for n, s in shapes.items()}
    densities = erk_densities(shapes, sparsity)
    return largest_remainder({n: densities[n] * sizes[n] for n in sizes}, sizes,
                             keep_count(sum(sizes.values()), sparsity))


def allocation_counts(allocation: str, shapes: Mapping[str, Sequence[int]], sparsity: float
                      ) -> dict[str, int]:
    if allocation == "uniform":
        return uniform_counts({n: math.prod(s) for n, s in shapes.items()}, sparsity)
    if allocation == "erk":
        return erk_counts(shapes, sparsity)
    raise ValueError(f"allocation {allocation!r} has no per-layer counts; valid: uniform, erk")


def per_layer_topk_mask(scores: Mapping[str, torch.Tensor], counts: Mapping[str, int]) -> Mask:
    """Each layer keeps exactly `counts[name]` of its best scores (ties by position)."""
    if set(scores) != set(counts):
        raise ValueError(f"counts name {sorted(set(counts) ^ set(scores))[:5]}, which the scores "
                         f"do not (or the other way round)")
    out = {}
    for name, s in scores.items():
        flat = s.detach().reshape(-1).float()
        out[name] = keep_best(flat, int(counts[name])).view(s.shape)
    return Mask(out)


def shuffle_within_layers(mask: Mapping[str, torch.Tensor], generator: torch.Generator) -> Mask:
    """The same number of survivors in every layer at uniformly random positions of that layer."""
    out = {}
    for name, m in mask.items():
        flat = m.reshape(-1).bool().cpu()
        perm = torch.randperm(flat.numel(), generator=generator)
        out[name] = flat[perm].view(m.shape).to(m.device)
    return Mask(out)


def layer_counts_from_record(record: Mapping, expected: Mapping[str, int]) -> dict[str, int]:
    """Per-layer kept counts from a record's `sparsity.layers` ({name: [kept, total]}), checked
    against this model's layer sizes `expected`."""
    layers = (record.get("sparsity") or {}).get("layers")
    if not layers:
        raise ValueError(f"record {record.get('id')} holds no per-layer counts")
    if set(layers) != set(expected) or any(int(layers[n][1]) != expected[n] for n in expected):
        raise ValueError(f"record {record.get('id')} has other layers than this model "
                         f"({len(layers)} vs {len(expected)})")
    return {n: int(layers[n][0]) for n in expected}
