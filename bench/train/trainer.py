"""The one training loop. Methods extend it through an objective and hooks, never by copying it.

The loop enforces the mask contract itself: if the model carries a mask, gradients of pruned
weights are zeroed before every optimizer step and the weights re-zeroed after it, so momentum and
weight decay cannot revive them, whatever the method does.

Precision (bench/train/precision.py): training steps run under autocast at the trainer's resolved
precision; the parameters, their gradients and the optimizer state stay fp32, and `logits` and
`accuracy` (every reported number) always compute in fp32.
"""
from __future__ import annotations

import contextlib
import logging
import math
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Protocol, Sequence

import torch
from torch import nn

from bench.console import progress_bar
from bench.data import DataBundle, Split
from bench.data.loader import Batch, DeviceLoader, IndexSampler
from bench.masks import apply_mask, get_mask, mask_gradients, verify_mask
from bench.store import DamagedFile, atomic_torch_save, safe_torch_load
from bench.train.losses import cross_entropy
from bench.train.precision import (MEMORY_FORMATS, fp32_math, resolve_memory_format,
                                   resolve_precision)


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or inf; the message names the phase and the epoch."""


@dataclass(frozen=True)
class Phase:
    """One training phase: its name (used in records and timings), budget and optimizer."""

    name: str
    epochs: int
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"  # "step", or "constant" (fine-tuning at a fixed rate)
    batch_size: int = 128
    milestones: tuple[float, ...] = (0.5, 0.75)  # for "step": fractions of the schedule
    gamma: float = 0.1
    warmup_epochs: int = 0
    # for "step": the drops in epochs of the schedule instead of fractions (exact at any size)
    milestone_epochs: tuple[int, ...] = ()
    # A phase may follow part of a longer schedule: the lr is the one the schedule of
    # `schedule_epochs` epochs (0: this phase's own length) has `start_epoch` epochs on. Learning-
    # rate and weight rewinding replay the dense schedule's last epochs this way.
    schedule_epochs: int = 0
    start_epoch: int = 0

    @classmethod
    def from_config(cls, name: str, epochs: int, config: Any, **overrides: Any) -> "Phase":
        kw = dict(lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
                  schedule=config.schedule, batch_size=config.batch_size)
        milestones = getattr(config, "milestones", ())
        if milestones and config.schedule == "step":
            # given in epochs of the dense phase; any other phase drops at the same fractions
            kw["milestone_epochs"] = scaled_milestones(milestones, config.dense_epochs, epochs)
        kw.update(overrides)
        return cls(name=name, epochs=epochs, **kw)

    def lr_factor(self, step: int, steps_per_epoch: int) -> float:
        total = max(1, (self.schedule_epochs or self.epochs) * steps_per_epoch)
        warm = self.warmup_epochs * steps_per_epoch
        if step < warm:
            return (step + 1) / warm
        step += self.start_epoch * steps_per_epoch
        if self.schedule == "constant":
            return 1.0
        if self.schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))
        if self.milestone_epochs:
            passed = sum(step >= m * steps_per_epoch for m in self.milestone_epochs)
        else:
            passed = sum(step >= m * total for m in self.milestones)
        return self.gamma ** passed


def scaled_milestones(milestones: Sequence[int], dense_epochs: int, epochs: int) -> tuple[int, ...]:
    """Step drops given in epochs of the dense phase, at the same fractions of a phase of
    `epochs` (exactly them when it is the dense phase)."""
    if epochs == dense_epochs:
        return tuple(milestones)
    return tuple(round(m * epochs / max(1, dense_epochs)) for m in milestones)


@dataclass
class TrainState:
    """What hooks see. `logits` and `loss` belong to the current step."""

    model: nn.Module
    phase: Phase
    optimizer: torch.optim.Optimizer
    epoch: int = 0
    step: int = 0
    batch: Batch | None = None
    logits: torch.Tensor | None = None
    loss: torch.Tensor | None = None


class Hook:
    """Extension points of the loop. Override what you need; state_dict makes a hook resumable."""

    def on_phase_start(self, state: TrainState) -> None: ...
    def on_epoch_start(self, state: TrainState) -> None: ...
    def after_backward(self, state: TrainState) -> None: ...
    def after_step(self, state: TrainState) -> None: ...
    def on_epoch_end(self, state: TrainState) -> None: ...
    def on_epoch_done(self, state: TrainState, result: "PhaseResult") -> None:
        """After the epoch's validation, its entry in `result` and its checkpoint: what an
        observer reports (a kill after this point never repeats the epoch)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class Objective(Protocol):
    def __call__(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (loss, logits) for one batch."""


def ce_objective(model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    logits = model(batch.x)
    return cross_entropy(logits, batch.y), logits


@dataclass
class PhaseResult:
    name: str
    epochs: int
    seconds: float
    images: int = 0  # training samples processed (repeats included), for images/s
    val_acc: list[float] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    resumed_from_epoch: int = 0

    def as_record(self) -> dict[str, Any]:
        return {"epochs": self.epochs, "seconds": self.seconds, "images": self.images,
                "val_acc": self.val_acc,
                "train_loss": self.train_loss, "resumed_from_epoch": self.resumed_from_epoch}


EVAL_BATCH = 512
EVAL_BATCH_PIXELS = EVAL_BATCH * 32 * 32


def eval_batch_size(split: Split) -> int:
    """Evaluation batches hold about as many pixels as 512 CIFAR images: 512 up to 32x32, 128 at
    TinyImageNet's 64x64 (whose activations at 512 took about 1 GB of host memory more than
    training did), at least 32. With BN frozen each image's logits do not depend on its batch (up to
    float rounding), so this sets memory, not results."""
    h, w = split.images.shape[-2:]
    return min(EVAL_BATCH, max(32, EVAL_BATCH_PIXELS // (h * w)))


class Trainer:
    def __init__(self, data: DataBundle, device: str | torch.device = "cpu", *, seed: int = 0,
                 compile: bool = False, progress: bool = True, precision: str = "auto",
                 memory_format: str | None = None, observers: Iterable[Hook] = ()):
        """`precision`: auto, fp32 or bf16 (resolved here; `self.precision` is fp32 or bf16).
        `memory_format`: contiguous or channels_last; None picks the device's faster one.
        `observers`: hooks added to every fit (after the caller's), so that logging reaches the
        phases methods and cached computations train with `trainer.fit` directly."""
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.data = data.to(self.device)
        self.seed = seed
        self.compile = compile
        self.progress = progress
        self.precision = resolve_precision(precision, self.device)
        self.memory_format = memory_format or resolve_memory_format(self.device)
        if self.memory_format not in MEMORY_FORMATS:
            raise ValueError(f"memory_format={memory_format!r} is invalid; valid: "
                             f"{', '.join(MEMORY_FORMATS)}")
        self.channels_last = self.memory_format == "channels_last"
        self.observers = tuple(observers)
        if self.cuda:
            torch.backends.cudnn.benchmark = True

    def with_data(self, data: DataBundle) -> "Trainer":
        """A trainer with this one's settings (device, seed, precision, ...) on other data."""
        return Trainer(data, self.device, seed=self.seed, compile=self.compile,
                       progress=self.progress, precision=self.precision,
                       memory_format=self.memory_format, observers=self.observers)

    # -- helpers methods use ---------------------------------------------------------------------
    def prepare(self, model: nn.Module) -> nn.Module:
        model = model.to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return model

    def autocast(self) -> contextlib.AbstractContextManager:
        """The precision training and scoring passes run at (never evaluation: see fp32_math)."""
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def loader(self, split: Split, batch_size: int, *, train: bool, salt: str = "",
               sampler: IndexSampler | None = None) -> DeviceLoader:
        seed = self.seed * 1_000_003 + zlib.crc32(salt.encode())
        return DeviceLoader(split, self.data, batch_size, train=train, seed=seed,
                            device=self.device, channels_last=self.channels_last, sampler=sampler)

    @torch.no_grad()
    def logits(self, model: nn.Module, split: Split, batch_size: int | None = None) -> torch.Tensor:
        model.eval()
        outs = []
        with fp32_math(self.device):
            for batch in self.loader(split, batch_size or eval_batch_size(split), train=False):
                outs.append(model(batch.x).float())
        return torch.cat(outs)

    @torch.no_grad()
    def accuracy(self, model: nn.Module, split: Split, batch_size: int | None = None) -> float:
        model.eval()
        correct = torch.zeros((), device=self.device, dtype=torch.int64)
        with fp32_math(self.device):
            for batch in self.loader(split, batch_size or eval_batch_size(split), train=False):
                correct += (model(batch.x).argmax(1) == batch.y).sum()
        return correct.item() / len(split)

    # -- the loop ------------------------------------------------------------------------------
    def fit(self, model: nn.Module, phase: Phase, objective: Objective = ce_objective,
            hooks: Iterable[Hook] = (), *, sampler: IndexSampler | None = None,
            checkpoint: Path | None = None) -> PhaseResult:
        """Train `model` in place for `phase`; resumable at epoch granularity via `checkpoint`."""
        hooks = list(hooks)
        if isinstance(objective, Hook) and objective not in hooks:
            hooks.insert(0, objective)
        hooks += [o for o in self.observers if o not in hooks]
        result = PhaseResult(phase.name, phase.epochs, 0.0)
        if phase.epochs == 0:
            return result
        masked = get_mask(model) is not None
        optimizer = torch.optim.SGD(model.parameters(), lr=phase.lr, momentum=phase.momentum,
                                    weight_decay=phase.weight_decay, nesterov=False)
        loader = self.loader(self.data.train, phase.batch_size, train=True, salt=phase.name,
                             sampler=sampler)
        state = TrainState(model, phase, optimizer)
        start_epoch = 0
        if checkpoint is not None and checkpoint.is_file():
            start_epoch = self._resume(checkpoint, state, loader, hooks, result)
        step_model = torch.compile(model) if self.compile else model
        steps_per_epoch = max(1, len(loader))
        state.epoch = start_epoch  # so that on_phase_start sees where a resumed phase continues
        for hook in hooks:
            hook.on_phase_start(state)
        bar = _progress(range(start_epoch, phase.epochs), phase, start_epoch, self.progress)
        for epoch in bar:
            t0 = time.perf_counter()
            state.epoch = epoch
            model.train()
            for hook in hooks:
                hook.on_epoch_start(state)
            loss_sum = torch.zeros((), device=self.device)
            n_batches = n_images = 0
            for batch in loader:
                factor = phase.lr_factor(state.step, steps_per_epoch)
                for group in optimizer.param_groups:
                    group["lr"] = phase.lr * factor
                state.batch = batch
                with self.autocast():
                    loss, logits = objective(step_model, batch)
                state.loss, state.logits = loss, logits
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                for hook in hooks:
                    hook.after_backward(state)
                if masked:
                    mask_gradients(model)
                optimizer.step()
                if masked:
                    apply_mask(model)
                for hook in hooks:
                    hook.after_step(state)
                loss_sum += loss.detach().float()
                n_batches += 1
                n_images += batch.y.shape[0]
                state.step += 1
            for hook in hooks:
                hook.on_epoch_end(state)
            mean_loss = loss_sum.item() / max(1, n_batches)  # the one sync per epoch
            if not math.isfinite(mean_loss):
                raise NonFiniteLoss(f"loss became {mean_loss} in phase {phase.name!r} at epoch "
                                    f"{epoch + 1}/{phase.epochs}")
            val = self.accuracy(model, self.data.val) if len(self.data.val) else float("nan")
            self.sync()
            result.seconds += time.perf_counter() - t0
            result.images += n_images
            result.train_loss.append(mean_loss)
            result.val_acc.append(val)
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{mean_loss:.3f}", val=f"{val:.3f}")
            if checkpoint is not None:
                self._save(checkpoint, state, loader, hooks, result)
            for hook in hooks:
                hook.on_epoch_done(state, result)
        if masked:
            verify_mask(model)
        return result

    # -- epoch checkpoints ------------------------------------------------------------------------
    def _save(self, path: Path, state: TrainState, loader: DeviceLoader, hooks: list[Hook],
              result: PhaseResult) -> None:
        atomic_torch_save({
            "phase": state.phase.name, "epoch": state.epoch + 1, "step": state.step,
            "model": state.model.state_dict(), "optimizer": state.optimizer.state_dict(),
            "generator": loader.generator.get_state(), "loader_epoch": loader.epoch,
            "hooks": [h.state_dict() for h in hooks], "result": result.__dict__,
            "torch_rng": torch.get_rng_state(), "precision": self.precision,
        }, path)

    def _resume(self, path: Path, state: TrainState, loader: DeviceLoader, hooks: list[Hook],
                result: PhaseResult) -> int:
        try:
            blob = safe_torch_load(path, map_location=self.device)
        except DamagedFile as exc:  # planted or cut: train the phase from its start instead
            logging.getLogger(__name__).warning("%s; the phase starts again", exc)
            return 0
        if not isinstance(blob, dict) or blob.get("phase") != state.phase.name:
            return 0
        # `precision=auto` is not in the cell id, so a cell killed on a CPU (fp32) may resume on
        # a GPU (bf16): its record would name one precision for epochs run at two. Checkpoints
        # written before the field existed carry none and resume as before.
        if blob.get("precision", self.precision) != self.precision:
            logging.getLogger(__name__).warning(
                "%s was written at %s, this run trains at %s; the phase starts again", path,
                blob["precision"], self.precision)
            return 0
        state.model.load_state_dict(blob["model"])
        state.optimizer.load_state_dict(blob["optimizer"])
        # the loader's generator is a CPU one: map_location moved its state to the device too
        loader.generator.set_state(blob["generator"].cpu())
        loader.epoch = blob["loader_epoch"]
        for hook, hs in zip(hooks, blob["hooks"]):
            hook.load_state_dict(hs)
        torch.set_rng_state(blob["torch_rng"].cpu())  # map_location moved it to the device
        result.__dict__.update(blob["result"])
        result.resumed_from_epoch = blob["epoch"]
        state.step = blob["step"]
        return blob["epoch"]


def _progress(epochs: range, phase: Phase, start: int, enabled: bool):
    if not enabled:
        return epochs
    return progress_bar(epochs, total=phase.epochs, initial=start, desc=phase.name, unit="ep",
                        leave=False)

