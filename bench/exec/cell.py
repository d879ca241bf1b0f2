"""Running one cell: the context a method works in, and the record that comes out of it.

About 420 lines, kept together: CellContext is the one interface methods see (models, training,
cached phases, loaded checkpoints), and run_cell / prefetch are the two ways a cell runs through
it (a whole cell, or its shared phases only for a Slurm phase job). Provenance and peak memory
live in bench/exec/provenance.py."""
from __future__ import annotations

import contextlib
import random
import shutil
import time
import traceback
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch
from torch import nn

from bench import catalog
from bench.store.cache import CacheEntry, PhaseCache
from bench.config import CHECKPOINT_FIELDS, RunConfig
from bench.data import DataBundle, dataset_fingerprint, load_dataset, train_subset
from bench.data.loader import IndexSampler
from bench.train.flops import cost_accounting
from bench.masks import Accounting, prepare_for_state_dict, prune_model, verify_mask
from bench.train.metrics import evaluation_metrics
from bench.train.metrics_log import for_cell, shared_phase
from bench.method import UnreachableTarget
from bench.train.models import build_model
from bench.plan import phase_keys
from bench.train.precision import resolve_memory_format, resolve_precision
from bench.exec.provenance import peak_memory, provenance
from bench.registry import UsageError
from bench.store import ResultStore, StorageFull, atomic_torch_save, safe_torch_load
from bench.train.trainer import Hook, Objective, Phase, PhaseResult, Trainer, ce_objective


@dataclass(frozen=True)
class RunOptions:
    """How to run (not what): these never change a result, so they are not in the cell id."""

    device: str = "cpu"
    data_root: str | None = None
    download: bool = False
    progress: bool = True
    compile: bool = False
    save_checkpoints: bool = True
    # Iterative methods share their round prefixes across sparsities through the cache
    # (bench/method/rounds.py: shared_round). Off, every cell computes its own; the results are the same.
    share: bool = True
    tensorboard: str | None = None  # a folder: event files per cell and phase (bench/train/metrics_log.py)


