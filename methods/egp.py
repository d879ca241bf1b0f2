"""EGP: entropy-guided pruning (docs/methods.md; Liao, Quétu, Nguyen, Tartaglione, "Can
Unstructured Pruning Reduce the Depth in Deep Neural Networks?", ICCVW 2023, arXiv 2308.06619;
official code github.com/ZhuLIAO001/Unstructured_Relu_Pruning_Reduce_Depth).

    θ ← the dense network trained with CE (shared with magnitude/random through the cache)
    round i = 1, 2, ... while the pruned layers keep more weights than the target allows:
        H_l ← entropy of the on/off state of the ReLU fed by conv l, over a few training batches
        L   ← the convs that feed a ReLU, with H_l > 0 and weights left     (H_l = 0: left alone)
        n   ← round(p · remaining weights of L)  (p = prune_fraction = 50 %),
              but in the last round only what the target still needs, so the count is exact
        a_l ← H_l · mean |w| over the remaining weights of l
        n_l ← n · softmax_l(Σ_k a_k / a_l), capped at what l has left, the excess redistributed
              over the others (`egp_budgets`)
        remove the n_l smallest |w| of each l (bench.masks.prune_per_layer);  retrain θ for
        round_epochs (masked)
    the network after the last round's retraining is the result

Target (`sparsity_over`): `prunable` (default) counts it over all prunable weights, the harness's
uniform accounting, so the ReLU-feeding convs go further to make up for the shortcut convs and the
head that EGP never prunes; `pruned` counts it over the layers EGP prunes, the EGP paper's
accounting (1 − 0.5^k after k rounds). A target the pruned layers cannot reach (they would have to
keep fewer than one weight) is found before training by `check_target`, the method's precheck.

Budgets: the dense network is the harness's cached CE model (config.dense_epochs, shared with
magnitude/random and reported as shared cost); each round retrains config.round_epochs with a fresh
optimizer (the original: 160 epochs, then 160 per round). The rounds are resumable one by one
(bench/method/rounds.py); every round's pruning, training and test evaluation are timed phases. A round
that removes its full share is shared by every cell of the same trajectory whatever its target
(docs/methods.md; --no-share turns it off).

Entropy (methods/egp_entropy.py: `relu_entropy`, `ReluEntropy`): for one batch and one ReLU, p_c is the fraction of positive
inputs of channel c (over batch and space); channels with p_c ∈ {0, 1} are left out and the batch's
value is the mean binary entropy (bits) of the others, 0 if none is left. H_l is the mean of the
batch values over the batches seen (`entropy_batches`; 0 = one full pass as in the original), with
the model in eval mode and the training augmentation, as in the original.

Which conv feeds which ReLU: every call of an nn.ReLU is attributed to the Conv2d that ran last
among the ReLU's siblings (modules with the same parent). In our ResNets that is the original's
name rule (`relu` → `conv1` in the stem, `blockX.reluK` → `blockX.convK`): `relu2` after the
residual sum goes to `conv2`, not to the projection shortcut, which lives one level down. Shortcut
convs and Linear layers are never pruned, as in the original. ReLU inputs are read by forward
*pre*-hooks, before our in-place ReLUs overwrite them (the sign test would give the same answer
on the output, relu(x) > 0 ⇔ x > 0, but nothing else would).

Deviations from the original: budgets are whole numbers that add up to exactly n (largest remainder;
the original truncates each layer's share, removing up to one weight per layer fewer), and the last
round removes only what the target needs, so that EGP hits the exact count like every other method
(its sparsities are 1 − 0.5^i over the pruned layers otherwise). If the target cannot be reached at
run time (every eligible layer empty or at zero entropy) the loop stops and the reached sparsity is
reported.
As in the original, a layer's budget may be all it has left: the softmax is sharp, so whole convs
inside residual blocks are emptied (the paper's "reduced depth"); records list them as empty layers.
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Mapping

import torch
from torch import nn

from bench.catalog import DATASETS
from bench.masks import Accounting, attach_mask, get_mask, keep_count, prepare_for_state_dict, \
    prunable_modules, prune_per_layer, restrict_prunable, sparsity_report
from bench.plan.estimate import (PhaseCost, dense_phase, relative_cost, rounds_to, shared,
                                 train_images)
from bench.method import Option, UnreachableTarget, register_method
from bench.method.rounds import (check_start, resume, round_checkpoint, shared_round,
                                 state_digest, timed)
from bench.train.models import build_model
from methods.egp_entropy import layer_entropies, relu_fed_convs


# --- budgets -------------------------------------------------------------------------------------


def egp_budgets(entropy: Mapping[str, float], mean_abs: Mapping[str, float],
                remaining: Mapping[str, int], n_remove: int) -> dict[str, int]:
    """Removals per layer for one round; they add up to min(n_remove, Σ remaining of the layers
    with H > 0). Layers with zero entropy (or nothing left) get 0.

    a_l = H_l · mean|w_l|; shares = softmax over layers of (Σa / a_l); a share above what the layer
    has left is capped there and the rest of the round is shared again over the other layers (with
    Σa taken over those), until nothing is capped. Whole numbers by largest remainder.
    """
    budgets = {name: 0 for name in remaining}
    waiting = [n for n in remaining if entropy.get(n, 0.0) > 0 and remaining[n] > 0
               and mean_abs.get(n, 0.0) > 0]
    a = {n: entropy[n] * mean_abs[n] for n in waiting}
    left = min(n_remove, sum(remaining[n] for n in waiting))
    amounts: dict[str, float] = {}
    while waiting:
        total = sum(a[n] for n in waiting)
        logits = torch.tensor([total / a[n] for n in waiting], dtype=torch.float64)
        shares = torch.softmax(logits, dim=0).tolist()
        amounts = {n: left * s for n, s in zip(waiting, shares)}
        capped = [n for n in waiting if amounts[n] > remaining[n]]
        if not capped:
            break
        for n in capped:
            budgets[n] = remaining[n]
            left -= remaining[n]
        waiting = [n for n in waiting if n not in capped]
        amounts = {}
    floors = {n: min(remaining[n], math.floor(v)) for n, v in amounts.items()}
    short = left - sum(floors.values())
    by_remainder = sorted(amounts, key=lambda n: -(amounts[n] - floors[n]))  # stable: layer order
    for n in by_remainder:
        if short <= 0:
            break
        if floors[n] < remaining[n]:
            floors[n] += 1
            short -= 1
    budgets.update(floors)
    return budgets


# --- the target: which weights it is counted over, and whether EGP can reach it ------------------

SPARSITY_OVER = ("prunable", "pruned")


def pruned_keep_target(total: int, pruned_total: int, sparsity: float, over: str) -> int:
    """Weights the pruned layers (the ReLU-feeding convs) keep at the target. `prunable`: the
    harness's uniform accounting, round((1 − s)·N) survivors over all N prunable weights, of which
    the N − P that EGP never prunes are all survivors; `pruned`: the EGP paper's, round((1 − s)·P)
    over the P weights of the layers it prunes. Below 1 the target is unreachable: EGP's halving
    rounds stop at one weight (round(0.5 · 1) = 0) and never touch the other layers."""
    if over == "pruned":
        return keep_count(pruned_total, sparsity)
    return keep_count(total, sparsity) - (total - pruned_total)


def unreachable_reason(total: int, pruned_total: int, sparsity: float, over: str,
                       where: str = "") -> str | None:
    """One line saying why EGP cannot reach the target, or None if it can."""
    keep = pruned_keep_target(total, pruned_total, sparsity, over)
    if keep >= 1:
        return None
    if over == "pruned":
        return (f"egp cannot reach sparsity {sparsity:g} over the {pruned_total:,} weights of the "
                f"layers it prunes{where}: none would be left; use a lower sparsity")
    return (f"egp cannot reach sparsity {sparsity:g} over all {total:,} prunable weights{where}: "
            f"{total - pruned_total:,} of them are in layers EGP never prunes (shortcut convs, "
            f"Linear) and only {keep_count(total, sparsity):,} may survive; use "
            f"egp:sparsity_over=pruned (the EGP paper's accounting) or a lower sparsity")


@lru_cache(maxsize=16)
def _structure(model: str, num_classes: int, channels: int, image_size: int,
               prunable: str = "all") -> tuple[int, tuple[str, ...], int]:
    """(prunable total, the convs EGP prunes, their total) of a freshly built model, over the
    config's prunable set (conv-only leaves the Linear head out of the total, as the run does)."""
    net = restrict_prunable(build_model(model, num_classes, channels, image_size), prunable)
    pruned = tuple(relu_fed_convs(net, channels, image_size))
    modules = prunable_modules(net)
    return (sum(m.weight.numel() for m in modules.values()), pruned,
            sum(modules[n].weight.numel() for n in pruned))


