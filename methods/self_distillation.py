"""The EPSD family (METHODS.md section 3): prune at initialisation, then train the sparse network
with self-distillation (SD). Chen et al., "Early Pruning with Self-Distillation", AAAI 2024.

    1. θ0 = the seeded initialisation (no dense phase).
    2. Score every prunable weight by a meta-gradient |∂L(θ_k)/∂m| through k = 3 SGD steps
       (lr 0.5, momentum 0.9, one fresh batch each; bench/saliency.py):
         simple: L = CE on plain batches;
         epsd:   L = the SD method's own training objective on its own batches, scores / their sum.
    3. Keep the global top (1 − s) of the scores, exactly keep_count weights (ctx.prune).
    4. Train the masked network for sparse_epochs with the SD objective through the one trainer.

The three SD methods, each an objective (and a hook where it keeps state) plus a batching:
    CS-KD  batch = B/2 anchors ; one other same-class sample per anchor (ClassPairSampler);
           L = CE(anchors) + λ T² KL(p_T(partner) ‖ p_T(anchor)), T = 4, λ = 1.
    PS-KD  plain batches; L = CE against (1 − α_t) onehot + α_t p_{e−1}(x), where p_{e−1} is a
           per-sample table of last-epoch softmax predictions (filled during epoch e, read in e+1;
           one-hot before the first epoch, as in the official code), α_t = α_T (e+1)/E, α_T = 0.8.
    DLB    batch t = [fresh half_t ; fresh half_{t−1}] (LastBatchSampler); the logits of half_{t−1}
           at step t−1 (detached) are soft targets for its repeat at step t:
           L = CE(batch) + α τ² KL(p_τ(prev) ‖ p_τ(repeat)), τ = 3, α = 1.

Choices where the papers leave room (each is tested in tests/test_self_distillation.py):
- Steps per epoch. CS-KD and DLB take B/2 new samples per step (anchors, fresh half), so an epoch
  is ⌈N / (B/2)⌉ steps of B samples: every sample is an anchor (CS-KD) or fresh (DLB) once per
  epoch, as in the official code, at twice the forward passes of a CE epoch (the loader asks the
  sampler how many steps an epoch has); the samplers fill the last step up from the epoch's
  first samples so every step has B samples.
- CS-KD: one forward over anchors and partners together (the official code runs the partners
  separately under no_grad); the partner is another sample of the class (the official sampler may
  draw the anchor itself), and the anchor itself only for a class of one.
- DLB: the chain restarts each epoch (the first step of an epoch is plain CE; the official code
  carries the last batch across epochs). A repeat gets a new crop/flip, like the official
  second view.
- `epsd` at initialisation, where an SD method has no history yet:
    CS-KD: its objective on pair batches (partners are the teacher, detached).
    DLB:   its objective along the k + 1 scoring batches chained as in training (the first inner
           step is plain CE, later ones distil from the previous inner step's logits).
    PS-KD: the "previous epoch" is the network at θ0: soft targets (1 − α_T) onehot + α_T p_θ0(x),
           p_θ0 from a no-grad train-mode forward of a copy of the initial network on the same
           batch, with the full α_T. (Using the current network's own detached predictions instead
           makes the PS-KD gradient exactly (1 − α)× the CE gradient: `simple` with a smaller lr.)
  `simple` scores are the same for all three families at a given seed (same batches, CE).
"""
from __future__ import annotations

import copy
import itertools
import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from bench.data import Batch, IndexSampler
from bench.losses import cross_entropy, cskd_loss, dlb_loss, pskd_alpha, pskd_loss
from bench.method import Option, register_method
from bench.saliency import meta_gradient_scores, normalize_by_sum
from bench.trainer import Hook, Objective, TrainState, ce_objective

CRITERIA = ("simple", "epsd")


# --- batching -----------------------------------------------------------------------------------


