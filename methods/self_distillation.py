"""The EPSD family (docs/methods.md (its EPSD-family section)): prune at initialisation, then train the sparse network
with self-distillation (SD). Chen et al., "Early Pruning with Self-Distillation", AAAI 2024.

    1. θ0 = the seeded initialisation (no dense phase).
    2. Score every prunable weight by a meta-gradient |∂L(θ_k)/∂m| through k = 3 SGD steps
       (lr 0.5, momentum 0.9, one fresh batch each; bench/train/saliency.py, `meta_grad=official`:
       ProsPr's code, the first gradient held constant; `paper`: the paper's equation):
         simple: L = CE on plain batches;
         epsd:   L = the SD method's own training objective on its own batches, scores / their sum.
    3. Keep the global top (1 − s) of the scores, exactly keep_count weights (ctx.prune).
    4. Train the masked network for sparse_epochs with the SD objective through the one trainer.

The three SD methods, each an objective (methods/sd_objectives.py) and a batching
(methods/sd_batching.py). B = batch_size counts NEW samples per step, as in the official code
(`batch_counts=new`, default); `batch_counts=total` makes B the whole batch (B/2 new):
    CS-KD  batch = B anchors ; one other same-class sample per anchor (ClassPairSampler);
           L = CE(anchors) + λ T² KL(p_T(partner) ‖ p_T(anchor)), T = 4, λ = 1.
    PS-KD  batches of B covering every sample each epoch (EverySampleSampler); L = CE against
           (1 − α_t) onehot + α_t p_{e−1}(x), p_{e−1} a per-sample table of last-epoch softmax
           predictions (one-hot before the first epoch, as in the official code),
           α_t = α_T (e+1)/E, α_T = 0.8.
    DLB    batch t = [fresh_t ; fresh_{t−1}], B each (LastBatchSampler); the logits of fresh_{t−1}
           at step t−1 (detached) are soft targets for its repeat at step t:
           L = CE(batch) + α τ² KL(p_τ(prev) ‖ p_τ(repeat)), τ = 3, α = 1.
Every sample is new once per epoch: ⌈N/B⌉ steps (`total`: ⌈N/(B/2)⌉), the last chunk filled up
from the epoch's first samples. Where the official code differs (CS-KD's separate no-grad partner
pass, DLB's chain across epochs, ragged last batches) docs/methods.md (its EPSD-family section) says why.

`epsd` at initialisation, where an SD method has no history yet:
    CS-KD: its objective on pair batches (partners are the teacher, detached).
    DLB:   its objective along the k + 1 scoring batches chained as in training.
    PS-KD: the "previous epoch" is the network at θ0: soft targets (1 − α_T) onehot + α_T p_θ0(x),
           p_θ0 from a no-grad train-mode forward of a copy of the initial network on the same
           batch. (The current network's own detached predictions would make the PS-KD gradient
           exactly (1 − α)× the CE gradient: `simple` with a smaller lr.)
`simple` scores are the same for all three families at a given seed (same batches, CE).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch
from torch import nn

from bench.data.loader import Batch, IndexSampler
from bench.plan.estimate import PhaseCost, relative_cost, train_images
from bench.method import Option, register_method
from bench.registry import UsageError
from bench.train.saliency import META_GRADS, meta_gradient_scores, normalize_by_sum
from bench.train.trainer import Objective, ce_objective
from methods.sd_batching import ClassPairSampler, EverySampleSampler, LastBatchSampler
from methods.sd_objectives import ClassWiseSelfKD, LastBatchSelfKD, ProgressiveSelfKD

__all__ = ["ClassPairSampler", "EverySampleSampler", "LastBatchSampler", "ClassWiseSelfKD",
           "LastBatchSelfKD", "ProgressiveSelfKD", "CRITERIA", "FAMILIES", "Recipe",
           "pai_scores", "early_prune_then_distill"]

CRITERIA = ("simple", "epsd")
BATCH_COUNTS = ("new", "total")


# --- the three SD methods: how each trains, and its loss at initialisation ---------------------


@dataclass
class Recipe:
    """One SD method's training: its objective, its batching, and how many new samples a step
    takes."""

    objective: Objective
    sampler: IndexSampler
    new_samples_per_step: int
    at_init: Callable[[nn.Module, list[Batch]], None] | None = None  # set up history at θ0


def new_per_step(ctx) -> int:
    """The number of new samples a paired/repeated step takes (see `batch_counts`)."""
    b = ctx.config.batch_size
    if ctx.options["batch_counts"] == "new":
        return b
    if b < 2:
        raise UsageError(f"batch_size={b} is too small for batch_counts=total (half of each "
                         f"batch is paired or repeated); use batch_size >= 2")
    return b // 2


def cskd_recipe(ctx) -> Recipe:
    o, new = ctx.options, new_per_step(ctx)
    return Recipe(ClassWiseSelfKD(o["T"], o["lam"]), ClassPairSampler(ctx.data.train.labels, new),
                  new)


def pskd_recipe(ctx) -> Recipe:
    b = ctx.config.batch_size
    objective = ProgressiveSelfKD(ctx.trainer.data.train.labels, ctx.data.spec.num_classes,
                                  ctx.options["alpha_T"])
    return Recipe(objective, EverySampleSampler(len(ctx.data.train), b), b,
                  at_init=objective.set_previous)


def dlb_recipe(ctx) -> Recipe:
    o, new = ctx.options, new_per_step(ctx)
    return Recipe(LastBatchSelfKD(new, o["tau"], o["alpha"]),
                  LastBatchSampler(len(ctx.data.train), new), new)


# --- the criterion and the run ---------------------------------------------------------------


def scoring_batches(ctx, count: int, recipe: Recipe | None = None) -> list[Batch]:
    """`count` fresh training batches (augmented), the same for every method at a seed; with a
    recipe, batched as that SD method batches."""
    sampler = None if recipe is None else recipe.sampler
    loader = ctx.trainer.loader(ctx.data.train, ctx.config.batch_size, train=True,
                                salt="pai-score", sampler=sampler)
    epochs = (loader for _ in itertools.count())  # iterating the loader again starts a new epoch
    return list(itertools.islice(itertools.chain.from_iterable(epochs), count))


def pai_scores(ctx, model: nn.Module, criterion: str,
               make_recipe: Callable[[Any], Recipe]) -> dict[str, torch.Tensor]:
    """Step 2: meta-gradient saliency at θ0 with CE (`simple`) or the SD objective (`epsd`)."""
    o = ctx.options
    inner = dict(lr=o["inner_lr"], momentum=o["inner_momentum"], meta_grad=o["meta_grad"])
    if criterion == "simple":
        return meta_gradient_scores(model, ce_objective, scoring_batches(ctx, o["k"] + 1), **inner)
    recipe = make_recipe(ctx)  # a fresh objective: no state leaks into training
    batches = scoring_batches(ctx, o["k"] + 1, recipe)
    if recipe.at_init is not None:
        recipe.at_init(model, batches)
    return normalize_by_sum(meta_gradient_scores(model, recipe.objective, batches, **inner))


def early_prune_then_distill(ctx, criterion: str, sd_name: str,
                             make_recipe: Callable[[Any], Recipe]) -> nn.Module:
    """Steps 1–4 of the module docstring."""
    model = ctx.make_model()
    with ctx.clock("score"), ctx.trainer.autocast():  # scoring runs at the training precision
        scores = pai_scores(ctx, model, criterion, make_recipe)
    with ctx.clock("prune"):
        ctx.prune(model, scores)
    recipe = make_recipe(ctx)
    phase = ctx.phase("sparse", ctx.config.sparse_epochs)
    ctx.train(model, phase, recipe.objective, sampler=recipe.sampler)
    o = ctx.options
    ctx.extra["epsd"] = {
        "criterion": criterion, "self_distillation": sd_name, "inner_steps": o["k"],
        "inner_lr": o["inner_lr"], "inner_momentum": o["inner_momentum"],
        "meta_grad": o["meta_grad"], "score_batches": o["k"] + 1,
        "batch_size": ctx.config.batch_size, "new_samples_per_step": recipe.new_samples_per_step,
    }
    if isinstance(recipe.objective, ProgressiveSelfKD):
        ctx.extra["epsd"]["pskd_alpha_t"] = recipe.objective.alpha_history
    return model


# --- registration: the family × criterion table -----------------------------------------------


def _positive(x: float) -> bool:
    return x > 0


CRITERION_OPTIONS = {
    "k": Option(3, check=lambda v: v >= 0, valid="must be an integer >= 0",
                help="inner SGD steps before the meta-gradient (0: |θ ⊙ ∇L| at θ0)"),
    "inner_lr": Option(0.5, check=lambda v: v >= 0, valid="must be >= 0", help="inner SGD lr"),
    "inner_momentum": Option(0.9, check=lambda v: 0 <= v < 1, valid="must be in [0, 1)",
                             help="inner SGD momentum"),
    "meta_grad": Option("official", choices=META_GRADS,
                        help="official: ProsPr's code (first gradient constant); paper: its "
                             "equation, differentiated through every inner gradient"),
}
BATCH_OPTION = {
    "batch_counts": Option("new", choices=BATCH_COUNTS,
                           help="new: batch_size new samples per step, as the official code "
                                "(batches of 2 × batch_size); total: batch_size in all, half new"),
}


@dataclass(frozen=True)
class Family:
    title: str  # how descriptions name it
    recipe: Callable[[Any], Recipe]
    options: Mapping[str, Option]


FAMILIES = {
    "cskd": Family("CS-KD", cskd_recipe, {
        "T": Option(4.0, check=_positive, valid="must be > 0", help="CS-KD temperature"),
        "lam": Option(1.0, check=lambda v: v >= 0, valid="must be >= 0", help="CS-KD weight λ"),
        **BATCH_OPTION}),
    "pskd": Family("PS-KD", pskd_recipe, {
        "alpha_T": Option(0.8, check=lambda v: 0 <= v <= 1, valid="must be in [0, 1]",
                          help="PS-KD final weight of the last-epoch predictions")}),
    "dlb": Family("DLB", dlb_recipe, {
        "tau": Option(3.0, check=_positive, valid="must be > 0", help="DLB temperature τ"),
        "alpha": Option(1.0, check=lambda v: v >= 0, valid="must be >= 0", help="DLB weight α"),
        **BATCH_OPTION}),
}
CRITERION_TITLES = {"simple": "CE meta-gradient", "epsd": "{title}-loss meta-gradient (EPSD)"}


# samples forwarded per new training sample: CS-KD and DLB forward a second batch
SD_FORWARDS = {"cskd": 2.0, "dlb": 2.0, "pskd": 1.0}


def _cost(sd_name: str):
    def cost(cfg) -> list[PhaseCost]:
        work = train_images(cfg) * cfg.sparse_epochs * relative_cost(cfg.model, cfg.dataset)
        return [PhaseCost(None, "sparse", work * SD_FORWARDS[sd_name])]
    return cost


def _register(sd_name: str, family: Family, criterion: str) -> None:
    def run(ctx) -> nn.Module:
        return early_prune_then_distill(ctx, criterion, sd_name, family.recipe)

    what = CRITERION_TITLES[criterion].format(title=family.title)
    run.__name__ = run.__qualname__ = f"{sd_name}_{criterion}"
    register_method(f"{sd_name}-{criterion}", options={**family.options, **CRITERION_OPTIONS},
                    description=f"Prune at init by {what}, train the sparse net with "
                                f"{family.title}.", cost=_cost(sd_name))(run)


for _sd_name, _criterion in itertools.product(FAMILIES, CRITERIA):
    _register(_sd_name, FAMILIES[_sd_name], _criterion)
