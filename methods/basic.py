"""Global magnitude and random pruning (docs/methods.md), and their controls.

Train dense with CE (shared by every sparsity through the cache), keep the top (1 - s) of |θ|
over all prunable weights with one threshold (or a uniformly random subset of the same size),
fine-tune with CE. Options (all off by default, so existing cells keep their ids and rows):
`retrain=kd` fine-tunes with tg-oneshot's objective and teacher (rows magnitude-kd, random-kd),
`allocation=uniform|erk` sets the per-layer counts, `mask_control=shuffle|reinit`, and for random
`match=<method or row label>` copies another method's per-layer counts at the same coordinates.
"""
from __future__ import annotations

import torch

from bench.masks import magnitude_scores, random_scores
from bench.plan.estimate import (PhaseCost, cell_phases, dense_phase, relative_cost, teacher_phase,
                            train_images)
from bench.method import Option, method_for_label, register_method
from bench.method.retraining import retrain
from bench.train.trainer import ce_objective
from methods import controls
from methods.teacher_guided import OPTIONS as TG_OPTIONS, TeacherGuidedObjective


def _is_label(value: str) -> bool:
    return value == "" or bool(method_for_label(value))  # an unknown one raises a UsageError


COMMON = {"retrain": controls.RETRAIN, "allocation": controls.ALLOCATION,
          "mask_control": controls.MASK_CONTROL}
RANDOM_OPTIONS = {**COMMON, "match": Option(
    "", check=_is_label, valid="a method or row label such as tg-oneshot-kd",
    help="copy the per-layer kept counts of this method's mask at the same cell coordinates")}


def retrain_objective(ctx, retrain: str):
    """CE, or tg-oneshot's objective with the same cached teacher, α, T and its default CA-KLD
    normalisation: the `kd` of magnitude-kd and random-kd."""
    if retrain != "kd":
        return ce_objective
    return TeacherGuidedObjective(ctx.teacher(), ctx.config.alpha, ctx.temperature,
                                  TG_OPTIONS["kd_norm"].default)


def _finish(ctx, model, scores, counts=None):
    opt = ctx.options
    with ctx.clock("prune"):
        model = controls.prune(ctx, model, scores, allocation=opt["allocation"], counts=counts,
                               mask_control=opt["mask_control"])
    return retrain(ctx, model, retrain_objective(ctx, opt["retrain"]))


def finetune_cost(cfg) -> list[PhaseCost]:
    """The shared dense network, then the cell's own fine-tuning; with retrain=kd the shared
    teacher too, and its forward in every step (a third of a training step); with match= the
    matched cell's phases first (it runs first if missing), once per grid."""
    n, m = train_images(cfg), relative_cost(cfg.model, cfg.dataset)
    opt = cfg.option_dict
    phases = [dense_phase(cfg)]
    step = m
    if opt["retrain"] == "kd":
        phases.append(teacher_phase(cfg))
        step += relative_cost(cfg.teacher, cfg.dataset) / 3.0
    phases.append(PhaseCost(None, "finetune", n * cfg.sparse_epochs * step))
    if opt.get("match"):
        name, options = method_for_label(opt["match"])
        other = cfg.replace(method=name, options=options)
        phases = [p._replace(key=p.key or ("cell", other.id, p.name))
                  for p in cell_phases(other)] + phases
    return phases


@register_method("magnitude", options=COMMON, label_variants=("retrain",), cost=finetune_cost,
                 one_shot=True)
def magnitude(ctx):
    """Train dense, prune by global |w| to the exact count, fine-tune with CE."""
    model = ctx.dense_model()
    return _finish(ctx, model, magnitude_scores(model))


@register_method("random", options=RANDOM_OPTIONS, label_variants=("retrain",), cost=finetune_cost,
                 one_shot=True)
def random_pruning(ctx):
    """Train dense, keep a uniformly random subset of the same size, fine-tune with CE."""
    counts = None
    if ctx.options["match"]:
        if ctx.options["allocation"] != "global":
            raise ValueError("random: match= sets the per-layer counts; leave allocation out")
        counts = controls.matched_counts(ctx, ctx.options["match"])  # first: it may run a cell
        controls.check_total(counts, ctx)
        ctx.extra["matched"] = ctx.options["match"]
    model = ctx.dense_model()
    generator = torch.Generator().manual_seed(ctx.config.seed)
    return _finish(ctx, model, random_scores(model, generator), counts)
