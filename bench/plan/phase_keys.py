"""What identifies a shared phase: the fields the cache keys it by. One definition, used both by
the phases that run (bench/exec/cell.py, the methods) and by the GPU-hour estimate (bench/plan/estimate.py),
so the estimate counts a phase once exactly where the harness runs it once."""
from __future__ import annotations

from typing import Any

from bench.config import CHECKPOINT_FIELDS, RunConfig


def cache_fields(cfg: RunConfig) -> dict[str, Any]:
    """The training recipe every cached phase depends on. At run time the cache adds the data's
    content fingerprint and a non-fp32 precision (CellContext.cached_phase)."""
    out: dict[str, Any] = {"dataset": cfg.dataset, "seed": cfg.seed,
                           "batch_size": cfg.batch_size, "lr": cfg.lr, "momentum": cfg.momentum,
                           "weight_decay": cfg.weight_decay, "schedule": cfg.schedule}
    for name in CHECKPOINT_FIELDS:
        # A loaded model is its own key: nothing downstream of it mixes with trained ones.
        if getattr(cfg, name) is not None:
            out[name] = getattr(cfg, name + "_sha256")
    return out


def teacher_key(cfg: RunConfig) -> dict[str, Any]:
    return {"model": cfg.teacher, "epochs": cfg.teacher_epochs}


def dense_key(cfg: RunConfig) -> dict[str, Any]:
    return {"model": cfg.model, "epochs": cfg.dense_epochs}
