"""The small-dense reference (docs/methods.md, Controls): a dense network of the same architecture,
narrowed until its prunable weights (Conv2d and Linear) number about the non-zeros a pruned one
keeps, round((1 − s)·N), trained from scratch with CE for the pruned methods' total budget
(dense_epochs + sparse_epochs, one cosine schedule). It answers whether pruning beats simply
training a smaller network.

Width: the last stage's channel count j (1 … full) with the other stages kept in proportion
(bench.train.models.narrow_widths); the j whose prunable count is nearest the target is taken. Such a
width "exists" only for the built-in resnets and only when that nearest count is within
WIDTH_TOLERANCE of the target; elsewhere (smallcnn, timm:, a target below the narrowest network)
the cell fails before training with the reason, and `bench.run --dry-run` lists it UNREACHABLE.
Its record's sparsity is 1 − (its weights) / (the full model's prunable weights), `over`: "width".
"""
from __future__ import annotations

from functools import lru_cache

import torch

from bench import catalog
from bench.masks import keep_count, prunable_weights
from bench.plan.estimate import PhaseCost, relative_cost, train_images
from bench.method import register_method
from bench.train.models import RESNETS, build_model, narrow_resnet

WIDTH_TOLERANCE = 0.10  # relative distance of the narrow network's weights from the target count


@lru_cache(maxsize=4096)
def _prunable(model: str, last: int | None, num_classes: int, channels: int, size: int) -> int:
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        net = build_model(model, num_classes, channels, size) if last is None else \
            narrow_resnet(model, last, num_classes, channels)
    return sum(w.numel() for w in prunable_weights(net).values())


def choose_width(model: str, sparsity: float, num_classes: int, channels: int, size: int
                 ) -> tuple[int | None, str]:
    """(last-stage width, "") or (None, why no width fits)."""
    if model not in RESNETS:
        return None, (f"small-dense needs one of the built-in resnets ({', '.join(RESNETS)}); "
                      f"{model!r} has no width multiplier here")
    full = _prunable(model, None, num_classes, channels, size)
    target = keep_count(full, sparsity)
    lo, hi = 1, RESNETS[model][2][-1]
    while lo < hi:  # the smallest width with at least `target` weights (counts grow with width)
        mid = (lo + hi) // 2
        if _prunable(model, mid, num_classes, channels, size) >= target:
            hi = mid
        else:
            lo = mid + 1
    best = min({max(1, lo - 1), lo}, key=lambda j: (abs(_prunable(model, j, num_classes, channels,
                                                                   size) - target), j))
    got = _prunable(model, best, num_classes, channels, size)
    if abs(got - target) > WIDTH_TOLERANCE * target:
        return None, (f"no width of {model} has about {target} weights (sparsity {sparsity:g}): "
                      f"the nearest, last-stage width {best}, has {got}")
    return best, ""


def check_width(config) -> str | None:
    spec = catalog.DATASETS.get(config.dataset)
    width, why = choose_width(config.model, config.sparsity, spec.num_classes, spec.channels,
                              spec.image_size)
    return None if width else why


def small_dense_cost(cfg) -> list[PhaseCost]:
    """A narrower network trained for both budgets together; its MACs shrink about as its
    weights do: (1 − s) of the full network's."""
    m = relative_cost(cfg.model, cfg.dataset) * (1 - cfg.sparsity)
    return [PhaseCost(None, "train", train_images(cfg) * (cfg.dense_epochs + cfg.sparse_epochs) * m)]


@register_method("small-dense", requires_epochs=("dense_epochs",), precheck=check_width,
                 cost=small_dense_cost)
def small_dense(ctx):
    """A narrower dense network with about the pruned count of weights, same total epochs."""
    cfg, spec = ctx.config, ctx.data.spec
    width, why = choose_width(cfg.model, cfg.sparsity, spec.num_classes, spec.channels,
                              spec.image_size)
    if width is None:
        raise ValueError(why)
    name = f"{cfg.model}/w{width}"
    model = ctx.make_model(name)
    ctx.extra["model_built"] = name
    ctx.expected_sparsity = None  # dense: no mask, and its count is only about the target
    ctx.dense_reference = _prunable(cfg.model, None, spec.num_classes, spec.channels,
                                    spec.image_size)
    ctx.extra["small_dense"] = {"model": name, "weights": _prunable(
        cfg.model, width, spec.num_classes, spec.channels, spec.image_size),
        "target": keep_count(ctx.dense_reference, cfg.sparsity)}
    ctx.train(model, ctx.phase("train", cfg.dense_epochs + cfg.sparse_epochs))
    return model
