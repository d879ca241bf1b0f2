"""Running one cell under its file lock: the one path every executor takes (in this process, a
worker subprocess, a Slurm job), so concurrent runs of the same store never run a cell twice."""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from typing import Sequence

from filelock import FileLock, Timeout

from bench.exec.cell import RunOptions, run_cell
from bench.config import RunConfig
from bench.store import ResultStore


@dataclass
class Outcome:
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already done
    busy: list[str] = field(default_factory=list)  # another process holds the cell
    failed: list[str] = field(default_factory=list)


def pending(cells: Sequence[RunConfig], store: ResultStore, force: bool) -> list[RunConfig]:
    """The cells to run, those that copy another cell's mask (random:match=...) last, so the cell
    they read is normally done by then (otherwise they run it first, under its lock)."""
    todo = list(cells) if force else [c for c in cells if not store.is_done(c.id)]
    return sorted(todo, key=lambda c: any(k == "match" for k, _ in c.options))


def run_one_locked(cfg: RunConfig, store: ResultStore, options: RunOptions, force: bool,
                   outcome: Outcome, wait: float = 0.0) -> dict | None:
    """Run a cell unless it is done or another process is running it right now."""
    lock_path = store.lock_path(cfg.id)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_path))
    try:
        lock.acquire(timeout=wait)
    except Timeout:
        outcome.busy.append(cfg.id)
        return None
    try:
        if not force and store.is_done(cfg.id):  # finished by another process meanwhile
            outcome.skipped.append(cfg.id)
            return None
        if force and store.is_done(cfg.id):
            # a kill between the record and the clean-up leaves the finished run's last epoch
            # checkpoints behind: a forced rerun would resume them and train nothing
            shutil.rmtree(store.work_dir(cfg.id), ignore_errors=True)
        record = run_cell(cfg, store, options)
    finally:
        lock.release()
    (outcome.ran if record["status"] == "ok" else outcome.failed).append(cfg.id)
    return record
