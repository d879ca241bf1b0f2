"""Running one cell: `run_cell` (the whole cell, its record written ok or failed) and `prefetch`
(its shared phases only, for a Slurm phase job), both through the CellContext of
bench/exec/context.py. Provenance and peak memory live in bench/exec/provenance.py."""
from __future__ import annotations

import random
import shutil
import time
import traceback
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from filelock import FileLock, Timeout

from bench import catalog
from bench.config import CHECKPOINT_FIELDS, RunConfig
from bench.data import DataBundle, load_dataset, train_subset
from bench.exec.context import CellContext, PhaseReached
from bench.exec.provenance import peak_memory, provenance
from bench.masks import prepare_for_state_dict, restrict_prunable, verify_mask
from bench.method import UnreachableTarget
from bench.store import ResultStore, StorageFull, atomic_torch_save, safe_torch_load
from bench.store.cache import PhaseCache
from bench.train.flops import cost_accounting
from bench.train.metrics import evaluation_metrics
from bench.train.metrics_log import for_cell
from bench.train.models import build_model, cpu_state
from bench.train.precision import resolve_memory_format, resolve_precision
from bench.train.trainer import Hook, Trainer


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


def cached_dataset(name: str, data_root: str | Path | None, download: bool,
                   train_fraction: float = 1.0) -> DataBundle:
    """The process's one copy of a dataset (and of each training subset of it), however a caller
    spells the same request: bench.run's preflight and the cells it then runs in-process share
    it. (An lru_cache on this signature kept two: f(a, b, c) and f(a, b, c, 1.0) are two keys, and
    a TinyImageNet cell held its 1.4 GB of splits twice.)"""
    root = str(Path(data_root).expanduser().resolve()) if data_root else None
    return _dataset(name, root, bool(download), float(train_fraction))


@lru_cache(maxsize=4)
def _dataset(name: str, root: str | None, download: bool, train_fraction: float) -> DataBundle:
    if train_fraction < 1.0:
        return train_subset(_dataset(name, root, download, 1.0), train_fraction)
    return load_dataset(name, root, download)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    np.random.seed(seed)


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
        clear_work_unless_running(store, config.id)
    return "the method ended"


def clear_work_unless_running(store: ResultStore, cell_id: str) -> None:
    """Remove a cell's work folder so that its own work starts afresh, unless the cell itself
    runs right now elsewhere (its lock is held): that folder holds its epoch checkpoints."""
    lock_path = store.lock_path(cell_id)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return
    try:
        shutil.rmtree(store.work_dir(cell_id), ignore_errors=True)
    finally:
        lock.release()


def run_cell(config: RunConfig, store: ResultStore, options: RunOptions = RunOptions(),
             observers: Sequence[Hook] = ()) -> dict:
    """Run one cell and write its record (ok or failed). Returns the record. `observers`: hooks
    added to every fit of the cell after its metrics log (how `python -m bench.accept` checks the
    masks after every epoch and interrupts a cell to test its resume); they never change a result."""
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
        ctx = make_context(config, store, options, device,
                           observers=(metrics_log, *observers))
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
            atomic_torch_save({"config": config.to_dict(), "state_dict": cpu_state(model),
                               "model": ctx.extra.get("model_built", config.model)}, path)
            _verify_checkpoint(path, ctx)
        sparsity = report.as_record(config.sparsity, ctx.accounting)
        sparsity["prunable_set"] = config.prunable  # which layers could be pruned and counted
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
    path = store.lock_path(config.id)
    path.parent.mkdir(parents=True, exist_ok=True)
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
    restrict_prunable(model, ctx.config.prunable)
    prepare_for_state_dict(model, blob["state_dict"])
    model.load_state_dict(blob["state_dict"])
    verify_mask(model, ctx.expected_sparsity, ctx.accounting)
