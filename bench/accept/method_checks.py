"""Section 2: every registered method runs one cell on CIFAR-shaped data with the defaults a GPU
user gets (precision auto, the harness's memory format, data resident on the device), and:

- its record is written, ok, and says the precision and memory format the harness resolves;
- pruned weights are exactly zero after every epoch and at the start of every phase (a probe in
  the trainer's hooks), and in the saved model after the cell;
- every evaluation pass ran in fp32 (no autocast, no TF32), and batches and weights were on the
  device in the chosen layout;
- the same cell, interrupted in a fresh store and run again, resumes and ends with exactly the
  uninterrupted cell's test accuracy, mask and weights.

Each method's checks run in its own stores, so a method never reads another's cache entries. A
failure is one line naming the method and the phase; the next method runs regardless. On CUDA
the section runs with cuDNN's deterministic algorithms, so that two runs of a cell can be
compared exactly; the ops torch reports as nondeterministic are listed in the summary.
"""
from __future__ import annotations

import contextlib
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch

from bench import catalog
from bench.accept.budgets import Budget
from bench.accept.probes import CellProbe, EvalPass, Failure, Interrupted, watch_evaluations
from bench.config import RunConfig
from bench.console import first_line, progress_bar
from bench.exec.cell import RunOptions, cell_memory_format, run_cell
from bench.masks import MASK_BUFFER
from bench.registry import UsageError
from bench.store import ResultStore, safe_torch_load
from bench.train.precision import resolve_precision

MASK_SUFFIX = "." + MASK_BUFFER


@dataclass
class MethodResult:
    method: str
    config: RunConfig | None = None
    failures: list[str] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.failures

    def add(self, failures: Sequence[Failure], prefix: str = "") -> None:
        self.failures += [f.line(self.method).replace("] ", f"] {prefix}", 1) for f in failures]

    def fail(self, phase: str, check: str, message: str) -> None:
        self.add([Failure(phase, check, message)])

    def row(self) -> dict[str, Any]:
        cfg = self.config
        return {"method": self.method, "pass": self.passed, "failures": self.failures,
                "model": cfg.model if cfg else None, "teacher": cfg.teacher if cfg else None,
                "sparsity": cfg.sparsity if cfg else None, "seconds": round(self.seconds, 2),
                **self.notes}

    def line(self) -> str:
        if not self.passed:
            return "\n".join(self.failures)
        n = self.notes
        resume = (f"interrupted at {n['interrupted_at']}, resumed: equal" if n.get("interrupted_at")
                  else "resume not checked (no training epoch)")
        return (f"PASS {self.method}: {self.config.model} s={self.config.sparsity:g}, test acc "
                f"{n['test_acc']:.3f}, trained {n['precision']} {n['memory_format']}, "
                f"{n['eval_passes']} fp32 evaluation passes; {resume} ({self.seconds:.1f} s)")


def choose_config(name: str, budget: Budget) -> RunConfig:
    """The method's cell: the first (model, teacher) of the budget and its sparsity (else 0, for
    dense) that the method's precheck accepts; UsageError with the first reason otherwise."""
    method = catalog.METHODS.get(name)
    reasons = []
    for model, teacher in budget.models:
        for sparsity in dict.fromkeys((budget.sparsity, 0.0)):
            try:
                cfg = RunConfig(method=name, dataset="cifar10", model=model, teacher=teacher,
                                sparsity=sparsity, batch_size=budget.batch_size,
                                **budget.epoch_fields())
            except UsageError as exc:
                reasons.append(str(exc))
                continue
            problem = method.precheck(cfg) if method.precheck else None
            if not problem:
                return cfg
            reasons.append(problem)
    raise UsageError(f"no cell of {name} at these budgets passes its precheck: {reasons[0]}")


def check_method(name: str, budget: Budget, root: Path, options: RunOptions) -> MethodResult:
    result = MethodResult(name)
    t0 = time.perf_counter()
    probe: CellProbe | None = None
    try:
        cfg = result.config = choose_config(name, budget)
        device = torch.device(options.device)
        layout = cell_memory_format(cfg, device)
        probe = CellProbe(device, layout == "channels_last")
        passes: list[EvalPass] = []
        with watch_evaluations(passes):
            run_cell(cfg, ResultStore(root / "whole"), options, observers=[probe])
        result.add(probe.failures)
        record = _check_record(result, ResultStore(root / "whole"), cfg, probe.phase, device)
        if record is not None:  # a failed cell never reached its evaluation
            _check_evaluations(result, passes)
        result.notes.update(training_logits=probe.logits_dtypes, eval_passes=len(passes))
        if record is not None and result.passed:
            _check_resume(result, cfg, root, options, probe, record, layout == "channels_last")
    except Exception as exc:  # the next method runs regardless
        result.fail(probe.phase if probe else "setup", "error",
                    f"{type(exc).__name__}: {first_line(exc)}")
    result.seconds = time.perf_counter() - t0
    return result


def _check_record(result: MethodResult, store: ResultStore, cfg: RunConfig, phase: str,
                  device: torch.device) -> dict | None:
    record = store.read(cfg.id)  # validates the seal
    if record is None:
        result.fail(phase, "record", "no record was written")
        return None
    if record["status"] != "ok":
        error = record.get("error") or {}
        result.fail(phase, "record", f"status {record['status']}: {error.get('type')}: "
                                     f"{first_line(error.get('message'))}")
        return None
    want = {"precision": resolve_precision("auto", device),
            "memory_format": cell_memory_format(cfg, device)}
    for key, value in want.items():
        if record.get(key) != value:
            result.fail("record", "defaults", f"{key} {record.get(key)!r}; the harness resolves "
                                              f"{value!r} on {device}")
    result.notes.update(test_acc=record["accuracy"]["test"], precision=record.get("precision"),
                        memory_format=record.get("memory_format"),
                        phases=record.get("phase_order", []))
    state = _saved_state(store, cfg)
    for key, mask in state.items():
        if key.endswith(MASK_SUFFIX):
            weight = state[key[:-len(MASK_SUFFIX)] + ".weight"]
            alive = int(torch.count_nonzero(weight.masked_fill(mask.bool(), 0)))
            if alive:
                result.fail("final", "mask", f"{alive} pruned weight(s) nonzero in the saved "
                                             f"model ({key[:-len(MASK_SUFFIX)]})")
    return record


