"""Section 6 (--reference): the resnet20 row of the `renda2020` grid, where that grid is
registered, run through the harness's own in-process executor into a store under the output
folder (a second run continues it), so its accuracies can be set beside the published ones."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import catalog
from bench.accept.summary import Report, plural
from bench.console import first_line
from bench.exec.cell import RunOptions, cached_dataset
from bench.exec.dispatch import run_inprocess
from bench.registry import UsageError
from bench.store import ResultStore

GRID = "renda2020"
MODEL = "resnet20"


def reference_cells(cells: list) -> list:
    """One seed of the resnet20 row, to fit the section's minutes: the dense network (its full
    schedule) and one retraining method (learning-rate rewinding where the grid has it) at its
    shortest budget."""
    cells = [c for c in cells if c.model == MODEL]
    if not cells:
        return []
    seed = min(c.seed for c in cells)
    cells = [c for c in cells if c.seed == seed]
    dense = [c for c in cells if c.sparsity == 0.0]
    pruned = [c for c in cells if c.sparsity > 0.0]
    rewinding = [c for c in pruned if c.option_dict.get("retraining") == "lr-rewind"
                 and c.method == "magnitude"]
    pruned = rewinding or pruned
    if pruned:
        shortest = min(c.sparse_epochs for c in pruned)
        pruned = [c for c in pruned if c.sparse_epochs == shortest]
    return dense + pruned


def reference_section(report: Report, device: str, data_root: str | None, out: Path,
                      progress: bool) -> dict[str, Any]:
    if GRID not in catalog.GRIDS:
        report.emit(f"skipped: grid {GRID} not registered")
        return {"skipped": f"grid {GRID} not registered"}
    cells = reference_cells(catalog.GRIDS.get(GRID).cells())
    if not cells:
        report.emit(f"skipped: grid {GRID} has no {MODEL} row")
        return {"skipped": f"grid {GRID} has no {MODEL} row"}
    try:
        for dataset in dict.fromkeys(c.dataset for c in cells):
            cached_dataset(dataset, data_root, False)
    except UsageError as exc:
        report.emit(f"skipped: {exc}")
        return {"skipped": str(exc)}
    store = ResultStore(out / "reference")
    report.emit(f"{plural(len(cells), 'cell')} of {GRID} ({MODEL}) into {store.root}:\n")
    outcome = run_inprocess(cells, store, RunOptions(device=device, data_root=data_root,
                                                     progress=progress))
    report.table(("cell", "sparsity", "status", "test acc"))
    rows = []
    for c in cells:
        record = store.read(c.id) or {}
        acc = (record.get("accuracy") or {}).get("test")
        rows.append({"id": c.id, "label": c.label, "sparsity": c.sparsity,
                     "status": record.get("status", "missing"), "test_acc": acc,
                     "error": first_line((record.get("error") or {}).get("message"), empty="")})
        report.row((c.label, f"{c.sparsity:g}", rows[-1]["status"],
                    f"{acc:.4f}" if acc is not None else rows[-1]["error"]))
    return {"grid": GRID, "rows": rows, "errors": len(outcome.failed)}
