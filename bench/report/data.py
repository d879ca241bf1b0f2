"""The numbers a report is made of: records loaded against the grid, the paper's printed values
and the statistics of bench.report.stats (paired comparisons against a reference row, the
ranking). The frames derived from them (wall-clock, COLT ratio, temperature sweeps, paper vs
ours) are bench/report/derived.py.

Everything here is a pure computation over a results store; bench.report.sections turns it into
text and figures.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bench.console import first_line
from bench.registry import UsageError
from bench.report import stats
from bench.report.phase_times import phase_group
from bench.report.stats import Ranking
from bench.report.tables import expected_frame, merge_status, summarize
from bench.store import flatten_record

BUDGET_FIELDS = ("model", "teacher", "dense_epochs", "sparse_epochs", "round_epochs",
                 "train_fraction", "batch_size")

REPO = Path(__file__).resolve().parents[2]  # bench/report/data.py -> the repository
REPORTED_CSV = REPO / "results" / "paper" / "reported.csv"
REPORTED_COLUMNS = ("source", "dataset", "method", "sparsity_overall_pct", "metric", "value",
                    "note")
MATCH_TOLERANCE_PP = 1.0  # a printed sparsity matches our nearest cell within this many points
COLT_POINT = 0.977
ONE_SHOT = "tg-oneshot"
REFERENCE = "tg-oneshot-kd"  # the paper's method: the default row every other is paired against


# --- loading --------------------------------------------------------------------------------------


@dataclass
class ReportData:
    grid: Any
    cells: list
    merged: "pd.DataFrame"  # one row per expected cell: status, numbers, table row
    summary: "pd.DataFrame"  # one row per dataset x row x sparsity
    phases: "pd.DataFrame"  # one row per ok record x phase
    problems: list  # store.LoadProblem of the grid's record files that did not load
    reported: "pd.DataFrame | None"
    reported_note: str = ""
    datasets: list = field(default_factory=list)
    reference: str = REFERENCE  # the row paired against; "" when the grid has none
    comparisons: "pd.DataFrame | None" = None  # bench.report.stats.compare of on-target ok seeds
    ranking: "Ranking | None" = None
    store_root: Any = None  # as shown: relative to the report folder (from_report)
    store: Any = None  # the bench.store.ResultStore the numbers come from
    command: str = ""  # the command that remakes the report, run from the report folder
    curves: "pd.DataFrame | None" = None  # validation accuracy per epoch of every phase, in %
    published: "Path | None" = None  # the records.csv a report from published CSVs reads


def from_report(path: str | Path, report_dir: str | Path) -> str:
    """`path` relative to the report folder: what a shared report prints instead of this
    machine's absolute paths."""
    return Path(os.path.relpath(Path(path).resolve(), Path(report_dir).resolve())).as_posix()


def shown_path(path: str | Path, report_dir: str | Path) -> str:
    """A file of the repository (results/paper/reported.csv) by its path in the repository,
    any other file relative to the report folder."""
    resolved = Path(path).resolve()
    if resolved.is_relative_to(REPO):
        return resolved.relative_to(REPO).as_posix()
    return from_report(path, report_dir)


def load_report_data(grid, cells, store, reported_path: str | Path | None = None,
                     against: str | None = None, report_dir: str | Path = ".") -> ReportData:
    """`against`: the row to pair every other with (default REFERENCE where the grid has it);
    a label the grid does not have is a usage error that lists the rows."""
    records, problems = store.load_all([c.id for c in cells])
    frame = pd.DataFrame([flatten_record(r) for r in records])
    if len(frame):  # top-level, resolved; records from before mixed precision ran at fp32
        frame["precision"] = [r.get("precision") or "fp32" for r in records]
        # which hardware ran each cell: a study spread over hosts can show its numbers agree
        for name in ("device_name", "cpu_capability"):
            frame[name] = [(r.get("provenance") or {}).get(name) for r in records]
    merged = merge_status(expected_frame(cells), frame, {p.path.stem for p in problems})
    by_id = {c.id: c for c in cells}
    for name in BUDGET_FIELDS:  # what the claims' epoch ledger reads; records.csv keeps them
        merged[name] = [getattr(by_id[i], name) for i in merged["id"]]
    rows = dict(zip(merged["id"], merged["row"])) if len(merged) else {}
    phase_rows, curve_rows = [], []
    for r in records:
        if r["status"] != "ok" or r["id"] not in rows:
            continue
        cfg = r["config"]
        history = (r.get("accuracy") or {}).get("val_history") or {}
        for name, accs in history.items():
            curve_rows += [{"row": rows[r["id"]], "dataset": cfg["dataset"],
                            "sparsity": cfg["sparsity"], "seed": cfg.get("seed", 0),
                            "phase": name, "epoch": i + 1, "val_acc": 100.0 * float(a)}
                           for i, a in enumerate(accs) if a is not None]
        for name, rec in (r.get("phases") or {}).items():
            phase_rows.append({"id": r["id"], "row": rows[r["id"]], "dataset": cfg["dataset"],
                               "sparsity": cfg["sparsity"], "phase": phase_group(name),
                               "shared": bool(rec.get("shared")),
                               "seconds": float(rec.get("seconds") or 0.0)})
    phases = pd.DataFrame(phase_rows, columns=["id", "row", "dataset", "sparsity", "phase",
                                               "shared", "seconds"])
    reported, note = load_reported(reported_path, report_dir)
    data = ReportData(grid, cells, merged, summarize(merged), phases, problems, reported, note,
                      list(dict.fromkeys(c.dataset for c in cells)),
                      store_root=from_report(store.root, report_dir), store=store,
                      curves=pd.DataFrame(curve_rows, columns=["row", "dataset", "sparsity", "seed",
                                                               "phase", "epoch", "val_acc"]))
    add_statistics(data, against)
    return data