def _check_evaluations(result: MethodResult, passes: list[EvalPass]) -> None:
    if not any(p.kind == "logits" for p in passes):
        result.fail("evaluate", "fp32 eval", "no test evaluation pass was seen")
    for p in passes:
        problem = p.problem()
        if problem:
            phase = "evaluate" if p.kind == "logits" else "validation"
            result.fail(phase, "fp32 eval", f"Trainer.{p.kind}: {problem}")
            return


def _check_resume(result: MethodResult, cfg: RunConfig, root: Path, options: RunOptions,
                  probe: CellProbe, whole: dict, channels_last: bool) -> None:
    """Interrupt the cell in a fresh store where the probe saw its last mid-phase epoch start,
    check no record was written, run it again: it must resume and end exactly where the
    uninterrupted run did."""
    point = probe.kill_point()
    if point is None:
        return
    phase, epoch, epochs = point
    device = torch.device(options.device)
    store = ResultStore(root / "resumed")
    killer = CellProbe(device, channels_last, kill_at=(phase, epoch))
    try:
        run_cell(cfg, store, options, observers=[killer])
        result.fail(phase, "resume", f"the run was never interrupted (epoch {epoch + 1} of "
                                     f"{phase} did not start)")
        return
    except Interrupted:
        pass
    where = f"epoch {epoch + 1}/{epochs} of {phase}"
    result.notes["interrupted_at"] = where
    if store.read(cfg.id) is not None:
        result.fail(phase, "resume", f"the run interrupted at {where} wrote a record")
    again = CellProbe(device, channels_last)
    resumed = run_cell(cfg, store, options, observers=[again])
    result.add(again.failures, prefix="resumed run: ")
    if resumed["status"] != "ok":
        error = (resumed.get("error") or {}).get("message")
        result.fail(again.phase, "resume", f"the resumed run failed: {first_line(error)}")
        return
    mine, theirs = resumed["accuracy"]["test"], whole["accuracy"]["test"]
    if mine != theirs:
        result.fail(phase, "resume", f"test acc {mine!r} after resuming, {theirs!r} uninterrupted")
    states = [_saved_state(s, cfg) for s in (store, ResultStore(root / "whole"))]
    for what, keep in (("mask differs", lambda k: k.endswith(MASK_SUFFIX)),
                       ("weights differ", lambda k: not k.endswith(MASK_SUFFIX))):
        a, b = ({k: v for k, v in state.items() if keep(k)} for state in states)
        differ = sorted(k for k in a.keys() | b.keys()
                        if k not in a or k not in b or not torch.equal(a[k], b[k]))
        if differ:
            hint = " (nondeterministic ops: see summary.json)" if device.type == "cuda" else ""
            result.fail(phase, "resume", f"the {what} from the uninterrupted run's in "
                                         f"{len(differ)} tensor(s) ({differ[0]}){hint}")
    continued = resumed["phases"].get(phase, {}).get("resumed_from_epoch")
    if epoch >= 1 and continued is not None and continued != epoch:
        result.fail(phase, "resume", f"the phase started again from epoch {continued}, not "
                                     f"from its checkpoint after epoch {epoch}")


def _saved_state(store: ResultStore, cfg: RunConfig) -> dict[str, torch.Tensor]:
    return safe_torch_load(store.checkpoint_path(cfg.id))["state_dict"]


@contextlib.contextmanager
def comparable_runs(device: torch.device, notes: dict[str, Any]) -> Iterator[None]:
    """On CUDA, cuDNN's deterministic algorithms and torch's deterministic mode (warning, not
    failing, on ops without one, which go to `notes`), so that a resumed cell can equal an
    uninterrupted one bit for bit. The CPU's kernels are deterministic already."""
    if device.type != "cuda":
        yield
        return
    saved = (torch.backends.cudnn.deterministic, torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled())
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    finally:
        torch.backends.cudnn.deterministic = saved[0]
        torch.use_deterministic_algorithms(saved[1], warn_only=saved[2])
    notes["nondeterministic_ops"] = sorted({first_line(w.message)[:160] for w in caught
                                            if "deterministic" in str(w.message)})
    others = {(str(w.message), w.category, w.filename, w.lineno): w for w in caught
              if "deterministic" not in str(w.message)}
    for w in others.values():  # the rest as they would have been shown, once each
        warnings.showwarning(w.message, w.category, w.filename, w.lineno)


def run_methods(names: Sequence[str], budget: Budget, root: Path, options: RunOptions,
                done: Callable[[MethodResult], None], progress: bool, notes: dict[str, Any]
                ) -> list[MethodResult]:
    """Check each method in turn (in its own folder under `root`), handing each result to `done`
    as it ends (so an interrupted run still reports the methods that finished)."""
    results: list[MethodResult] = []
    bar = progress_bar(names, desc="methods", unit="method", leave=False) if progress else names
    with comparable_runs(torch.device(options.device), notes):
        for name in bar:
            if hasattr(bar, "set_postfix_str"):
                bar.set_postfix_str(name)
            results.append(check_method(name, budget, root / name, options))
            done(results[-1])
    return results
