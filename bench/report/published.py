"""A report from a study's published CSVs instead of its results store.

A report folder carries `records.csv` (one row per expected cell: status, accuracies, the teacher's
and the dense networks' accuracies, seconds, budgets), `phases.csv` (seconds per phase) and
`curves.csv` (validation accuracy per epoch). Every number the claims, their gates, the tables and
the statistics need is in them, so `python -m bench.report --records <folder>/records.csv`
rebuilds those sections — and a reader can check a study's verdicts without its store. Sections
that need the records themselves (the per-layer counts) reuse the folder's `layers_<dataset>.csv`
where it exists.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.registry import UsageError
from bench.report.data import (REPORTED_CSV, ReportData, add_statistics, from_report,
                               load_reported)
from bench.report.tables import summarize

PHASE_COLUMNS = ["id", "row", "dataset", "sparsity", "phase", "shared", "seconds"]
CURVE_COLUMNS = ["row", "dataset", "sparsity", "seed", "phase", "epoch", "val_acc"]
NEEDED = ("id", "row", "method", "dataset", "sparsity", "seed", "status", "test_acc")


def read_records_csv(path: Path) -> pd.DataFrame:
    try:
        merged = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise UsageError(f"--records {str(path)!r} is not a readable CSV "
                         f"({type(exc).__name__})") from None
    missing = [c for c in NEEDED if c not in merged]
    if missing:
        raise UsageError(f"--records {str(path)!r} lacks the column(s) {', '.join(missing)}; give "
                         "the records.csv a report wrote")
    merged["off_target"] = merged.get("off_target", False)
    merged["off_target"] = merged["off_target"].fillna(False).astype(bool)
    merged["id"] = merged["id"].astype(str)
    return merged


def _beside(path: Path, name: str, columns: list[str]) -> pd.DataFrame:
    other = path.with_name(name)
    if not other.is_file():
        return pd.DataFrame(columns=columns)
    frame = pd.read_csv(other, dtype={"id": str})
    return frame[[c for c in columns if c in frame]]


def load_published(records_csv: str | Path, grid, reported_path: str | Path | None = None,
                   against: str | None = None, report_dir: str | Path = ".") -> ReportData:
    path = Path(records_csv)
    if not path.is_file():
        raise UsageError(f"--records {str(records_csv)!r} does not exist; give a report's "
                         "records.csv")
    merged = read_records_csv(path)
    reported, note = load_reported(reported_path or REPORTED_CSV, report_dir)
    data = ReportData(grid, [], merged, summarize(merged),
                      _beside(path, "phases.csv", PHASE_COLUMNS), [], reported, note,
                      list(dict.fromkeys(merged["dataset"])),
                      store_root=f"{from_report(path, report_dir)} (published records; the "
                                 "results store is not kept)",
                      store=None, curves=_beside(path, "curves.csv", CURVE_COLUMNS),
                      published=path)
    add_statistics(data, against)
    return data
