"""Scores -> masks: the counting rules (exact count, ties, empty-layer guard) and the pruning
functions every method calls (global top-k, global removal among survivors, per-layer budgets)."""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import torch
from torch import nn

from bench.masks.mask import Mask, prunable_weights

# Every method turns scores into a mask through the functions below, so the counting rules exist
# once:
#   exact count  a target sparsity s over N weights keeps round((1 - s) * N) of them (`keep_count`);
#   ties         equal scores are ranked by position (earlier layer, earlier index first): the
#                earlier weight is kept, the later one is pruned first;
#   empty layers a layer that one global threshold would empty may keep its best weight(s) while
#                the globally weakest survivors elsewhere give way (`global_topk_mask`).


def keep_count(total: int, sparsity: float) -> int:
    """Survivors for a target sparsity: round((1 - s) * N), the exact count every method hits."""
    return int(round((1.0 - sparsity) * total))


def flatten(tensors: Mapping[str, torch.Tensor], names: Sequence[str] | None = None
            ) -> torch.Tensor:
    """The tensors of `names` (default: all, in order) as one flat vector."""
    names = list(tensors) if names is None else names
    return torch.cat([tensors[n].detach().reshape(-1) for n in names])


def unflatten(flat: torch.Tensor, like: Mapping[str, torch.Tensor],
              names: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
    """Inverse of `flatten`: pieces shaped (and placed) like `like`'s tensors."""
    names = list(like) if names is None else names
    out, start = {}, 0
    for n in names:
        size = like[n].numel()
        out[n] = flat[start:start + size].view(like[n].shape).clone().to(like[n].device)
        start += size
    if start != flat.numel():
        raise ValueError(f"flat vector has {flat.numel()} entries; the layers hold {start}")
    return out


def _checked_scores(scores: Mapping[str, torch.Tensor], names: Sequence[str]) -> torch.Tensor:
    flat = flatten(scores, names).float()
    if not torch.isfinite(flat).all():
        raise ValueError("scores contain NaN or inf")
    return flat


def ranking(flat: torch.Tensor, alive: torch.Tensor | None = None) -> torch.Tensor:
    """Positions of the flat scores (those `alive`, if given) from best to worst; equal scores
    keep position order, so the earlier weight ranks higher. THE tie rule."""
    if alive is None:
        return torch.argsort(flat, descending=True, stable=True)
    pos = torch.nonzero(alive.reshape(-1).to(flat.device)).flatten()
    return pos[torch.argsort(flat[pos], descending=True, stable=True)]


def removal_rank(flat: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
    """For each alive position (in position order), its place in the order of removal: 0 is the
    first weight a pruning of these scores removes (the worst by `ranking`)."""
    order = ranking(flat, alive)
    n = order.numel()
    pos = torch.nonzero(alive.reshape(-1).to(flat.device)).flatten()
    where = torch.empty(flat.numel(), dtype=torch.int64, device=flat.device)
    where[order] = torch.arange(n - 1, -1, -1, device=flat.device)
    return where[pos]


def keep_best(flat: torch.Tensor, keep: int, alive: torch.Tensor | None = None) -> torch.Tensor:
    """Flat boolean vector: the `keep` best of the (alive) flat scores, ties by `ranking`."""
    order = ranking(flat, alive)
    if not 0 <= keep <= order.numel():
        raise ValueError(f"cannot keep {keep} of {order.numel()} weights")
    out = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    out[order[:keep]] = True
    return out


def global_topk_mask(scores: Mapping[str, torch.Tensor], sparsity: float, *,
                     min_per_layer: int = 1) -> tuple[Mask, list[str]]:
    """Keep the top (1 - s) of all scores together, one threshold, exactly `keep_count` survivors.

    Ties are broken by position (earlier layer, earlier index wins), so the result is
    deterministic. A layer that would be emptied keeps its `min_per_layer` best weights instead of
    the globally weakest survivors elsewhere; the names of such layers are returned.
    """
    names = list(scores)
    flat = _checked_scores(scores, names)
    k = keep_count(flat.numel(), sparsity)
    order = ranking(flat)
    keep = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    keep[order[:k]] = True
    sizes = [scores[n].numel() for n in names]
    guarded: list[str] = []
    if min_per_layer > 0 and k >= min_per_layer * len(names):
        keep, guarded = _guard_empty_layers(flat, keep, order, names, sizes, min_per_layer)
    return Mask(unflatten(keep, scores, names)), guarded


def _guard_empty_layers(flat, keep, order, names, sizes, min_per_layer):
    offsets = [0]
    for s in sizes:
        offsets.append(offsets[-1] + s)
    k = int(keep.sum())
    guarded = []
    for i, name in enumerate(names):
        lo, hi = offsets[i], offsets[i + 1]
        need = min(min_per_layer, hi - lo)
        if int(keep[lo:hi].sum()) >= need:
            continue
        guarded.append(name)
        local = ranking(flat[lo:hi])[:need]
        keep[lo + local] = True
    added = int(keep.sum()) - k
    if added:
        # Give back as many survivors as were added: the globally weakest of the original
        # survivors, taken only from layers that keep more than the minimum.
        layer_of = torch.repeat_interleave(torch.arange(len(names)), torch.tensor(sizes))
        counts = torch.bincount(layer_of[keep.cpu()], minlength=len(names)).tolist()
        for j in order[:k].flip(0).tolist():
            layer = int(layer_of[j])
            if counts[layer] > min_per_layer:
                keep[j] = False
                counts[layer] -= 1
                added -= 1
                if added == 0:
                    break
    return keep, guarded


def prune_global(scores: Mapping[str, torch.Tensor], alive: Mapping[str, torch.Tensor],
                 count: int) -> Mask:
    """`alive` without its `count` weakest weights by one global ranking of `scores` (no guard)."""
    names = list(alive)
    alive_flat = flatten(alive, names).bool()
    flat = _checked_scores(scores, names)
    keep = keep_best(flat, int(alive_flat.sum()) - count, alive_flat)
    return Mask(unflatten(keep, alive, names))


def prune_per_layer(scores: Mapping[str, torch.Tensor], alive: Mapping[str, torch.Tensor],
                    budgets: Mapping[str, int]) -> Mask:
    """`alive` without the `budgets[name]` weakest weights of each layer (others unchanged)."""
    out = dict(alive)
    for name, count in budgets.items():
        if count:
            layer_alive = alive[name].reshape(-1).bool()
            flat = _checked_scores({name: scores[name]}, [name])
            keep = keep_best(flat, int(layer_alive.sum()) - count, layer_alive)
            out[name] = keep.view(alive[name].shape).to(alive[name].device)
    return Mask(out)


def random_scores(model: nn.Module, generator: torch.Generator) -> dict[str, torch.Tensor]:
    return {n: torch.rand(w.shape, generator=generator) for n, w in prunable_weights(model).items()}


def magnitude_scores(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: w.detach().abs() for n, w in prunable_weights(model).items()}


def intersect(masks: Iterable[Mapping[str, torch.Tensor]]) -> Mask:
    """A weight survives only where every mask keeps it."""
    masks = list(masks)
    return Mask({n: torch.stack([m[n].bool() for m in masks]).all(0) for n in masks[0]})
