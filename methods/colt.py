"""COLT: Cyclic Overlapping Lottery Tickets (docs/methods.md; Hossain et al., IEEE TAI,
arXiv 2212.12770; official code github.com/ismail31416/COLT).

    θ₀ ← one random initialisation (all classes);  m ← 1 on every Conv2d weight
    A, B ← the first and the second half of the classes;  f_A, f_B ← θ₀ with heads for A and B
    round r = 1, 2, ... while the ticket keeps more weights than the target allows:
        rewind f_A and f_B to θ₀ ⊙ m;  train f_A on the samples of A, f_B on those of B
        m_A ← m without the p smallest |w| of f_A's remaining conv weights (one global threshold)
        m_B ← the same for f_B                                      (p = prune_fraction = 15 %)
        m   ← m_A ∧ m_B          (a weight survives only if both halves keep it)
        the last round removes only what the target still needs (see `colt_round_mask`)
    ticket ← θ₀ ⊙ m with the full head, trained on the full training set (sparse_epochs)

Budgets: each half trains config.round_epochs per round, the ticket config.sparse_epochs. The
record's cost is the sum of all rounds (both halves, evaluation, pruning) plus the ticket training;
the rounds are resumable one by one (bench/method/rounds.py), and each round's training is shared by
every cell of the same trajectory whatever its target (docs/methods.md; --no-share turns it off).

Interpretation choices (docs/methods.md gives each one its reason):
- Only Conv2d weights are pruned (the original's default conv ratio 0.15, linear/output 0); Linear
  layers, the head included, stay dense. Option `sparsity_over`:
  `prunable` (default) counts the target over all prunable weights (Conv2d + Linear), the figure
  every other method is asked for, so the convs are pruned a little further to make up for the
  dense head and the count is exact (ctx.expected_sparsity = the target). This is closest to the
  original, whose stopping rule counts Conv2d, Linear and BatchNorm weights together. `conv` counts
  it over conv weights only (ctx.accounting: the exact count is checked over the convs); the
  sparsity reached over prunable weights is then slightly lower and is reported next to it.
- θ₀ is a full-class model; each half's head is the rows of θ₀'s head for its classes, so that the
  two copies share θ₀ everywhere else and the ticket's head at rewind is θ₀'s own. (The original
  gives both halves the very same head initialisation, as both have the same shape.)
- Rewinding restores all of θ₀, BatchNorm running statistics included (the original rewinds
  weights and biases and keeps the running statistics).
- The original also retrains both halves after the final prune; nothing uses those weights (the
  ticket is rewound to θ₀), so that training is not done here. This makes COLT's cost one round of
  half-training cheaper than the original's, i.e. it favours COLT slightly.
- Classes are split at num_classes // 2: 0-4 / 5-9 on CIFAR-10, 0-49 / 50-99 on CIFAR-100,
  0-99 / 100-199 on TinyImageNet, as in the original.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, NamedTuple, Sequence

import torch
from torch import nn

from bench.data import DataBundle, Split
from bench.masks import (MASK_BUFFER, Accounting, Mask, attach_mask, flatten, intersect, keep_best,
                         keep_count, prunable_modules, prune_global, removal_rank, unflatten)
from bench.plan.estimate import PhaseCost, relative_cost, rounds_to, shared, train_images
from bench.method import Option, register_method
from bench.method.rounds import (check_start, resume, round_checkpoint, shared_round,
                                 state_digest, timed)


# --- pure pieces -------------------------------------------------------------------------------


def class_halves(num_classes: int) -> tuple[list[int], list[int]]:
    """Two disjoint halves that cover all classes: [0, C//2) and [C//2, C)."""
    if num_classes < 2:
        raise ValueError(f"COLT needs at least 2 classes, got {num_classes}")
    cut = num_classes // 2
    return list(range(cut)), list(range(cut, num_classes))


def class_subset(split: Split, classes: Sequence[int]) -> Split:
    """The samples of `classes`, labels remapped to 0..len(classes)-1 in the given order."""
    labels = split.labels
    size = max([int(labels.max()) + 1 if len(labels) else 0] + [c + 1 for c in classes])
    lookup = torch.full((size,), -1, dtype=torch.int64, device=labels.device)
    lookup[torch.tensor(list(classes), dtype=torch.int64, device=labels.device)] = \
        torch.arange(len(classes), device=labels.device)
    new = lookup[labels]
    keep = torch.nonzero(new >= 0).flatten()
    return Split(split.images[keep], new[keep])


def class_bundle(data: DataBundle, classes: Sequence[int]) -> DataBundle:
    """The dataset restricted to `classes` (train, val and test), with the full data's
    normalisation and augmentation."""
    spec = dataclasses.replace(data.spec, num_classes=len(classes))
    return DataBundle(spec, class_subset(data.train, classes), class_subset(data.val, classes),
                      class_subset(data.test, classes), data.mean, data.std)


def half_state(theta0: Mapping[str, torch.Tensor], half: nn.Module,
               classes: Sequence[int]) -> dict[str, torch.Tensor]:
    """θ₀ for a half model: identical tensors, except the head's rows (any tensor whose shape
    differs from the half model's) restricted to `classes`."""
    own = {k: v for k, v in half.state_dict().items() if not k.endswith("." + MASK_BUFFER)}
    out = {}
    index = torch.tensor(list(classes), dtype=torch.int64)
    for key, value in theta0.items():
        if key not in own:
            raise KeyError(f"θ₀ holds {key!r}, which the half model lacks")
        if own[key].shape != value.shape:
            value = value.index_select(0, index.to(value.device))
            if value.shape != own[key].shape:
                raise ValueError(f"{key}: cannot fit θ₀'s {tuple(theta0[key].shape)} to the "
                                 f"half model's {tuple(own[key].shape)}")
        out[key] = value.clone()
    return out


@torch.no_grad()
def rewind(model: nn.Module, theta0: Mapping[str, torch.Tensor], mask: Mask) -> None:
    """Every parameter and buffer back to θ₀, then the mask attached (pruned weights zero)."""
    missing, unexpected = model.load_state_dict(dict(theta0), strict=False)
    missing = [k for k in missing if not k.endswith("." + MASK_BUFFER)]
    if missing or unexpected:
        raise KeyError(f"rewind: θ₀ does not fit the model (missing {missing[:3]}, "
                       f"unexpected {unexpected[:3]})")
    attach_mask(model, mask)


def conv_names(model: nn.Module) -> list[str]:
    return [n for n, m in prunable_modules(model).items() if isinstance(m, nn.Conv2d)]


def prune_smallest(scores: Mapping[str, torch.Tensor], alive: Mapping[str, torch.Tensor],
                   count: int) -> Mask:
    """Global L1 pruning: `alive` without the `count` alive weights of smallest |score|."""
    return prune_global({n: scores[n].abs() for n in alive}, alive, count)


def colt_round_mask(scores_a: Mapping[str, torch.Tensor], scores_b: Mapping[str, torch.Tensor],
                    alive: Mapping[str, torch.Tensor], fraction: float, keep_at_least: int = 0,
                    ) -> tuple[Mask, Mask, Mask]:
    """One COLT round: (ticket, mask_a, mask_b).

    Each half removes round(fraction · R) of the R alive weights by global |w| (at least one);
    the ticket is the intersection mask_a ∧ mask_b. If that would keep fewer than `keep_at_least`
    weights (the last round), the ticket instead removes exactly R − keep_at_least weights in the
    order in which the intersection removes them as both halves prune deeper: by the earlier of
    the two halves' removal ranks, then the later (`bench.masks.removal_rank`; ties between
    weights by the harness's position rule). That order removes the intersection's weights
    first, so a ticket that needs no trimming is unchanged.
    """
    names = list(alive)
    total_alive = int(sum(int(alive[n].sum()) for n in names))
    count = min(total_alive, max(1, int(round(fraction * total_alive))))
    mask_a = prune_smallest(scores_a, alive, count)
    mask_b = prune_smallest(scores_b, alive, count)
    ticket = intersect([mask_a, mask_b])
    if ticket.kept >= keep_at_least:
        return ticket, mask_a, mask_b
    alive_flat = flatten(alive, names).bool()
    rank_a = removal_rank(flatten({n: scores_a[n].abs() for n in names}, names).float(),
                          alive_flat)
    rank_b = removal_rank(flatten({n: scores_b[n].abs() for n in names}, names).float(),
                          alive_flat)
    low, high = torch.minimum(rank_a, rank_b), torch.maximum(rank_a, rank_b)
    # removed later = better: the key as a score, so keep_best's one tie rule applies
    score = torch.zeros(alive_flat.numel(), dtype=torch.int64, device=low.device)
    score[torch.nonzero(alive_flat.to(low.device)).flatten()] = low * max(1, total_alive) + high
    keep = keep_best(score, keep_at_least, alive_flat)
    return Mask(unflatten(keep, alive, names)), mask_a, mask_b


def count_kept(mask: Mapping[str, torch.Tensor]) -> int:
    return Mask(mask).kept


# --- the method --------------------------------------------------------------------------------


class Half(NamedTuple):
    """One of the two copies: its classes' context (trainer and data), model and θ₀."""

    tag: str
    ctx: Any
    model: nn.Module
    theta0: dict[str, torch.Tensor]


def _make_half(ctx, tag: str, classes: Sequence[int], theta0: Mapping[str, torch.Tensor]) -> Half:
    """A copy of θ₀ for `classes`, with a trainer that sees only them. Its context shares the
    cell's phases and extra, so its training is recorded (and timed) like any other phase."""
    bundle = class_bundle(ctx.data, classes)
    trainer = ctx.trainer.with_data(bundle)  # same device, seed, precision, memory format
    model = ctx.make_model(num_classes=len(classes))
    return Half(tag, dataclasses.replace(ctx, data=bundle, trainer=trainer), model,
                half_state(theta0, model, classes))


def _conv_target(ctx, model: nn.Module, names: list[str]) -> tuple[int, int, int]:
    """(conv weights to keep, conv total, other prunable total) for the cell's target."""
    modules = prunable_modules(model)
    conv_total = sum(modules[n].weight.numel() for n in names)
    other_total = sum(m.weight.numel() for n, m in modules.items() if n not in names)
    s = ctx.config.sparsity
    if ctx.options["sparsity_over"] == "conv":
        # the count is checked over the convs; over prunable weights it is reported, not asked
        ctx.accounting = Accounting("conv", tuple(names))
        return keep_count(conv_total, s), conv_total, other_total
    keep = keep_count(conv_total + other_total, s) - other_total
    if keep < 0:
        raise ValueError(f"COLT prunes only Conv2d weights: sparsity {s} over all prunable weights "
                         f"needs more than the {conv_total} conv weights; use sparsity_over=conv")
    return keep, conv_total, other_total


ROUND_KIND = "colt-round"  # the cache kind of a shared round (its cost and its run)


def trajectory_key(cfg) -> dict:
    """What determines COLT's rounds, whatever the target: the cache key of each round."""
    return {"model": cfg.model, "round_epochs": cfg.round_epochs,
            "prune_fraction": cfg.option_dict["prune_fraction"]}


def colt_cost(cfg) -> list[PhaseCost]:
    """Each round trains two halves on half of the data each: one full epoch's images per
    round-epoch, shared by every cell that reaches the round; the ticket is the cell's own."""
    n, m = train_images(cfg), relative_cost(cfg.model, cfg.dataset)
    rounds = rounds_to(cfg.sparsity, cfg.option_dict["prune_fraction"])
    key = trajectory_key(cfg)
    return [PhaseCost(shared(cfg, ROUND_KIND, {**key, "round": r}), f"round{r}",
                      n * cfg.round_epochs * m, prefix=shared(cfg, ROUND_KIND, key))
            for r in range(1, rounds + 1)] + \
        [PhaseCost(None, "ticket", n * cfg.sparse_epochs * m)]


@register_method("colt", requires_epochs=("round_epochs", "sparse_epochs"), cost=colt_cost, options={
    "prune_fraction": Option(0.15, check=lambda v: 0.0 < v < 1.0, valid="must be in (0, 1)",
                             help="fraction of the remaining conv weights each half prunes per "
                                  "round"),
    "sparsity_over": Option("prunable", choices=("prunable", "conv"),
                            help="count the target over all prunable weights or conv weights only"),
})
def colt(ctx):
    """COLT: two class halves from one init, their L1 masks intersected each round; the ticket."""
    cfg, opts = ctx.config, ctx.options
    ticket = ctx.make_model()  # θ₀
    names = conv_names(ticket)
    keep_target, conv_total, other_total = _conv_target(ctx, ticket, names)
    all_total = conv_total + other_total
    classes_a, classes_b = class_halves(ctx.data.spec.num_classes)
    ctx.extra["colt"] = {"classes_a": classes_a, "classes_b": classes_b,
                         "sparsity_over": opts["sparsity_over"], "conv_total": conv_total,
                         "dense_total": other_total, "conv_keep_target": keep_target,
                         "prune_fraction": opts["prune_fraction"]}

    rounds = resume(ctx)
    theta0 = rounds.payload.get("theta0") or {k: v.detach().clone()
                                              for k, v in ticket.state_dict().items()}
    mask = Mask(rounds.payload.get("mask") or
                Mask.ones({n: ticket.get_submodule(n).weight for n in names}))
    a = _make_half(ctx, "a", classes_a, theta0)
    b = _make_half(ctx, "b", classes_b, theta0)

    # Round r trains both halves on the mask of round r - 1; only its prune depends on the
    # target. So the training of every round is shared by all cells that reach it (the cache,
    # keyed without the sparsity), and each cell prunes for itself (bench/method/rounds.py).
    trajectory = trajectory_key(cfg)
    device = next(ticket.parameters()).device
    for rnd in rounds:
        alive = count_kept(mask)
        if alive <= keep_target:
            break
        start = state_digest(mask)

        def compute(folder, rnd=rnd, mask=mask, start=start):
            phases, val = {}, {}
            for half in (a, b):
                rewind(half.model, half.theta0, mask)
                name = rnd.phase(half.tag)
                result = half.ctx.trainer.fit(half.model, ctx.phase(name, cfg.round_epochs),
                                              checkpoint=round_checkpoint(folder, name, start))
                phases[name] = result.as_record()
                val[half.tag] = result.val_acc[-1] if result.val_acc else None
            with timed(phases, rnd.phase("eval"), ctx.trainer.sync):
                test = {h.tag: h.ctx.trainer.accuracy(h.model, h.ctx.data.test) for h in (a, b)}
            weights = {f"{h.tag}/{n}": h.model.get_submodule(n).weight.detach().clone()
                       for h in (a, b) for n in names}
            return {"weights": weights}, {"phases": phases, "val": val, "test": test,
                                          "start": start}

        payload, meta = shared_round(ctx, ROUND_KIND, trajectory, rnd.index, compute)
        check_start(meta, start, f"colt {rnd.name}")
        weights = {k: v.to(device) for k, v in payload["weights"].items()}
        test, val = meta["test"], meta["val"]
        with ctx.clock(rnd.phase("prune")):
            new_mask, mask_a, mask_b = colt_round_mask(
                {n: weights[f"a/{n}"] for n in names}, {n: weights[f"b/{n}"] for n in names},
                mask, opts["prune_fraction"], keep_target)
        kept = count_kept(new_mask)
        rnd.save({"theta0": theta0, "mask": new_mask.to_dict()},
                 sparsity=1.0 - (kept + other_total) / all_total,
                 conv_sparsity=1.0 - kept / conv_total,
                 sparsity_trained=1.0 - (alive + other_total) / all_total,
                 accuracy=(test["a"] + test["b"]) / 2, accuracy_halves=[test["a"], test["b"]],
                 val_halves=[val["a"], val["b"]], removed=alive - kept,
                 removed_per_half=[alive - count_kept(mask_a), alive - count_kept(mask_b)])
        mask = new_mask

    rewind(ticket, theta0, mask)
    ctx.train(ticket, ctx.phase("ticket", cfg.sparse_epochs))
    return ticket
