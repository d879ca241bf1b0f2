"""The retraining after a one-shot prune, each mode defined once (docs/methods.md, "Retraining").

Every method registered with `one_shot=True` takes the option `retraining` and retrains through
`retrain(ctx, model, objective)`. With T = dense_epochs and t = sparse_epochs:

- restart (the default, the harness's own): t epochs of a fresh schedule (config.lr, the
  config's schedule over t epochs), from the pruned weights;
- finetune: t epochs at the dense schedule's final learning rate, held constant (Han et al.
  2015; Renda et al. 2020's "fine-tuning"), from the pruned weights;
- lr-rewind: t epochs replaying the dense schedule's last t epochs (epochs T − t .. T), from the
  pruned weights (Renda et al. 2020's "learning rate rewinding");
- weight-rewind: the kept weights (and every other parameter and buffer) rewound to their values
  after epoch T − t of the dense phase, then the same replay (Renda et al.'s "weight rewinding";
  at t = T, the lottery ticket's reset to initialisation). The dense phase keeps those weights
  when `snapshot_epochs` lists T − t;
- reinit: the mask kept, every weight re-drawn from the initialiser (the seed offset of
  mask_control=reinit), trained t epochs with a fresh schedule (at t = T, the dense schedule
  itself, as Renda et al. train their reinitialised networks).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterable

import torch
from torch import nn

from bench.masks import MASK_BUFFER, apply_mask, attach_mask, get_mask
from bench.method import RETRAININGS, MethodContext
from bench.train.models import cpu_state
from bench.train.trainer import Hook, Objective, Phase, TrainState, ce_objective

REINIT_SEED_OFFSET = 2  # the re-drawn weights of reinit and of mask_control=reinit (teacher: 1)


def dense_schedule(config: Any) -> Phase:
    """The dense phase's schedule, as the dense network was trained with it."""
    return Phase.from_config("dense", config.dense_epochs, config)


def final_lr(config: Any) -> float:
    """The learning rate of the dense schedule's last epoch (0.001 for the 182-epoch CIFAR step
    schedule from 0.1; for cosine, the rate at the start of its last epoch)."""
    return config.lr * dense_schedule(config).lr_factor(config.dense_epochs - 1, 1)


def rewind_epoch(config: Any) -> int:
    return config.dense_epochs - config.sparse_epochs


def retraining_phase(config: Any, name: str, mode: str) -> Phase:
    """The phase each mode retrains with (pure: the schedule only)."""
    if mode not in RETRAININGS:
        raise ValueError(f"retraining={mode!r} is invalid; valid: {', '.join(RETRAININGS)}")
    t = config.sparse_epochs
    if mode in ("restart", "reinit"):
        return Phase.from_config(name, t, config)
    if mode == "finetune":
        return Phase.from_config(name, t, config, lr=final_lr(config), schedule="constant",
                                 milestone_epochs=())
    dense = dense_schedule(config)  # lr-rewind, weight-rewind: the dense schedule's tail
    return dataclasses.replace(dense, name=name, epochs=t, schedule_epochs=config.dense_epochs,
                               start_epoch=rewind_epoch(config))


class Snapshots(Hook):
    """Keeps a phase's weights after each listed epoch (0: before its first) on the CPU: the
    rewind points of weight-rewind. Its state goes into the phase's checkpoint, so a resumed
    phase keeps the snapshots taken before the kill."""

    def __init__(self, epochs: Iterable[int]):
        self.epochs = set(epochs)
        self.saved: dict[int, dict[str, torch.Tensor]] = {}

    def on_phase_start(self, state: TrainState) -> None:
        if 0 in self.epochs and state.epoch == 0:
            self.saved[0] = cpu_state(state.model)

    def on_epoch_end(self, state: TrainState) -> None:
        if state.epoch + 1 in self.epochs:
            self.saved[state.epoch + 1] = cpu_state(state.model)

    def state_dict(self) -> dict[str, Any]:
        return {"saved": self.saved}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.saved = {int(k): v for k, v in state["saved"].items()}


def snapshot_hooks(config: Any) -> list[Snapshots]:
    """The hook a dense phase adds when the config asks for rewind points (none otherwise)."""
    return [Snapshots(config.snapshot_epochs)] if config.snapshot_epochs else []


def snapshot_payload(hooks: list[Snapshots]) -> dict[str, Any]:
    """What a dense phase's cache entry adds for them: {"snapshots": {epoch: weights}}, or
    nothing (the entry a phase without rewind points always had)."""
    return {"snapshots": hooks[0].saved} if hooks else {}


def rewind(model: nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Every parameter and buffer set to `weights` (a state dict without masks), then the
    model's mask applied: the kept weights take their rewound values, the pruned stay zero."""
    state = model.state_dict()
    missing = [k for k in state if not k.endswith(MASK_BUFFER) and k not in weights]
    if missing:
        raise ValueError(f"the rewind point lacks {len(missing)} entries, e.g. {missing[0]!r}")
    # a snapshot of a masked model carries its masks: the model keeps its own
    state.update({k: v for k, v in weights.items() if k in state and not k.endswith(MASK_BUFFER)})
    model.load_state_dict(state)
    apply_mask(model)


def reinitialised(ctx: MethodContext, model: nn.Module) -> nn.Module:
    """A freshly initialised model carrying `model`'s mask."""
    mask = get_mask(model)
    fresh = ctx.make_model(seed_offset=REINIT_SEED_OFFSET)
    attach_mask(fresh, {} if mask is None else dict(mask.items()))
    return fresh


def retrain(ctx: MethodContext, model: nn.Module, objective: Objective = ce_objective,
            name: str = "finetune") -> nn.Module:
    """Train the pruned `model` as the cell's `retraining` option says; returns the model
    trained (a new one for reinit)."""
    mode = ctx.options.get("retraining", "restart")
    phase = retraining_phase(ctx.config, name, mode)
    if mode == "weight-rewind":
        epoch = rewind_epoch(ctx.config)
        points = ctx.rewind_points
        if epoch not in points:
            kept = ", ".join(map(str, sorted(points))) or "none"
            raise ValueError(f"weight-rewind needs the dense weights after epoch {epoch}; the "
                             f"dense phase kept: {kept} (set snapshot_epochs; a loaded "
                             "dense_checkpoint has none)")
        rewind(model, points[epoch])
    if mode == "reinit":
        model = reinitialised(ctx, model)
    if mode != "restart":
        ctx.extra["retraining"] = {"mode": mode, "lr_start": phase.lr * phase.lr_factor(0, 1),
                                   "schedule": phase.schedule,
                                   "start_epoch": phase.start_epoch,
                                   **({"rewind_epoch": rewind_epoch(ctx.config)}
                                      if mode == "weight-rewind" else {})}
    ctx.train(model, phase, objective)
    return model