def _halves(n: int, half: int, generator: torch.Generator) -> list[torch.Tensor]:
    """A random permutation of range(n) in ⌈n / half⌉ chunks of `half`, the last filled up from
    the permutation's start."""
    steps = max(1, math.ceil(n / half))
    perm = torch.randperm(n, generator=generator)
    perm = perm.repeat(math.ceil(steps * half / n))[:steps * half]
    return list(perm.split(half))


class ClassPairSampler:
    """CS-KD batching: `half` anchors (each sample once per epoch), then for each anchor a random
    other sample of the same class, in the same order: batch = [anchors ; partners]."""

    def __init__(self, labels: torch.Tensor, batch_size: int):
        if batch_size < 2:
            raise ValueError("CS-KD needs a batch size of at least 2 (anchor + partner)")
        labels = labels.detach().cpu().long()
        self.half = batch_size // 2
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
        anchors = _halves(self.n, self.half, generator)
        partners = self.partners(torch.cat(anchors), generator).split(self.half)
        return [torch.cat([a, p]) for a, p in zip(anchors, partners)]


class LastBatchSampler:
    """DLB batching: batch t = [fresh half_t ; fresh half_{t−1}]; the epoch's first batch is
    half_0 alone."""

    def __init__(self, n: int, batch_size: int):
        if batch_size < 2:
            raise ValueError("DLB needs a batch size of at least 2 (fresh + repeated half)")
        self.n = n
        self.half = batch_size // 2

    def __call__(self, epoch: int, generator: torch.Generator) -> list[torch.Tensor]:
        halves = _halves(self.n, self.half, generator)
        return [halves[0]] + [torch.cat([h, prev]) for prev, h in zip(halves, halves[1:])]


# --- objectives (the trainer calls them as objective(model, batch) -> (loss, logits)) -----------


