"""The context a method works in: CellContext implements bench.method.MethodContext, the one
interface methods see (models, training through the one trainer, timed steps, cached phases,
loaded checkpoints, pruning). The bookkeeping stays here: phase records, shared-phase identities
(bench/plan/phase_keys.py), the cache, lock waits and a prefetch's stop. How a cell runs through
it is bench/exec/cell.py."""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import torch
from torch import nn

from bench.config import RunConfig, checkpoint_sha256
from bench.data import DataBundle, DataError, dataset_fingerprint, dataset_sha256
from bench.data.loader import IndexSampler
from bench.exec.checkpoints import load_into
from bench.masks import Accounting, prune_model, restrict_prunable
from bench.method.retraining import snapshot_hooks, snapshot_payload
from bench.plan import phase_keys
from bench.registry import UsageError
from bench.store.cache import CacheEntry, PhaseCache
from bench.train.metrics_log import shared_phase
from bench.train.models import build_model, cpu_state
from bench.train.trainer import Hook, Objective, Phase, PhaseResult, Trainer, ce_objective


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
    # the weights the dense network handed out last had after each epoch of `snapshot_epochs`:
    # weight-rewind's rewind points (bench/method/retraining.py)
    rewind_points: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)

    @property
    def options(self) -> dict[str, Any]:
        return self.config.option_dict

    @property
    def temperature(self) -> float:
        return self.config.resolved_temperature()

    # -- models ------------------------------------------------------------------------------------
    def make_model(self, name: str | None = None, *, seed_offset: int = 0,
                   num_classes: int | None = None) -> nn.Module:
        """A freshly initialised model, seeded by the cell's seed (plus an offset per role), its
        prunable layers those of the config's `prunable`."""
        spec = self.data.spec
        with _seeded(self.config.seed * 1000 + seed_offset):
            model = build_model(name or self.config.model, num_classes or spec.num_classes,
                                spec.channels, spec.image_size)
        return self.trainer.prepare(restrict_prunable(model, self.config.prunable))

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

    @cached_property
    def data_sha256(self) -> str:
        """dataset_sha256 of the cell's data, computed the first time a cache entry needs it."""
        return dataset_sha256(self.data)

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
            return payload, {**meta, "plan_key": list(plan_key), "data_sha256": self.data_sha256}

        with shared_phase(kind):  # its epochs go to this cell's metrics file, marked shared
            entry = self.cache.get_or_compute(kind, full_key, tagged)
        # The key's fingerprint samples the images; the entry names all of them. (Entries
        # written before it did are taken on the fingerprint alone.)
        made_from = entry.meta.get("data_sha256")
        if entry.hit and made_from is not None and made_from != self.data_sha256:
            raise DataError(
                f"cache entry {kind}/{entry.key_hash} was computed from another copy of "
                f"{self.config.dataset} (the same sampled fingerprint, different images): use "
                f"another --results, or remove that entry from {self.cache.root}")
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
            return ({"state_dict": cpu_state(model)},
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
            if checkpoint_sha256(path) != digest:
                raise UsageError(f"{name}={path!r} changed since this cell was configured "
                                 f"(sha256 {digest[:12]}...); configure the cell again")
            model = self.make_model(arch, seed_offset=seed_offset)
            load_into(model, path, name)
            acc = self.trainer.accuracy(model, self.data.test)
            return ({"state_dict": cpu_state(model)},
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
            snapshots = snapshot_hooks(cfg)
            result = self.trainer.fit(model, self.phase("dense", cfg.dense_epochs), hooks=snapshots,
                                      checkpoint=scratch / "dense.pt")
            return ({"state_dict": cpu_state(model), **snapshot_payload(snapshots)},
                    {"dense_test_acc": self.trainer.accuracy(model, self.data.test),
                     "phases": {"dense": result.as_record()}})

        entry = self.cached_phase(shared.kind, shared.key, compute)
        self.rewind_points = entry.payload.get("snapshots", {})
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


class PhaseReached(Exception):
    """A prefetch reached the phase it was asked for (or the cell's own work): it stops."""
