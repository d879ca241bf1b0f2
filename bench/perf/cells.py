"""The bench.perf rows that run whole cells of the harness (in scratch stores, in this process or
a fresh one): the cache's saving over a five-sparsity grid, tg-oneshot against COLT at matched
round budgets, and the quick grid's peak memory."""
from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator, Sequence

from bench.config import RunConfig
from bench.exec.cell import RunOptions, run_cell
from bench.plan.grids import QUICK_BASE
from bench.store import ResultStore


# The paper grid's budgets (teacher 200, dense 160, retrain 50 epochs) divided by 10: the saving
# depends on how much of a cell's cost is sparsity-independent, so keep the paper's proportions.
CACHE_BUDGETS = {"teacher_epochs": 20, "dense_epochs": 16, "sparse_epochs": 5}


@contextlib.contextmanager
def _fresh_cells(device: str, warm_up: RunConfig) -> Iterator[Callable[[RunConfig, str], dict]]:
    """Yields run(config, store) -> record: runs a cell in a scratch results store of that name
    (so a new name means a cold phase cache), after `warm_up` has run once, so that the first
    timed cell does not pay for the first data load and kernel set-up. A failed cell raises:
    the seconds of a crash are no measurement."""
    options = RunOptions(device=device, progress=False, save_checkpoints=False)
    with tempfile.TemporaryDirectory() as tmp:
        def run(config: RunConfig, store: str) -> dict:
            record = run_cell(config, ResultStore(Path(tmp) / store), options)
            if record["status"] != "ok":
                raise RuntimeError(f"{record['label']} failed: {record['error']['message']}")
            return record

        run(warm_up, "warm-up")
        yield run


def cache_saving(device: str, retrains: Sequence[str] = ("kd",),
                 sparsities: Sequence[float] = (0.5, 0.75, 0.9, 0.95, 0.98)) -> tuple[float, float]:
    """A five-sparsity tg-oneshot grid on digits (one cell per sparsity and retraining row):
    one shared cache against a fresh cache per cell, both after the same warm-up."""
    budgets = {**QUICK_BASE, **CACHE_BUDGETS}
    cells = [RunConfig(method="tg-oneshot", sparsity=s, options=(("retrain", r),), **budgets)
             for r in retrains for s in sparsities]
    warm = RunConfig(method="tg-oneshot", sparsity=0.5, **{**budgets, "teacher_epochs": 1,
                                                            "dense_epochs": 1, "sparse_epochs": 1})
    with _fresh_cells(device, warm) as run:
        t0 = time.perf_counter()
        for c in cells:
            run(c, "shared")
        cached = time.perf_counter() - t0
        t0 = time.perf_counter()
        for i, c in enumerate(cells):
            run(c, f"alone{i}")
        recompute = time.perf_counter() - t0
    return recompute, cached


def colt_against_oneshot(device: str, sparsity: float = 0.977,
                         base: dict | None = None) -> dict[str, float]:
    """Seconds of COLT and of tg-oneshot (kd, the paper's full method) to `sparsity` on digits at
    the quick budgets, with every COLT round training as long as tg-oneshot's one retraining
    (round_epochs = sparse_epochs: matched per-round budgets, as the paper grid sets them).
    Returns COLT's total, tg-oneshot's total (teacher and dense student included), the same without
    the teacher (trained once per dataset and reported separately, docs/methods.md's fair-comparison
    rule), and tg-oneshot's own per-cell cost (what one more sparsity adds to a grid that shares
    the teacher and the dense student)."""
    base = QUICK_BASE if base is None else base
    budgets = {**base, "round_epochs": base["sparse_epochs"]}
    warm = RunConfig(method="magnitude", sparsity=0.5, **{**budgets, "dense_epochs": 1,
                                                           "sparse_epochs": 1})
    with _fresh_cells(device, warm) as run:
        colt = run(RunConfig(method="colt", sparsity=sparsity, **budgets), "colt")
        tg = run(RunConfig(method="tg-oneshot", sparsity=sparsity, **budgets), "tg")
    teacher = tg["phases"]["teacher"]["seconds"]
    return {"colt": colt["cost"]["seconds_total"], "tg_total": tg["cost"]["seconds_total"],
            "tg_without_teacher": tg["cost"]["seconds_total"] - teacher,
            "tg_cell": tg["cost"]["seconds_cell"],
            "colt_rounds": len(colt["extra"]["rounds"]),  # bench/method/rounds.py's per-round records
            "round_epochs": colt["config"]["round_epochs"],
            "sparse_epochs": tg["config"]["sparse_epochs"]}


def quick_grid_memory() -> float:
    """Peak RSS (GiB) of the quick grid run by `bench.run` in a fresh process, read by that
    process itself (RUSAGE_CHILDREN here would also count this process's DataLoader workers, and
    the child's own ru_maxrss would include this process's size at fork: see peak_rss_mb)."""
    code = ("import runpy, sys\n"
            "sys.argv = ['bench.run', '--results', sys.argv[1], '--no-progress']\n"
            "try:\n    runpy.run_module('bench.run', run_name='__main__')\n"
            "except SystemExit:\n    pass\n"
            "from bench.exec.provenance import peak_rss_mb\n"
            "print('peak_rss_mb', peak_rss_mb())")
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run([sys.executable, "-c", code, tmp], check=True, capture_output=True,
                             text=True).stdout
    return float(out.rsplit("peak_rss_mb", 1)[1].split()[0]) / 1024.0
