"""What watches a cell in section 2, through the trainer's hooks (run_cell's `observers`, added to
every fit of the cell, cached phases and COLT's half-models included):

- `CellProbe`: after every epoch (and at the start of every phase, so after pruning too) the
  pruned weights are exactly zero, counted from each layer's own mask buffer rather than through
  the harness's verify_mask; batches and weights are on the device, in the memory format the
  harness chose; the epochs seen are listed, and it can interrupt the cell at one of them the
  way the harness's resume tests do (a KeyboardInterrupt from on_epoch_start).
- `watch_evaluations`: every evaluation pass (Trainer.logits and Trainer.accuracy) is watched from
  inside the model's forward: the dtype of its output, whether autocast was on and, on CUDA,
  whether TF32 was allowed. (The logits those passes return are cast to fp32 whatever ran, so
  their dtype alone would prove nothing.)
"""
from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass, field
from typing import Iterator

import torch

from bench.masks import MASK_BUFFER, prunable_modules
from bench.train.trainer import Hook, PhaseResult, TrainState, Trainer


class Interrupted(KeyboardInterrupt):
    """The simulated kill of a resume check: a KeyboardInterrupt, as in the harness's own resume
    tests, so the cell unwinds exactly as it does on Ctrl-C or a scheduler's signal (no record;
    epoch checkpoints kept). Its own type, so a real Ctrl-C is never taken for it."""


@dataclass
class Failure:
    phase: str
    check: str
    message: str

    def line(self, method: str) -> str:
        return f"FAIL {method} [{self.phase}] {self.check}: {self.message}"


@dataclass(eq=False)  # the trainer tells hooks apart by identity
class CellProbe(Hook):
    device: torch.device
    channels_last: bool
    kill_at: tuple[str, int] | None = None  # (phase, epoch): interrupt as that epoch starts
    epochs: list[tuple[str, int, int]] = field(default_factory=list)  # (phase, epoch, of)
    failures: list[Failure] = field(default_factory=list)
    logits_dtypes: dict[str, str] = field(default_factory=dict)  # training, per phase
    phase: str = "setup"  # the phase running (or last run)

    def fail(self, check: str, message: str) -> None:
        if not any(f.phase == self.phase and f.check == check for f in self.failures):
            self.failures.append(Failure(self.phase, check, message))  # the first per phase

    def on_phase_start(self, state: TrainState) -> None:
        self.phase = state.phase.name
        self._check_mask(state, f"at the phase's start (epoch {state.epoch}/{state.phase.epochs})")

    def on_epoch_start(self, state: TrainState) -> None:
        self.epochs.append((state.phase.name, state.epoch, state.phase.epochs))
        if self.kill_at == (state.phase.name, state.epoch):
            self.kill_at = None
            raise Interrupted(f"interrupted as epoch {state.epoch + 1} of {state.phase.name} "
                              "started")

    def on_epoch_done(self, state: TrainState, result: PhaseResult) -> None:
        self._check_mask(state, f"after epoch {state.epoch + 1}/{state.phase.epochs}")
        self._check_placement(state)
        if state.logits is not None:
            self.logits_dtypes[state.phase.name] = str(state.logits.dtype).replace("torch.", "")

    def kill_point(self) -> tuple[str, int, int] | None:
        """Where to interrupt a second run of the cell: the last epoch that has a finished epoch
        of its phase before it (so the resumed phase continues mid-way), else the last epoch."""
        later = [e for e in self.epochs if e[1] >= 1]
        return (later or self.epochs or [None])[-1]

    @torch.no_grad()
    def _check_mask(self, state: TrainState, when: str) -> None:
        counts, names = [], []
        for name, module in prunable_modules(state.model).items():
            mask = getattr(module, MASK_BUFFER, None)
            if mask is not None:
                counts.append(torch.count_nonzero(module.weight.masked_fill(mask, 0)))
                names.append(name)
        if not counts:
            return
        per_layer = torch.stack(counts).tolist()  # one host sync per epoch
        if any(per_layer):
            layers = [n for n, c in zip(names, per_layer) if c]
            self.fail("mask", f"{sum(per_layer)} pruned weight(s) nonzero {when} (in "
                              f"{', '.join(layers[:3])}{', ...' if len(layers) > 3 else ''})")

    def _check_placement(self, state: TrainState) -> None:
        batch, param = state.batch, next(state.model.parameters())
        where = {"batch": batch.x.device if batch is not None else self.device,
                 "labels": batch.y.device if batch is not None else self.device,
                 "weights": param.device}
        wrong = [f"{k} on {v}" for k, v in where.items() if v.type != self.device.type]
        if wrong:
            self.fail("device", f"{', '.join(wrong)}; the cell runs on {self.device}")
        if batch is not None and batch.x.dim() == 4 and self.channels_last and \
                not batch.x.is_contiguous(memory_format=torch.channels_last):
            self.fail("layout", "batches are not channels_last, the memory format the harness "
                                "chose")


@dataclass(frozen=True)
class EvalPass:
    kind: str  # logits (the final test evaluation) or accuracy (validation, teacher tests)
    dtypes: frozenset[str]
    autocast: bool
    tf32: bool

    def problem(self) -> str | None:
        bad = [f"outputs {', '.join(sorted(self.dtypes))}"] if self.dtypes - {"float32"} else []
        bad += ["autocast on"] if self.autocast else []
        bad += ["TF32 allowed"] if self.tf32 else []
        return "; ".join(bad) or None


@contextlib.contextmanager
def watch_evaluations(passes: list[EvalPass]) -> Iterator[None]:
    """Record an EvalPass for every Trainer.logits and Trainer.accuracy call inside the block."""
    originals = {name: getattr(Trainer, name) for name in ("logits", "accuracy")}

    def watched(name, fn):
        @functools.wraps(fn)
        def run(self, model, *args, **kwargs):
            seen: list[tuple[str, bool, bool]] = []

            def forward_hook(module, inputs, output):
                out = output[0] if isinstance(output, (tuple, list)) else output
                seen.append((str(out.dtype).replace("torch.", ""),
                             _autocast_on(self.device.type), _tf32_on(self.device)))

            handle = model.register_forward_hook(forward_hook)
            try:
                return fn(self, model, *args, **kwargs)
            finally:
                handle.remove()
                if seen:
                    passes.append(EvalPass(name, frozenset(s[0] for s in seen),
                                           any(s[1] for s in seen), any(s[2] for s in seen)))
        return run

    for name, fn in originals.items():
        setattr(Trainer, name, watched(name, fn))
    try:
        yield
    finally:
        for name, fn in originals.items():
            setattr(Trainer, name, fn)


def _autocast_on(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch before 2.4: no device argument
        if device_type == "cpu":
            return torch.is_autocast_cpu_enabled()
        return torch.is_autocast_enabled()


def _tf32_on(device: torch.device) -> bool:
    return device.type == "cuda" and (torch.backends.cudnn.allow_tf32
                                      or torch.backends.cuda.matmul.allow_tf32)