@dataclass
class ClassWiseSelfKD:
    """CS-KD: the first half of the batch are anchors, the second their same-class partners."""

    temperature: float = 4.0
    lam: float = 1.0

    def __call__(self, model: Callable, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        logits = model(batch.x)
        h = len(batch.y) // 2
        return cskd_loss(logits[:h], logits[h:].detach(), batch.y[:h],
                         temperature=self.temperature, lam=self.lam), logits


class ProgressiveSelfKD(Hook):
    """PS-KD: a per-sample table of last-epoch predictions on the device. Reads come from `table`
    (the previous epoch); this epoch's predictions go to `pending`, which becomes the table when
    the epoch ends, so the table changes exactly once per epoch. Resumable via state_dict."""

    def __init__(self, labels: torch.Tensor, num_classes: int, alpha_T: float = 0.8):
        self.alpha_T = alpha_T
        self.alpha = alpha_T
        self.table = F.one_hot(labels.long(), num_classes).float()  # epoch 0 targets are one-hot
        self.pending: torch.Tensor | None = None
        self.alpha_history: list[float] = []  # the α_t of each epoch run (for records and tests)

    def on_epoch_start(self, state: TrainState) -> None:
        self.alpha = pskd_alpha(self.alpha_T, state.epoch, state.phase.epochs)
        self.alpha_history.append(self.alpha)
        self.pending = self.table.clone()  # a sample not seen this epoch keeps its old entry

    def __call__(self, model: Callable, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        logits = model(batch.x)
        loss = pskd_loss(logits, batch.y, self.table[batch.idx], self.alpha)
        if self.pending is not None:
            self.pending[batch.idx] = F.softmax(logits.detach().float(), dim=1)
        return loss, logits

    def on_epoch_end(self, state: TrainState) -> None:
        if self.pending is not None:
            self.table, self.pending = self.pending, None

    @torch.no_grad()
    def set_previous(self, model: nn.Module, batches: list[Batch]) -> None:
        """Initialisation stand-in for the previous epoch: the predictions of `model` (a copy is
        run in train mode, so the real model's BatchNorm statistics do not move)."""
        snapshot = copy.deepcopy(model).train()
        for batch in batches:
            self.table[batch.idx] = F.softmax(snapshot(batch.x).float(), dim=1)

    def state_dict(self) -> dict[str, Any]:
        return {"table": self.table}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.table = state["table"].to(self.table.device)


class LastBatchSelfKD(Hook):
    """DLB: remembers the logits of the fresh half (detached) for the next step, where the same
    samples come back as the batch's second half. The chain restarts at every epoch."""

    def __init__(self, half: int, tau: float = 3.0, alpha: float = 1.0):
        self.half, self.tau, self.alpha = half, tau, alpha
        self.previous: torch.Tensor | None = None
        self.previous_idx: torch.Tensor | None = None

    def on_epoch_start(self, state: TrainState) -> None:
        self.previous = self.previous_idx = None

    def __call__(self, model: Callable, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        logits = model(batch.x)
        repeated = len(batch.y) - self.half
        if repeated <= 0:
            loss = cross_entropy(logits, batch.y)
        else:
            if self.previous is None or len(self.previous) != repeated:
                raise RuntimeError(f"DLB batch repeats {repeated} samples but the previous step "
                                   f"left {0 if self.previous is None else len(self.previous)}")
            loss = dlb_loss(logits, batch.y, self.previous, tau=self.tau, alpha=self.alpha)
        self.previous = logits[:self.half].detach()
        self.previous_idx = batch.idx[:self.half]
        return loss, logits


# --- the three SD methods: how each trains, and its loss at initialisation ---------------------


@dataclass
class Recipe:
    """One SD method's training: its objective, its batching, and how many new samples a step
    takes (B/2 where half of each batch is paired or repeated)."""

    objective: Objective
    sampler: IndexSampler | None
    new_samples_per_step: int
    at_init: Callable[[nn.Module, list[Batch]], None] | None = None  # set up history at θ0


def cskd_recipe(ctx) -> Recipe:
    o, b = ctx.options, ctx.config.batch_size
    sampler = ClassPairSampler(ctx.data.train.labels, b)
    return Recipe(ClassWiseSelfKD(o["T"], o["lam"]), sampler, sampler.half)


def pskd_recipe(ctx) -> Recipe:
    o = ctx.options
    objective = ProgressiveSelfKD(ctx.trainer.data.train.labels, ctx.data.spec.num_classes,
                                  o["alpha_T"])
    return Recipe(objective, None, ctx.config.batch_size, at_init=objective.set_previous)


def dlb_recipe(ctx) -> Recipe:
    o, b = ctx.options, ctx.config.batch_size
    sampler = LastBatchSampler(len(ctx.data.train), b)
    return Recipe(LastBatchSelfKD(sampler.half, o["tau"], o["alpha"]), sampler, sampler.half)


# --- the criterion and the run ---------------------------------------------------------------


def scoring_batches(ctx, count: int, recipe: Recipe | None = None) -> list[Batch]:
    """`count` fresh training batches (augmented), the same for every method at a seed; with a
    recipe, batched as that SD method batches."""
    if recipe is None:
        loader = ctx.trainer.loader(ctx.data.train, ctx.config.batch_size, train=True,
                                    salt="pai-score")
    else:
        loader = ctx.trainer.loader(ctx.data.train, ctx.config.batch_size, train=True,
                                    salt="pai-score", sampler=recipe.sampler)
    epochs = (loader for _ in itertools.count())  # iterating the loader again starts a new epoch
    return list(itertools.islice(itertools.chain.from_iterable(epochs), count))


def pai_scores(ctx, model: nn.Module, criterion: str,
               make_recipe: Callable[[Any], Recipe]) -> dict[str, torch.Tensor]:
    """Step 2: meta-gradient saliency at θ0 with CE (`simple`) or the SD objective (`epsd`)."""
    o = ctx.options
    k = o["k"]
    if criterion == "simple":
        batches = scoring_batches(ctx, k + 1)
        return meta_gradient_scores(model, ce_objective, batches, lr=o["inner_lr"],
                                    momentum=o["inner_momentum"])
    recipe = make_recipe(ctx)  # a fresh objective: no state leaks into training
    batches = scoring_batches(ctx, k + 1, recipe)
    if recipe.at_init is not None:
        recipe.at_init(model, batches)
    scores = meta_gradient_scores(model, recipe.objective, batches, lr=o["inner_lr"],
                                  momentum=o["inner_momentum"])
    return normalize_by_sum(scores)


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
        "score_batches": o["k"] + 1, "batch_size": ctx.config.batch_size,
        "new_samples_per_step": recipe.new_samples_per_step,
    }
    if isinstance(recipe.objective, ProgressiveSelfKD):
        ctx.extra["epsd"]["pskd_alpha_t"] = recipe.objective.alpha_history
    return model


# --- registration: three SD methods x two criteria --------------------------------------------


def _positive(x: float) -> bool:
    return x > 0


CRITERION_OPTIONS = {
    "k": Option(3, check=lambda v: v >= 0, valid="must be an integer >= 0",
                help="inner SGD steps before the meta-gradient (0: |θ ⊙ ∇L| at θ0)"),
    "inner_lr": Option(0.5, check=lambda v: v >= 0, valid="must be >= 0", help="inner SGD lr"),
    "inner_momentum": Option(0.9, check=lambda v: 0 <= v < 1, valid="must be in [0, 1)",
                             help="inner SGD momentum"),
}
CSKD_OPTIONS = {
    "T": Option(4.0, check=_positive, valid="must be > 0", help="CS-KD temperature"),
    "lam": Option(1.0, check=lambda v: v >= 0, valid="must be >= 0", help="CS-KD weight λ"),
}
PSKD_OPTIONS = {
    "alpha_T": Option(0.8, check=lambda v: 0 <= v <= 1, valid="must be in [0, 1]",
                      help="PS-KD final weight of the last-epoch predictions"),
}
DLB_OPTIONS = {
    "tau": Option(3.0, check=_positive, valid="must be > 0", help="DLB temperature τ"),
    "alpha": Option(1.0, check=lambda v: v >= 0, valid="must be >= 0", help="DLB weight α"),
}


@register_method("cskd-simple", options={**CSKD_OPTIONS, **CRITERION_OPTIONS})
def cskd_simple(ctx):
    """Prune at init by CE meta-gradient, train the sparse net with CS-KD."""
    return early_prune_then_distill(ctx, "simple", "cskd", cskd_recipe)


@register_method("cskd-epsd", options={**CSKD_OPTIONS, **CRITERION_OPTIONS})
def cskd_epsd(ctx):
    """Prune at init by CS-KD-loss meta-gradient (EPSD), train the sparse net with CS-KD."""
    return early_prune_then_distill(ctx, "epsd", "cskd", cskd_recipe)


@register_method("pskd-simple", options={**PSKD_OPTIONS, **CRITERION_OPTIONS})
def pskd_simple(ctx):
    """Prune at init by CE meta-gradient, train the sparse net with PS-KD."""
    return early_prune_then_distill(ctx, "simple", "pskd", pskd_recipe)


@register_method("pskd-epsd", options={**PSKD_OPTIONS, **CRITERION_OPTIONS})
def pskd_epsd(ctx):
    """Prune at init by PS-KD-loss meta-gradient (EPSD), train the sparse net with PS-KD."""
    return early_prune_then_distill(ctx, "epsd", "pskd", pskd_recipe)


@register_method("dlb-simple", options={**DLB_OPTIONS, **CRITERION_OPTIONS})
def dlb_simple(ctx):
    """Prune at init by CE meta-gradient, train the sparse net with DLB."""
    return early_prune_then_distill(ctx, "simple", "dlb", dlb_recipe)


@register_method("dlb-epsd", options={**DLB_OPTIONS, **CRITERION_OPTIONS})
def dlb_epsd(ctx):
    """Prune at init by DLB-loss meta-gradient (EPSD), train the sparse net with DLB."""
    return early_prune_then_distill(ctx, "epsd", "dlb", dlb_recipe)
