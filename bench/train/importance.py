"""Gradient-based importance accumulated during training: per-batch saliency, bias-corrected EMA.

    a_t = |θ ⊙ g_t| (taylor) | |g_t| (grad) | g_t² (grad2)
    v_t = β v_{t-1} + (1 - β) a_t,   v_0 = 0,   ŝ = v_t / (1 - β^t)
"""
from __future__ import annotations

from typing import Any

import torch

from bench.masks import prunable_weights
from bench.train.trainer import Hook, TrainState

SCORES = ("taylor", "grad", "grad2")


def saliency(weights: list[torch.Tensor], grads: list[torch.Tensor], score: str
             ) -> list[torch.Tensor]:
    """Per-weight saliency of one batch, as new tensors (float32)."""
    grads = [g.float() for g in grads]
    if score == "taylor":
        out = torch._foreach_mul([w.detach().float() for w in weights], grads)
        torch._foreach_abs_(out)
    elif score == "grad":
        out = torch._foreach_abs(grads)
    elif score == "grad2":
        out = torch._foreach_mul(grads, grads)
    else:
        raise ValueError(f"score={score!r} is invalid; valid: {', '.join(SCORES)}")
    return out


class ImportanceEMA(Hook):
    """Accumulates the EMA of the saliency of every prunable weight, from the gradients of the
    training loss, on the steps where `active(state)` is true."""

    def __init__(self, model: torch.nn.Module, score: str = "taylor", beta: float = 0.9,
                 first_step: int = 0):
        if score not in SCORES:
            raise ValueError(f"score={score!r} is invalid; valid: {', '.join(SCORES)}")
        self.names = list(prunable_weights(model))
        self.weights = list(prunable_weights(model).values())
        self.score, self.beta, self.first_step = score, beta, first_step
        self.ema = [torch.zeros_like(w, dtype=torch.float32) for w in self.weights]
        self.steps = 0

    def after_backward(self, state: TrainState) -> None:
        if state.step < self.first_step:
            return
        grads = [w.grad if w.grad is not None else torch.zeros_like(w) for w in self.weights]
        self.update(saliency(self.weights, grads, self.score))

    @torch.no_grad()
    def update(self, batch_scores: list[torch.Tensor]) -> None:
        torch._foreach_mul_(self.ema, self.beta)
        torch._foreach_add_(self.ema, batch_scores, alpha=1.0 - self.beta)
        self.steps += 1

    def scores(self) -> dict[str, torch.Tensor]:
        """The bias-corrected EMA ŝ per prunable weight."""
        if self.steps == 0:
            raise RuntimeError("no importance was accumulated (no training step was scored)")
        correction = 1.0 - self.beta ** self.steps
        return {n: v / correction for n, v in zip(self.names, self.ema)}

    def state_dict(self) -> dict[str, Any]:
        return {"ema": [v.clone() for v in self.ema], "steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for v, saved in zip(self.ema, state["ema"]):
            v.copy_(saved)
        self.steps = state["steps"]
