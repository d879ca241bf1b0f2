"""Global magnitude and random pruning (docs/methods.md).

Train dense with CE (shared by every sparsity through the cache), keep the top (1 - s) of |θ|
over all prunable weights with one threshold (or a uniformly random subset of the same size),
fine-tune with CE.
"""
from __future__ import annotations

import torch

from bench.masks import magnitude_scores, random_scores
from bench.estimate import PhaseCost, dense_phase, relative_cost, train_images
from bench.method import register_method


def finetune_cost(cfg) -> list[PhaseCost]:
    """The shared dense network, then the cell's own fine-tuning."""
    m = relative_cost(cfg.model, cfg.dataset)
    return [dense_phase(cfg), PhaseCost(None, "finetune", train_images(cfg) * cfg.sparse_epochs * m)]


@register_method("magnitude", cost=finetune_cost)
def magnitude(ctx):
    """Train dense, prune by global |w| to the exact count, fine-tune with CE."""
    model = ctx.dense_model()
    with ctx.clock("prune"):
        ctx.prune(model, magnitude_scores(model))
    ctx.train(model, ctx.phase("finetune", ctx.config.sparse_epochs))
    return model


@register_method("random", cost=finetune_cost)
def random_pruning(ctx):
    """Train dense, keep a uniformly random subset of the same size, fine-tune with CE."""
    model = ctx.dense_model()
    with ctx.clock("prune"):
        generator = torch.Generator().manual_seed(ctx.config.seed)
        ctx.prune(model, random_scores(model, generator))
    ctx.train(model, ctx.phase("finetune", ctx.config.sparse_epochs))
    return model
