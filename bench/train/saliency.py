"""Pruning-at-initialisation saliency: ProsPr-style meta-gradients (Alizadeh et al., ICLR 2022).

A mask m = 1 multiplies every prunable weight. Starting from θ0 ⊙ m, k SGD steps with momentum
(no weight decay) are taken on k fresh batches, keeping the graph, and the loss at θ_k on one more
fresh batch is differentiated through the trajectory back to m:

    w_0 = θ0 ⊙ m;   g_i = ∇L(w_i; B_i)
    v_1 = g_0;   v_{i+1} = μ v_i + g_i;   w_{i+1} = w_i − η v_{i+1}
    score = |∂L(w_k; B_k) / ∂m|

Two forms of the derivative (`meta_grad`):
- `official` (default): as ProsPr's code (github mil-ad/prospr, `functional_sgd`), which starts
  the momentum buffer from `torch.clone(grad).detach()`: g_0 is a constant, so the first step
  depends on m only through θ0 ⊙ m, and g_0 carries no mask gradient into the later velocities.
  (Without momentum the official code keeps g_0's graph, so both forms agree at μ = 0.)
- `paper`: the paper's equation, differentiated through every gradient, g_0 included.
With k = 0 both are |θ0 ⊙ ∇L| (SNIP); with k = 1 `official` is |θ0 ⊙ ∇L(w_1)|.

As in ProsPr's `prune(..., method="full")` the mask multiplies the initial weights only, all
parameters (BatchNorm and biases included) take the inner steps, BatchNorm runs in train mode.
The real model is never changed: the inner steps run through `torch.func.functional_call` on
copies of its parameters and buffers.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn
from torch.func import functional_call

from bench.data.loader import Batch
from bench.masks import prunable_modules

Forward = Callable[[torch.Tensor], torch.Tensor]
LossFn = Callable[[Forward, Batch], tuple[torch.Tensor, torch.Tensor]]
"""(model-like callable, batch) -> (loss, logits): the trainer's Objective signature, so a
method's training objective can be differentiated at initialisation as it is."""

META_GRADS = ("official", "paper")


def meta_gradient_scores(model: nn.Module, loss_fn: LossFn, batches: Sequence[Batch], *,
                         lr: float = 0.5, momentum: float = 0.9, meta_grad: str = "official"
                         ) -> dict[str, torch.Tensor]:
    """|∂L(θ_k)/∂m| for every prunable weight, keyed by module name; k = len(batches) - 1 inner
    steps, one batch each, and the last batch for the meta-loss."""
    if not batches:
        raise ValueError("meta_gradient_scores needs at least one batch")
    if meta_grad not in META_GRADS:
        raise ValueError(f"meta_grad={meta_grad!r} is invalid; valid: {', '.join(META_GRADS)}")
    weight_keys = {f"{name}.weight" if name else "weight": name
                   for name in prunable_modules(model)}
    initial = {k: p.detach().clone() for k, p in model.named_parameters()}
    buffers = {k: b.detach().clone() for k, b in model.named_buffers()}
    masks = {k: torch.ones_like(initial[k], requires_grad=True) for k in weight_keys}
    for k, p in initial.items():
        if k not in masks:
            p.requires_grad_(True)
    weights = {k: initial[k] * masks[k] if k in masks else initial[k] for k in initial}
    velocity: dict[str, torch.Tensor] = {}
    was_training = model.training
    model.train()  # BatchNorm uses batch statistics; its running stats go to `buffers` copies

    def forward_with(current: dict[str, torch.Tensor]) -> Forward:
        return lambda x: functional_call(model, {**current, **buffers}, (x,))

    try:
        for step, batch in enumerate(batches[:-1]):
            loss, _ = loss_fn(forward_with(weights), batch)
            keys = list(weights)
            # official: the momentum buffer starts as a detached copy of the first gradient (the
            # code only does so with momentum != 0; without momentum it keeps the graph)
            graph = meta_grad == "paper" or step > 0 or momentum == 0
            grads = torch.autograd.grad(loss, [weights[k] for k in keys], create_graph=graph,
                                        allow_unused=True)
            for key, grad in zip(keys, grads):
                if grad is None:
                    continue
                if key not in velocity:
                    velocity[key] = grad if graph else grad.detach()
                else:
                    velocity[key] = momentum * velocity[key] + grad
                weights[key] = weights[key] - lr * velocity[key]
        loss, _ = loss_fn(forward_with(weights), batches[-1])
        names = list(masks)
        meta = torch.autograd.grad(loss, [masks[k] for k in names])
    finally:
        model.train(was_training)
    return {weight_keys[k]: g.detach().abs() for k, g in zip(names, meta)}


def normalize_by_sum(scores: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Scores divided by their global sum (EPSD). One positive factor: the global ranking, and so
    the mask, is unchanged; the scores become comparable across losses and steps."""
    total = sum(s.sum() for s in scores.values())
    if not torch.is_tensor(total) or float(total) == 0.0:
        return dict(scores)
    return {n: s / total for n, s in scores.items()}
