"""`python -m bench.perf --only sharing`: COLT and EGP grids over five sparsities with their round
prefixes shared through the cache against every cell computing its own rounds (--no-share), in
this one process, and the dry run's estimate of the same ratio. See docs/performance.md."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

SPARSITIES = (0.5, 0.7, 0.8, 0.9, 0.95)
BUDGETS = {"round_epochs": 4, "sparse_epochs": 2}  # issue 19's setting, on the quick grid's base
TARGET = {"colt": 2.0, "egp": 1.4}


def grid_seconds(method: str, device: str, share: bool, folder: Path,
                 sparsities: Sequence[float] = SPARSITIES) -> float:
    """Wall-clock of one cell per sparsity, in order, in a fresh results store."""
    from bench.cell import RunOptions, run_cell
    from bench.config import RunConfig
    from bench.grids import QUICK_BASE
    from bench.store import ResultStore

    store = ResultStore(folder)
    options = RunOptions(device=device, progress=False, save_checkpoints=False, share=share)
    t0 = time.perf_counter()
    for s in sparsities:
        record = run_cell(RunConfig(method=method, sparsity=s, **{**QUICK_BASE, **BUDGETS}),
                          store, options)
        if record["status"] != "ok":
            raise RuntimeError(f"{record['label']} s={s} failed: {record['error']['message']}")
    return time.perf_counter() - t0


def estimated_ratio(method: str, sparsities: Sequence[float] = SPARSITIES) -> float:
    """The dry run's cost of the grid with --no-share over its cost with sharing."""
    from bench.config import RunConfig
    from bench.estimate import estimate_gpu_hours
    from bench.grids import QUICK_BASE

    cells = [RunConfig(method=method, sparsity=s, **{**QUICK_BASE, **BUDGETS}) for s in sparsities]
    return estimate_gpu_hours(cells, share=False) / estimate_gpu_hours(cells)


def sharing_rows(args, row: Callable[[str, str, str, str], None]) -> None:
    for method in ("colt", "egp"):
        with tempfile.TemporaryDirectory() as tmp:
            # warm-up (first data load, kernels), then shared and alone, one after the other
            grid_seconds(method, args.device, True, Path(tmp) / "warm", sparsities=(0.5,))
            shared = grid_seconds(method, args.device, True, Path(tmp) / "shared")
            alone = grid_seconds(method, args.device, False, Path(tmp) / "alone")
        est = estimated_ratio(method)
        measured = alone / shared
        row("sharing", f"{method}: {shared:.1f} s shared",
            f"{alone:.1f} s --no-share",
            f"{measured:.2f}x (target >= {TARGET[method]}x); dry-run estimate {est:.2f}x, "
            f"off by {100 * abs(est - measured) / measured:.0f} %")