def _counts(config) -> tuple[int, int, str]:
    """(prunable total, the total of the convs EGP prunes, the accounting) of a config's model
    on its dataset: what the precheck and the cost model compare the target with."""
    spec = DATASETS.get(config.dataset)
    total, _, pruned_total = _structure(config.model, spec.num_classes, spec.channels,
                                        spec.image_size, config.prunable)
    return total, pruned_total, config.option_dict.get("sparsity_over", "prunable")


def check_target(config) -> str | None:
    """The method's precheck (bench.run --dry-run, and every cell before it trains): why the
    config's target is out of EGP's reach, or None. Builds the model once per shape (on the CPU,
    about a second for ResNet-18)."""
    total, pruned_total, over = _counts(config)
    return unreachable_reason(total, pruned_total, config.sparsity, over,
                              f" of {config.model} on {config.dataset}")


# --- the method ----------------------------------------------------------------------------------


def _egp_round(ctx, model: nn.Module, modules: Mapping[str, nn.Module], pruned: list[str],
               pruned_total: int, limit: int | None, rnd, folder, start: str,
               entropy: Mapping[str, float]):
    """One round on `model` in place: prune (at most `limit` weights; None: the full share) by
    the layer entropies measured at the round's start, retrain, evaluate. Returns (payload,
    meta) for bench.method.rounds.shared_round."""
    cfg, opts = ctx.config, ctx.options
    phases: dict = {}
    mask = get_mask(model)
    with timed(phases, rnd.phase("prune"), ctx.trainer.sync):
        remaining = {n: int(mask[n].sum()) for n in entropy}
        mean_abs = {n: float(modules[n].weight.detach()[mask[n]].abs().mean())
                    if remaining[n] else 0.0 for n in entropy}
        eligible = sum(remaining[n] for n in entropy if entropy[n] > 0)
        n_remove = int(round(opts["prune_fraction"] * eligible))
        if limit is not None:
            n_remove = min(n_remove, limit)
        budgets = egp_budgets(entropy, mean_abs, remaining, n_remove)
        removed = sum(budgets.values())
        if removed > 0:
            weights = {n: modules[n].weight.detach().abs() for n in budgets if budgets[n]}
            attach_mask(model, prune_per_layer(weights, mask, budgets))
    meta = {"phases": phases, "removed": removed, "start": start}
    if removed == 0:
        return {}, meta
    name = rnd.phase()
    result = ctx.trainer.fit(model, ctx.phase(name, cfg.round_epochs),
                             checkpoint=round_checkpoint(folder, name, start))
    phases[name] = result.as_record()
    with timed(phases, rnd.phase("eval"), ctx.trainer.sync):
        test_acc = ctx.trainer.accuracy(model, ctx.data.test)
    report = sparsity_report(model)
    meta["record"] = dict(
        sparsity=report.prunable_sparsity, overall_sparsity=report.overall_sparsity,
        pruned_sparsity=1.0 - Accounting("pruned", tuple(pruned)).counts(
            report.layers)[0] / max(1, pruned_total),
        accuracy=test_acc, val_accuracy=result.val_acc[-1] if result.val_acc else None,
        removed=removed, entropy=entropy, budgets={n: b for n, b in budgets.items() if b},
        skipped=sorted(n for n in entropy if entropy[n] == 0), empty_layers=report.empty_layers)
    return {"model": {k: v.detach().clone() for k, v in model.state_dict().items()}}, meta



