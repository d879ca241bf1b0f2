"""The identity of every phase cells share through the cache: its kind and key, defined once.

The cell computes a shared phase under this identity (bench/exec/context.py: CellContext.teacher,
dense_model, cached_phase), the GPU-hour estimate counts it once per identity
(bench/plan/estimate.py), and the Slurm plan makes one job of it (bench/slurm/plan.py, through the
estimate's phases). So the estimate and the plan count a phase once exactly where the harness runs
it once. A method's own shared phases (tg-student, colt-round, egp-round) are named in its module
and keyed with the same `shared`."""
from __future__ import annotations

import json
from typing import Any, Mapping, NamedTuple

from bench.config import CHECKPOINT_MODELS, RunConfig


class SharedPhase(NamedTuple):
    """A phase every cell with the same recipe shares: the cache's kind and key, the phase's
    name in records, the estimate and the plan, and the config field of the user's checkpoint
    it is read from (None: trained)."""

    kind: str
    key: dict[str, Any]
    name: str
    checkpoint: str | None = None


def teacher(cfg: RunConfig) -> SharedPhase:
    """The dense teacher: trained once per recipe, or read from `teacher_checkpoint`."""
    if cfg.teacher_checkpoint is not None:
        return _loaded(cfg, "teacher_checkpoint", "teacher")
    return SharedPhase("teacher", {"model": cfg.teacher, "epochs": cfg.teacher_epochs}, "teacher")


def dense(cfg: RunConfig) -> SharedPhase:
    """The dense network trained with CE (magnitude, random, EGP), or read from
    `dense_checkpoint`."""
    if cfg.dense_checkpoint is not None:
        return _loaded(cfg, "dense_checkpoint", "dense")
    key = {"model": cfg.model, "epochs": cfg.dense_epochs, **snapshot_key(cfg)}
    return SharedPhase("dense-ce", key, "dense")


def snapshot_key(cfg: RunConfig) -> dict[str, Any]:
    """A dense phase that keeps rewind points is another entry (its payload holds them)."""
    return {"snapshots": list(cfg.snapshot_epochs)} if cfg.snapshot_epochs else {}


def _loaded(cfg: RunConfig, field: str, name: str) -> SharedPhase:
    """A model read from the user's checkpoint and measured once, keyed by its architecture
    (its content hash is in cache_fields)."""
    return SharedPhase(f"{name}-loaded", {"model": getattr(cfg, CHECKPOINT_MODELS[field])}, name,
                       field)


def cache_fields(cfg: RunConfig) -> dict[str, Any]:
    """The training recipe every cached phase depends on. At run time the cache adds the data's
    content fingerprint and a non-fp32 precision (CellContext.cached_phase)."""
    out: dict[str, Any] = {"dataset": cfg.dataset, "seed": cfg.seed,
                           "batch_size": cfg.batch_size, "lr": cfg.lr, "momentum": cfg.momentum,
                           "weight_decay": cfg.weight_decay, "schedule": cfg.schedule}
    if cfg.milestones:  # empty keeps the keys entries had before the field existed
        out["milestones"] = list(cfg.milestones)
        # milestones are in epochs of the dense phase and every other phase drops at the same
        # fractions (Phase.from_config), so the dense length moves a teacher's or a round's drops
        out["milestone_base"] = cfg.dense_epochs
    for name in CHECKPOINT_MODELS:
        # A loaded model is its own key: nothing downstream of it mixes with trained ones.
        if getattr(cfg, name) is not None:
            out[name] = getattr(cfg, name + "_sha256")
    return out


def shared(cfg: RunConfig, kind: str, key: Mapping[str, Any]) -> tuple:
    """The plan's identity of a cached phase (the estimate's and the Slurm plan's, also stored in
    the cache entry as its plan key): the fields the cache keys it by at run time, with the
    dataset's name and training fraction standing in for its content fingerprint."""
    return (kind, json.dumps({**cache_fields(cfg), "train_fraction": cfg.train_fraction, **key},
                             sort_keys=True, default=str))
