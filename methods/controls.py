"""The controls' steps shared by the one-shot methods (docs/methods.md, Controls): per-layer
allocation, layer-matched counts and the mask controls (`mask_control=shuffle|reinit`). The pure
parts are in bench/masks/allocation.py."""
from __future__ import annotations

import torch

from bench.masks import (attach_mask, by_module_name, global_topk_mask, keep_count,
                         prunable_modules, prunable_weights)
from bench.masks.allocation import (ALLOCATIONS, allocation_counts, layer_counts_from_record,
                                    per_layer_topk_mask, shuffle_within_layers)
from bench.method import Option, method_for_label
from bench.method.retraining import reinitialised
from bench.registry import UsageError

MASK_CONTROLS = ("none", "shuffle", "reinit")
RETRAIN = Option("ft", choices=("ft", "kd"),
                 help="fine-tuning loss: CE (ft) or tg-oneshot's L_total with its teacher (kd)")
MASK_CONTROL = Option("none", choices=MASK_CONTROLS,
                      help="shuffle: the same per-layer counts at random positions; reinit: the "
                           "same mask on re-initialised weights")
ALLOCATION = Option("global", choices=ALLOCATIONS,
                    help="per-layer counts: one global threshold, every layer at s, or ERK")
SHUFFLE_SEED = 17  # the seed offset of shuffle's draw (reinit's is the retraining module's)


def prune(ctx, model, scores, *, allocation: str = "global", counts=None,
          mask_control: str = "none"):
    """Prune `model` to the cell's exact count and return the model to retrain: the global rule
    (ctx.prune, unchanged), per-layer `counts`, or counts from `allocation`; then the control."""
    if counts is None and allocation == "global" and mask_control == "none":
        ctx.prune(model, scores)
        return model
    weights = prunable_weights(model)
    scores = by_module_name(scores, prunable_modules(model), "scores")
    if counts is None and allocation != "global":
        counts = allocation_counts(allocation, {n: tuple(w.shape) for n, w in weights.items()},
                                   ctx.config.sparsity)
    if counts is not None:
        mask = per_layer_topk_mask({n: scores[n] for n in weights}, counts)
    else:  # the mask ctx.prune would attach, not attached yet: shuffle keeps the dense weights
        mask, guarded = global_topk_mask(scores, ctx.config.sparsity)
        if guarded:
            ctx.extra.setdefault("guarded_layers", []).extend(guarded)
    if mask_control == "shuffle":
        generator = torch.Generator().manual_seed(ctx.config.seed * 1000 + SHUFFLE_SEED)
        mask = shuffle_within_layers(mask, generator)
    attach_mask(model, mask)
    if mask_control == "reinit":
        model = reinitialised(ctx, model)
    return model


def matched_counts(ctx, target: str) -> dict[str, int]:
    """Per-layer kept counts of `target`'s mask (a method or row label) in the cell at this cell's
    coordinates, read from the store or run first."""
    name, options = method_for_label(target)
    if "match" in options or name == ctx.config.method and not options:
        raise UsageError(f"match={target!r}: the matched method must be another, unmatched one")
    other = ctx.config.replace(method=name, options=options)
    record = ctx.other_cell(other)
    sizes = {n: w.numel() for n, w in prunable_weights(ctx.make_model()).items()}
    return layer_counts_from_record(record, sizes)


def check_total(counts: dict[str, int], ctx) -> None:
    """A matched mask keeps this cell's exact count only if the matched one did."""
    total = sum(w.numel() for w in prunable_weights(ctx.make_model()).values())
    want = keep_count(total, ctx.config.sparsity)
    if sum(counts.values()) != want:
        raise ValueError(f"the matched mask keeps {sum(counts.values())} weights; sparsity "
                         f"{ctx.config.sparsity} needs {want}")