ROUND_KIND = "egp-round"  # the cache kind of a shared round (its cost and its run)


def trajectory_key(cfg) -> dict:
    """What determines EGP's full rounds, whatever the target: the cache key of each."""
    opts = cfg.option_dict
    # which layers carry masks changes every round's start (the Linear head or not); the default
    # is left out so that keys made before the field existed stay valid
    prunable = {"prunable": cfg.prunable} if cfg.prunable != "all" else {}
    return {"model": cfg.model, "dense_epochs": cfg.dense_epochs, "round_epochs": cfg.round_epochs,
            "prune_fraction": opts["prune_fraction"], "entropy_batches": opts["entropy_batches"],
            **prunable}


def egp_rounds(cfg) -> int:
    """The rounds the cost model counts: each removes `prune_fraction` of what the layers EGP
    prunes still hold, until they hold the target's count (pruned_keep_target). Over every
    prunable weight the never-pruned layers all survive, so those layers go deeper than the
    nominal sparsity (ResNet-18 on CIFAR-100 at 98 %: 14 halvings, not 6). Layers at zero
    entropy can add rounds at run time; the record has the real count. An unknown dataset or
    an unreachable target counts the nominal sparsity."""
    fraction = cfg.option_dict["prune_fraction"]
    nominal = rounds_to(cfg.sparsity, fraction)
    if cfg.dataset not in DATASETS or cfg.sparsity <= 0:
        return nominal
    total, pruned_total, over = _counts(cfg)
    keep = pruned_keep_target(total, pruned_total, cfg.sparsity, over)
    return rounds_to(1.0 - keep / pruned_total, fraction) if keep >= 1 else nominal


