"""The three self-distillation objectives (methods/self_distillation.py), as the trainer calls
them: objective(model, batch) -> (loss, logits). PS-KD and DLB keep state, so they are hooks too.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from bench.data.loader import Batch
from bench.train.losses import cross_entropy, cskd_loss, dlb_loss, pskd_alpha, pskd_loss
from bench.train.trainer import Hook, TrainState


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
    the epoch ends, so the table changes exactly once per epoch. An epoch that left a sample out
    is an error (its target would silently be an epoch staler): train with a sampler that covers
    every sample (sd_batching.EverySampleSampler). Resumable via state_dict."""

    def __init__(self, labels: torch.Tensor, num_classes: int, alpha_T: float = 0.8):
        self.alpha_T = alpha_T
        self.alpha = alpha_T
        self.table = F.one_hot(labels.long(), num_classes).float()  # epoch 0 targets are one-hot
        self.pending: torch.Tensor | None = None
        self.seen: torch.Tensor | None = None
        self.alpha_history: list[float] = []  # the α_t of each epoch run (for records and tests)

    def on_epoch_start(self, state: TrainState) -> None:
        self.alpha = pskd_alpha(self.alpha_T, state.epoch, state.phase.epochs)
        self.alpha_history.append(self.alpha)
        self.pending = self.table.clone()
        self.seen = torch.zeros(len(self.table), dtype=torch.bool, device=self.table.device)

    def __call__(self, model: Callable, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        logits = model(batch.x)
        loss = pskd_loss(logits, batch.y, self.table[batch.idx], self.alpha)
        if self.pending is not None:
            self.pending[batch.idx] = F.softmax(logits.detach().float(), dim=1)
            self.seen[batch.idx] = True
        return loss, logits

    def on_epoch_end(self, state: TrainState) -> None:
        if self.pending is None:
            return
        missed = int((~self.seen).sum())
        if missed:
            raise RuntimeError(f"PS-KD: epoch {state.epoch} left {missed} of {len(self.seen)} "
                               f"samples out of the soft-target update; train with a sampler "
                               f"that covers every sample")
        self.table, self.pending, self.seen = self.pending, None, None

    @torch.no_grad()
    def set_previous(self, model: nn.Module, batches: list[Batch]) -> None:
        """Initialisation stand-in for the previous epoch: the predictions of `model` (a copy is
        run in train mode, so the real model's BatchNorm statistics do not move)."""
        snapshot = copy.deepcopy(model).train()
        for batch in batches:
            self.table[batch.idx] = F.softmax(snapshot(batch.x).float(), dim=1)

    def state_dict(self) -> dict[str, Any]:
        return {"table": self.table, "alpha_history": list(self.alpha_history)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.table = state["table"].to(self.table.device)
        # the record lists every epoch's α_t, the ones before a resume too (older checkpoints
        # did not keep them)
        self.alpha_history = list(state.get("alpha_history", []))


class LastBatchSelfKD(Hook):
    """DLB: remembers the logits of the `fresh` first rows (detached) for the next step, where the
    same samples come back as the batch's last rows. The chain restarts at every epoch."""

    def __init__(self, fresh: int, tau: float = 3.0, alpha: float = 1.0):
        self.fresh, self.tau, self.alpha = fresh, tau, alpha
        self.previous: torch.Tensor | None = None
        self.previous_idx: torch.Tensor | None = None

    def on_epoch_start(self, state: TrainState) -> None:
        self.previous = self.previous_idx = None

    def __call__(self, model: Callable, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        logits = model(batch.x)
        repeated = len(batch.y) - self.fresh
        if repeated <= 0:
            loss = cross_entropy(logits, batch.y)
        else:
            if self.previous is None or len(self.previous) != repeated:
                raise RuntimeError(f"DLB batch repeats {repeated} samples but the previous step "
                                   f"left {0 if self.previous is None else len(self.previous)}")
            loss = dlb_loss(logits, batch.y, self.previous, tau=self.tau, alpha=self.alpha)
        self.previous = logits[:self.fresh].detach().float()  # outlives the step: fp32 (issue 30)
        self.previous_idx = batch.idx[:self.fresh]
        return loss, logits
