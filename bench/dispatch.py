"""Executing cells: in this process (the default), and (see bench/slurm.py) through submitit."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Sequence

from filelock import FileLock, Timeout

from bench.cell import RunOptions, run_cell
from bench.config import RunConfig
from bench.store import ResultStore


@dataclass
class Outcome:
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already done
    busy: list[str] = field(default_factory=list)  # another process holds the cell
    failed: list[str] = field(default_factory=list)


def pending(cells: Sequence[RunConfig], store: ResultStore, force: bool) -> list[RunConfig]:
    return list(cells) if force else [c for c in cells if not store.is_done(c.id)]


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
        record = run_cell(cfg, store, options)
    finally:
        lock.release()
    (outcome.ran if record["status"] == "ok" else outcome.failed).append(cfg.id)
    return record


def run_inprocess(cells: Sequence[RunConfig], store: ResultStore, options: RunOptions,
                  force: bool = False) -> Outcome:
    outcome = Outcome()
    todo = pending(cells, store, force)
    outcome.skipped.extend(c.id for c in cells if c not in todo)
    bar = _bar(todo, options.progress)
    for cfg in bar:
        if hasattr(bar, "set_description"):
            bar.set_description(f"{cfg.label} {cfg.dataset} s={cfg.sparsity:g} seed={cfg.seed}")
        record = run_one_locked(cfg, store, options, force, outcome)
        if record is not None and record["status"] == "failed":
            print(f"cell {cfg.id} ({cfg.label}, s={cfg.sparsity:g}) failed: "
                  f"{record['error']['type']}: {record['error']['message'].splitlines()[0]}",
                  file=sys.stderr)
    return outcome


def _bar(items, enabled: bool):
    if not enabled or not items:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc="cells", unit="cell", dynamic_ncols=True)
