"""`python -m bench.perf --only sharing`: COLT and EGP grids over five sparsities with their round
prefixes shared through the cache against every cell computing its own rounds (--no-share), in
this one process, and the dry run's estimate of the same ratio. See docs/performance.md."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

from bench.config import RunConfig
from bench.exec.cell import RunOptions, run_cell
from bench.plan.estimate import estimate_gpu_hours
from bench.plan.grids import QUICK_BASE
from bench.store import ResultStore

SPARSITIES = (0.5, 0.7, 0.8, 0.9, 0.95)
BUDGETS = {"round_epochs": 4, "sparse_epochs": 2}  # issue 19's setting, on the quick grid's base
TARGET = {"colt": 2.0, "egp": 1.4}


def grids(method: str, device: str, folder: Path,
          sparsities: Sequence[float] = SPARSITIES) -> dict[str, dict[str, float]]:
    """One cell per sparsity, shared and --no-share each in its own fresh store, interleaved
    cell by cell (shared s1, alone s1, shared s2, ...) so that a change of load on the machine
    hits both sides alike. Per side: wall-clock seconds, and the seconds of the training phases
    this run actually computed (what the estimate models)."""
    out = {side: {"wall": 0.0, "trained": 0.0} for side in ("shared", "alone")}
    for s in sparsities:
        cfg = RunConfig(method=method, sparsity=s, **{**QUICK_BASE, **BUDGETS})
        for side in out:
            options = RunOptions(device=device, progress=False, save_checkpoints=False,
                                 share=side == "shared")
            t0 = time.perf_counter()
            record = run_cell(cfg, ResultStore(folder / side), options)
            out[side]["wall"] += time.perf_counter() - t0
            if record["status"] != "ok":
                raise RuntimeError(f"{record['label']} s={s} failed: {record['error']['message']}")
            out[side]["trained"] += sum(p.get("seconds", 0.0) for p in record["phases"].values()
                                        if p.get("epochs") and not p.get("cached"))
    return out


def estimated_ratio(method: str, sparsities: Sequence[float] = SPARSITIES) -> float:
    """The dry run's cost of the grid with --no-share over its cost with sharing."""
    cells = [RunConfig(method=method, sparsity=s, **{**QUICK_BASE, **BUDGETS}) for s in sparsities]
    return estimate_gpu_hours(cells, share=False) / estimate_gpu_hours(cells)


def sharing_rows(args, row: Callable[[str, str, str, str], None]) -> None:
    for method in ("colt", "egp"):
        with tempfile.TemporaryDirectory() as tmp:
            grids(method, args.device, Path(tmp) / "warm", sparsities=(0.5,))  # first load, kernels
            t = grids(method, args.device, Path(tmp) / "timed")
        est = estimated_ratio(method)
        wall = t["alone"]["wall"] / t["shared"]["wall"]
        trained = t["alone"]["trained"] / t["shared"]["trained"]
        row("sharing", f"{method}: {t['shared']['wall']:.1f} s shared",
            f"{t['alone']['wall']:.1f} s --no-share",
            f"{wall:.2f}x wall-clock (target >= {TARGET[method]}x); training phases "
            f"{trained:.2f}x; dry-run estimate {est:.2f}x, off by "
            f"{100 * abs(est - wall) / wall:.0f} % from the wall-clock ratio, "
            f"{100 * abs(est - trained) / trained:.0f} % from the training ratio")