def egp_cost(cfg) -> list[PhaseCost]:
    """The shared dense network; rounds before the last remove their full share and are shared
    by every cell that passes through them, the last (partial) round is the cell's own. (That
    the last round is partial is the model's assumption: a target met exactly by full rounds
    would share it too.)"""
    n, m = train_images(cfg), relative_cost(cfg.model, cfg.dataset)
    rounds = egp_rounds(cfg)
    key = trajectory_key(cfg)
    return [dense_phase(cfg)] + [
        PhaseCost(shared(cfg, ROUND_KIND, {**key, "round": r}) if r < rounds else None,
                  f"round{r}", n * cfg.round_epochs * m, prefix=shared(cfg, ROUND_KIND, key))
        for r in range(1, rounds + 1)]


@register_method("egp", requires_epochs=("dense_epochs", "round_epochs"), precheck=check_target,
                 cost=egp_cost,
                 options={
    "prune_fraction": Option(0.5, check=lambda v: 0.0 < v < 1.0, valid="must be in (0, 1)",
                             help="fraction of the remaining weights of the pruned layers removed "
                                  "per round"),
    "entropy_batches": Option(8, check=lambda v: v >= 0, valid="must be >= 0",
                              help="training batches over which layer entropies are averaged "
                                   "(0: one full pass, as in the original)"),
    "sparsity_over": Option("prunable", choices=SPARSITY_OVER,
                            help="count the target over all prunable weights (uniform, the "
                                 "default) or over the layers EGP prunes (the EGP paper's)"),
})
def egp(ctx):
    """EGP: rounds of 50% removal shared by layer entropy x magnitude, retraining after each."""
    cfg, opts = ctx.config, ctx.options
    model = ctx.dense_model()
    rounds = resume(ctx)
    if rounds.payload:
        prepare_for_state_dict(model, rounds.payload["model"])
        model.load_state_dict(rounds.payload["model"])
    elif get_mask(model) is None:
        attach_mask(model, {})
    spec = ctx.data.spec
    pruned = relu_fed_convs(model, spec.channels, spec.image_size)
    layers = sparsity_report(model).layers
    total = sum(t for _, t in layers.values())
    pruned_total = sum(layers[n][1] for n in pruned)
    over = opts["sparsity_over"]
    target = pruned_keep_target(total, pruned_total, cfg.sparsity, over)  # in the pruned layers
    problem = unreachable_reason(total, pruned_total, cfg.sparsity, over)
    if problem:  # the precheck said so before the dense model; this guards plugin-built models
        raise UnreachableTarget(problem)
    if over == "pruned":
        ctx.accounting = Accounting("pruned", tuple(pruned))
    ctx.extra["egp"] = {"keep_target": keep_count(total, cfg.sparsity) if over == "prunable"
                        else target, "pruned_keep_target": target, "pruned_total": pruned_total,
                        "sparsity_over": over, "target_reached": True,
                        "prune_fraction": opts["prune_fraction"],
                        "entropy_batches": opts["entropy_batches"]}
    modules = dict(model.named_modules())

    # A round that removes its full share (p of what is left) does not depend on the target, so
    # its state is shared by every cell that passes through it (the cache, keyed without the
    # sparsity); the last, partial round is each cell's own (bench/method/rounds.py).
    trajectory = trajectory_key(cfg)
    for rnd in rounds:
        mask = get_mask(model)
        kept = sum(int(mask[n].sum()) for n in pruned)
        if kept <= target:
            break
        # The entropies decide which layers are eligible, and so whether this round removes its
        # full share (then it is shared): measured first, by every cell alike (a few batches).
        with ctx.clock(rnd.phase("entropy")):
            entropy = layer_entropies(model, ctx.trainer, ctx.data.train,
                                      batches=opts["entropy_batches"], batch_size=cfg.batch_size,
                                      salt=rnd.phase("entropy"))
        eligible = sum(int(mask[n].sum()) for n in entropy if entropy[n] > 0)
        full = int(round(opts["prune_fraction"] * eligible)) <= kept - target
        start = state_digest(mask)

        def compute(folder, rnd=rnd, limit=None if full else kept - target, start=start,
                    entropy=entropy):
            return _egp_round(ctx, model, modules, pruned, pruned_total, limit, rnd, folder,
                              start, entropy)

        payload, meta = shared_round(ctx, ROUND_KIND, trajectory, rnd.index, compute, share=full)
        check_start(meta, start, f"egp {rnd.name}")
        if meta["removed"] == 0:  # nothing left that EGP may prune: report the sparsity reached
            ctx.extra["egp"]["target_reached"] = False
            ctx.expected_sparsity = None
            break
        prepare_for_state_dict(model, payload["model"])
        model.load_state_dict(payload["model"])
        rnd.save({"model": model.state_dict()}, **meta["record"])
    return model