def add_statistics(data: ReportData, against: str | None = None) -> None:
    """Paired comparisons against the reference row (their marks go into the summary's `mark`
    column, which the tables print), the ranking over complete settings, and a `precision_tag`
    on every group of a dataset whose ok cells ran at more than one precision."""
    rows = list(dict.fromkeys(data.merged["row"])) if len(data.merged) else []
    if against is not None and against not in rows:
        raise UsageError(f"--against {against!r} is not a row of this grid; valid: "
                         + ", ".join(rows))
    data.reference = against or (REFERENCE if REFERENCE in rows else "")
    ok = on_target_ok(data.merged)
    seed_acc = ok.assign(acc=ok["test_acc"].astype(float) * 100.0)[
        ["dataset", "row", "sparsity", "seed", "acc"]]
    summary = data.summary
    summary["mark"] = ""
    if data.reference and len(seed_acc):
        data.comparisons = stats.compare(seed_acc, data.reference)
        marks = {(c["dataset"], c["row"], c["sparsity"]): c["mark"]
                 for c in data.comparisons.to_dict("records")}
        summary["mark"] = [marks.get((d, r, s), "") for d, r, s in
                           zip(summary["dataset"], summary["row"], summary["sparsity"])]
    if len(summary):
        data.ranking = stats.ranking(summary, ranked_rows(data.merged))
    summary["precision_tag"] = ""
    for dataset in data.datasets:
        if len(mixed_precisions(data, dataset)) > 1:
            mine = summary["dataset"] == dataset
            summary.loc[mine, "precision_tag"] = summary.loc[mine, "precision"]


def on_target_ok(merged: "pd.DataFrame", dataset: str | None = None) -> "pd.DataFrame":
    """The ok cells that reached their target sparsity (of one dataset): the ones every mean,
    interval, mark, ranking and claim counts."""
    if merged.empty:
        return merged
    keep = (merged["status"] == "ok") & ~merged["off_target"].astype(bool)
    if dataset is not None:
        keep &= merged["dataset"] == dataset
    return merged[keep]


def ranked_rows(merged: "pd.DataFrame") -> list[str]:
    """The rows the ranking compares. A row asked for at few settings (a grid's extra point, e.g.
    the dense network at 0 %) would leave few or no settings where every row has a result; so
    among the row sets "every row asked for at ≥ k settings" the one whose rows × common settings
    is largest is ranked (ties: more rows), from the cells asked for, not the results."""
    if not len(merged):
        return []
    asked = merged[["row", "dataset", "sparsity"]].drop_duplicates()
    settings = {row: set(zip(g["dataset"], g["sparsity"])) for row, g in asked.groupby("row")}
    best: tuple = (-1, -1, [])
    for k in sorted({len(v) for v in settings.values()}):
        rows = [r for r in dict.fromkeys(merged["row"]) if len(settings[r]) >= k]
        common = set.intersection(*(settings[r] for r in rows))
        best = max(best, (len(rows) * len(common), len(rows), rows), key=lambda b: b[:2])
    return best[2]


def mixed_precisions(data: ReportData, dataset: str) -> list[str]:
    """The precisions the ok cells of `dataset` ran at (records without the field: fp32)."""
    m = data.merged
    if m.empty:
        return []
    ok = m[(m["dataset"] == dataset) & (m["status"] == "ok")]
    values = ok["precision"] if "precision" in ok else []
    return sorted({p if isinstance(p, str) and p else "fp32" for p in values})


def load_reported(path: str | Path | None, report_dir: str | Path = "."
                  ) -> tuple["pd.DataFrame | None", str]:
    explicit = path is not None
    path = Path(path) if explicit else REPORTED_CSV
    if not path.is_file():
        if explicit:
            raise UsageError(f"--reported {str(path)!r} does not exist")
        return None, f"No {shown_path(path, report_dir)} found: nothing to compare against"
    try:
        df = pd.read_csv(path)
    except Exception as exc:  # a malformed file is a user's input error
        raise UsageError(f"{path}: not a readable CSV ({first_line(exc)})") from None
    missing = [c for c in REPORTED_COLUMNS if c not in df.columns]
    if missing:
        raise UsageError(f"{path}: missing column(s) {', '.join(missing)}; "
                         f"expected {', '.join(REPORTED_COLUMNS)}")
    return df, f"Paper numbers from {shown_path(path, report_dir)}"