@dataclass
class CellContext:
    """Everything a method needs. Methods call these; the bookkeeping stays here."""

    config: RunConfig
    data: DataBundle
    trainer: Trainer
    cache: PhaseCache
    work_dir: Path
    phases: dict[str, dict[str, Any]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # method-specific record fields
    expected_sparsity: float | None = None  # None: the method reports what it reached
    accounting: Accounting = Accounting()  # the weights the target is counted over
    loaded: set[str] = field(default_factory=set)  # checkpoint fields the method used
    share: bool = True  # RunOptions.share
    stop_after: tuple | None = None  # prefetch(): the shared phase to stop after
    lock_wait: float = 0.0  # seconds blocked on cache locks (another job computing the phase)
    # other_cell(config) -> that cell's ok record from the same store, run first (under its lock,
    # with the same RunOptions) if it is missing: how a control reads another method's mask at the
    # same coordinates (random:match=...). None outside run_cell.
    other_cell: Callable[[RunConfig], dict] | None = None
    # a dense stand-in (small-dense) sets the prunable weight count of the full-width model it is
    # compared with; its record's sparsity is then counted against that (over = "width")
    dense_reference: int | None = None

    @property
    def options(self) -> dict[str, Any]:
        return self.config.option_dict

    @property
    def temperature(self) -> float:
        return self.config.resolved_temperature()

    # -- models ------------------------------------------------------------------------------------
    def make_model(self, name: str | None = None, *, seed_offset: int = 0,
                   num_classes: int | None = None) -> nn.Module:
        """A freshly initialised model, seeded by the cell's seed (plus an offset per role)."""
        spec = self.data.spec
        with _seeded(self.config.seed * 1000 + seed_offset):
            model = build_model(name or self.config.model, num_classes or spec.num_classes,
                                spec.channels, spec.image_size)
        return self.trainer.prepare(model)

    def phase(self, name: str, epochs: int, **overrides: Any) -> Phase:
        return Phase.from_config(name, epochs, self.config, **overrides)

    # -- training and timing -----------------------------------------------------------------------
    def train(self, model: nn.Module, phase: Phase, objective: Objective = ce_objective,
              hooks: Iterable[Hook] = (), *, sampler: IndexSampler | None = None,
              record_as: str | None = None) -> PhaseResult:
        """Train through the one trainer, resumable per epoch, and record the phase."""
        name = record_as or phase.name
        if self.stop_after is not None:
            raise PhaseReached(f"stopped before the cell's own training ({name})")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        result = self.trainer.fit(model, phase, objective, hooks, sampler=sampler,
                                  checkpoint=self.work_dir / f"{name}.pt")
        self.phases[name] = {**result.as_record(), "cached": False, "shared": False}
        return result

    @contextlib.contextmanager
    def clock(self, name: str, shared: bool = False) -> Iterator[dict[str, Any]]:
        """Time a step that is not a training phase (scoring, pruning)."""
        entry: dict[str, Any] = {"epochs": 0, "cached": False, "shared": shared}
        self.trainer.sync()
        t0 = time.perf_counter()
        yield entry
        self.trainer.sync()
        entry["seconds"] = entry.get("seconds", 0.0) + time.perf_counter() - t0
        self.phases[name] = {**self.phases.get(name, {}), **entry}

    def cached_phase(self, kind: str, key: dict[str, Any],
                     compute: Callable[[Path], tuple[dict[str, Any], dict[str, Any]]]
                     ) -> CacheEntry:
        """Run `compute(scratch)` once per key across cells and processes. It returns
        (payload, meta), where meta["phases"] holds the records of the phases it ran; they are
        copied into this cell's record, marked shared and, on a hit, cached. Pass
        `checkpoint=scratch / "<phase>.pt"` to its training so a killed run resumes."""
        full_key = {**phase_keys.cache_fields(self.config), "data": dataset_fingerprint(self.data), **key}
        if self.trainer.precision != "fp32":  # fp32 phases keep the keys they had before
            full_key["precision"] = self.trainer.precision
        plan_key = phase_keys.shared(self.config, kind, key)

        def tagged(scratch: Path) -> tuple[dict[str, Any], dict[str, Any]]:
            payload, meta = compute(scratch)  # the Slurm plan finds the entry by this key
            return payload, {**meta, "plan_key": list(plan_key)}

        with shared_phase(kind):  # its epochs go to this cell's metrics file, marked shared
            entry = self.cache.get_or_compute(kind, full_key, tagged)
        self.lock_wait += entry.waited
        for name, rec in entry.meta.get("phases", {}).items():
            self.phases[name] = {**rec, "cached": entry.hit, "shared": True, "cache_key": entry.key_hash}
        if self.stop_after is not None:
            if plan_key == self.stop_after:
                raise PhaseReached(f"{kind} {'read from' if entry.hit else 'computed into'} "
                                   "the cache")
        return entry

    # -- shared phases used by several methods -----------------------------------------------------
    def teacher(self) -> nn.Module:
        """The dense teacher, trained once per (dataset, teacher model, seed, budget)."""
        cfg = self.config
        shared = phase_keys.teacher(cfg)

        def compute(scratch: Path):
            model = self.make_model(cfg.teacher, seed_offset=1)
            result = self.trainer.fit(model, self.phase("teacher", cfg.teacher_epochs),
                                      checkpoint=scratch / "teacher.pt")
            acc = self.trainer.accuracy(model, self.data.test)
            return ({"state_dict": _cpu_state(model)},
                    {"test_acc": acc, "phases": {"teacher": {**result.as_record()}}})

        if shared.checkpoint is not None:
            entry = self._loaded(shared, seed_offset=1)
        else:
            entry = self.cached_phase(shared.kind, shared.key, compute)
        model = self.make_model(cfg.teacher, seed_offset=1)
        model.load_state_dict(entry.payload["state_dict"])
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        self.extra["teacher"] = {"model": cfg.teacher, "test_acc": entry.meta["test_acc"],
                                 "seconds": entry.meta["phases"]["teacher"]["seconds"],
                                 "epochs": entry.meta["phases"]["teacher"]["epochs"],
                                 "cached": entry.hit, **entry.meta.get("checkpoint", {})}
        return model

    def _loaded(self, shared: phase_keys.SharedPhase, seed_offset: int = 0) -> CacheEntry:
        """A model from the user's checkpoint, with its test accuracy measured once; recorded
        like a phase of 0 epochs, so reports show where a teacher or dense model came from."""
        name, arch = shared.checkpoint, shared.key["model"]
        path, digest = getattr(self.config, name), getattr(self.config, name + "_sha256")

        def compute(scratch: Path):
            from bench.exec.checkpoints import load_into
            from bench.config import checkpoint_sha256

            if checkpoint_sha256(path) != digest:
                raise UsageError(f"{name}={path!r} changed since this cell was configured "
                                 f"(sha256 {digest[:12]}...); configure the cell again")
            model = self.make_model(arch, seed_offset=seed_offset)
            load_into(model, path, name)
            acc = self.trainer.accuracy(model, self.data.test)
            return ({"state_dict": _cpu_state(model)},
                    {"test_acc": acc, "checkpoint": {"checkpoint": str(path), "sha256": digest},
                     "phases": {shared.name: {"epochs": 0, "seconds": 0.0, "loaded": True}}})

        entry = self.cached_phase(shared.kind, shared.key, compute)
        self.loaded.add(name)
        return entry

    def dense_model(self) -> nn.Module:
        """The dense network trained with CE, shared by every sparsity (magnitude, random)."""
        cfg = self.config
        shared = phase_keys.dense(cfg)
        if shared.checkpoint is not None:
            entry = self._loaded(shared)
            model = self.make_model()
            model.load_state_dict(entry.payload["state_dict"])
            self.extra["dense_test_acc"] = entry.meta["test_acc"]
            self.extra["dense_checkpoint"] = entry.meta["checkpoint"]
            return model

        def compute(scratch: Path):
            model = self.make_model()
            result = self.trainer.fit(model, self.phase("dense", cfg.dense_epochs),
                                      checkpoint=scratch / "dense.pt")
            return ({"state_dict": _cpu_state(model)},
                    {"dense_test_acc": self.trainer.accuracy(model, self.data.test),
                     "phases": {"dense": result.as_record()}})

        entry = self.cached_phase(shared.kind, shared.key, compute)
        model = self.make_model()
        model.load_state_dict(entry.payload["state_dict"])
        self.extra["dense_test_acc"] = entry.meta["dense_test_acc"]
        return model

    def prune(self, model: nn.Module, scores: dict[str, torch.Tensor],
              sparsity: float | None = None) -> None:
        """Global top-k on `scores` to the exact count, then attach the mask to `model`. Scores
        are keyed by module name ('conv1') or parameter name ('conv1.weight')."""
        s = self.config.sparsity if sparsity is None else sparsity
        guarded = prune_model(model, scores, s)
        if guarded:
            self.extra.setdefault("guarded_layers", []).extend(guarded)


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    state = torch.get_rng_state()
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.set_rng_state(state)


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


@lru_cache(maxsize=4)
def cached_dataset(name: str, data_root: str | None, download: bool,
                   train_fraction: float = 1.0) -> DataBundle:
    if train_fraction < 1.0:
        return train_subset(cached_dataset(name, data_root, download), train_fraction)
    return load_dataset(name, data_root, download)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:
        pass


def cell_memory_format(config: RunConfig, device: torch.device) -> str:
    # small-dense builds a narrow resnet ("/w"), which runs contiguous on the CPU (precision.py)
    return resolve_memory_format(device, config.model + ("/w" if config.method == "small-dense"
                                                          else ""))


def make_context(config: RunConfig, store: ResultStore, options: RunOptions,
                 device: torch.device, observers: Sequence[Hook] = ()) -> CellContext:
    data = cached_dataset(config.dataset, options.data_root, options.download,
                          config.train_fraction)
    trainer = Trainer(data, device, seed=config.seed, compile=options.compile,
                      progress=options.progress, precision=resolve_precision(config.precision, device),
                      memory_format=cell_memory_format(config, device), observers=observers)
    return CellContext(config, data, trainer, PhaseCache(store.cache_dir),
                       store.work_dir(config.id), expected_sparsity=config.sparsity,
                       share=options.share)


class PhaseReached(Exception):
    """A prefetch reached the phase it was asked for (or the cell's own work): it stops."""


def prefetch(config: RunConfig, store: ResultStore, options: RunOptions, stop: tuple) -> str:
    """Run `config`'s method only as far as its shared phases go: until the cached phase whose
    estimate key (bench.plan.estimate.shared) is `stop` is in the cache, or until the method starts
    training for the cell itself. Writes no record (the cell runs later, as a job of its own,
    and finds the phases cached). Returns how it stopped. Errors propagate: a phase job fails."""
    method = catalog.METHODS.get(config.method)
    seed_everything(config.seed)
    ctx = make_context(config, store, options, torch.device(options.device))
    ctx.stop_after = stop
    try:
        method.run(ctx)
    except PhaseReached as reached:
        return str(reached)
    finally:
        shutil.rmtree(ctx.work_dir, ignore_errors=True)  # the cell's own work starts afresh
    return "the method ended"


def run_cell(config: RunConfig, store: ResultStore, options: RunOptions = RunOptions()) -> dict:
    """Run one cell and write its record (ok or failed). Returns the record."""
    method = catalog.METHODS.get(config.method)
    seed_everything(config.seed)
    started = time.time()
    t0 = time.perf_counter()
    device = torch.device(options.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    ctx: CellContext | None = None
    metrics_log = for_cell(config, store.work_dir(config.id), options.tensorboard)
    record: dict[str, Any] = {"id": config.id, "label": config.label, "config": config.to_dict(),
                              "temperature": config.resolved_temperature(),
                              "precision": resolve_precision(config.precision, device),
                              "memory_format": cell_memory_format(config, device)}
    try:
        problem = method.precheck(config) if method.precheck else None
        if problem:
            raise UnreachableTarget(problem)
        metrics_log.cell_started()
        ctx = make_context(config, store, options, device, observers=(metrics_log,))
        ctx.other_cell = lambda other: other_cell_record(other, store, options)
        data, trainer = ctx.data, ctx.trainer
        record["data"] = {"train": len(data.train), "val": len(data.val), "test": len(data.test),
                          "train_fraction": config.train_fraction}
        model = method.run(ctx)
        unused = [f for f in CHECKPOINT_FIELDS
                  if getattr(config, f) is not None and f not in ctx.loaded]
        if unused:  # the result is right, but the user should know the file did nothing
            ctx.extra["unused_checkpoints"] = unused
        report = verify_mask(model, ctx.expected_sparsity, ctx.accounting)
        with ctx.clock("evaluate"):  # one pass: top-1, top-5, ECE and NLL from the same logits
            metrics = evaluation_metrics(trainer.logits(model, data.test), data.test.labels)
        if options.save_checkpoints:
            path = store.checkpoint_path(config.id)
            # "model": the architecture built, where a method builds another (small-dense)
            atomic_torch_save({"config": config.to_dict(), "state_dict": _cpu_state(model),
                               "model": ctx.extra.get("model_built", config.model)}, path)
            _verify_checkpoint(path, ctx)
        sparsity = report.as_record(config.sparsity, ctx.accounting)
        if ctx.dense_reference:
            sparsity.update(prunable=1.0 - report.prunable_kept / ctx.dense_reference,
                            over="width", reference_total=ctx.dense_reference)
        record.update(status="ok", accuracy={
            "test": metrics.top1, "top5": metrics.top5, "ece": metrics.ece, "nll": metrics.nll,
            "val_history": {n: p.get("val_acc", []) for n, p in ctx.phases.items()
                            if p.get("val_acc")}},
            sparsity=sparsity,
            compute=cost_accounting(model, data.spec.channels, data.spec.image_size))
    except StorageFull:
        raise  # a full disk stops the run (one line from bench.cli.guards), it fails no cell
    except Exception as exc:  # the record says why; the grid goes on
        record.update(status="failed", error={"type": type(exc).__name__, "message": str(exc),
                                              "traceback": traceback.format_exc()})
    phases = ctx.phases if ctx else {}
    cell_seconds = sum(p.get("seconds", 0.0) for p in phases.values() if not p.get("shared"))
    shared_seconds = sum(p.get("seconds", 0.0) for p in phases.values() if p.get("shared"))
    record.update(
        phases=phases,
        phase_order=list(phases),  # the record's JSON sorts keys; keep the order they ran in
        extra=ctx.extra if ctx else {},
        cost={"seconds_cell": cell_seconds, "seconds_shared": shared_seconds,
              "seconds_total": cell_seconds + shared_seconds,
              "seconds_wall_this_run": time.perf_counter() - t0,
              # the allocation idle while another job computed a shared phase (issue 21)
              "seconds_lock_wait": ctx.lock_wait if ctx else 0.0},
        memory=peak_memory(device),
        provenance=provenance(device),
        started=time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
    )
    store.write(record)
    metrics_log.cell_ended(record["status"])
    if record["status"] == "ok":
        shutil.rmtree(store.work_dir(config.id), ignore_errors=True)
    return record


def other_cell_record(config: RunConfig, store: ResultStore, options: RunOptions) -> dict:
    """Another cell's ok record, running that cell first if the store lacks it. Its lock is held
    meanwhile, so a worker or job running it already is waited for, never duplicated. The global
    random state is restored afterwards, so the asking cell's own run does not depend on it."""
    from filelock import FileLock

    path = store.lock_path(config.id)
    path.parent.mkdir(parents=True, exist_ok=True)
    import numpy as np

    rng = torch.get_rng_state(), random.getstate(), np.random.get_state()
    with FileLock(str(path)):
        if not store.is_done(config.id):
            run_cell(config, store, options)
    torch.set_rng_state(rng[0])
    random.setstate(rng[1])
    np.random.set_state(rng[2])
    record = store.read(config.id)
    if not record or record.get("status") != "ok":
        error = (record or {}).get("error") or {}
        raise RuntimeError(f"cell {config.id} ({config.label}) did not finish: "
                           f"{error.get('message', 'no record')}")
    return record


def _verify_checkpoint(path: Path, ctx: CellContext) -> None:
    """Mask contract: after loading a checkpoint, the pruned weights are still zero."""
    blob = safe_torch_load(path)
    model = build_model(blob.get("model") or ctx.config.model, ctx.data.spec.num_classes,
                        ctx.data.spec.channels,
                        ctx.data.spec.image_size)
    prepare_for_state_dict(model, blob["state_dict"])
    model.load_state_dict(blob["state_dict"])
    verify_mask(model, ctx.expected_sparsity, ctx.accounting)
