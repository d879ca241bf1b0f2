"""The numbers a report is made of: records loaded against the grid, the paper's printed values,
and the frames derived from them (wall-clock, COLT ratio, temperature sweeps, paper vs ours, and
the statistics of bench.report.stats: paired comparisons against a reference row and the ranking).

Everything here is a pure computation over a results store; bench.report.sections turns it into
text and figures.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.console import first_line
from bench.report.phase_times import phase_group
from bench.registry import UsageError

if TYPE_CHECKING:
    import pandas as pd

    from bench.report.stats import Ranking

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


def from_report(path: str | Path, report_dir: str | Path) -> str:
    """`path` relative to the report folder: what a shared report prints instead of this
    machine's absolute paths."""
    import os

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
    import pandas as pd

    from bench.store import flatten_record
    from bench.report.tables import expected_frame, merge_status, summarize

    records, problems = store.load_all([c.id for c in cells])
    frame = pd.DataFrame([flatten_record(r) for r in records])
    if len(frame):  # top-level, resolved; records from before mixed precision ran at fp32
        frame["precision"] = [r.get("precision") or "fp32" for r in records]
    merged = merge_status(expected_frame(cells), frame, {p.path.stem for p in problems})
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
    from bench.report import stats

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
    import pandas as pd

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


# --- derived tables -------------------------------------------------------------------------------


def wallclock_table(data: ReportData, dataset: str) -> "pd.DataFrame":
    """Per method row of `dataset`: ok cells, mean minutes (total, shared, cell-specific) and each
    phase's share of the mean total, over all its ok cells (every sparsity and seed); '*' marks a
    phase shared through the cache (teacher, dense network), whose seconds are those it took when
    it was computed."""
    import pandas as pd

    ph = data.phases[data.phases["dataset"] == dataset]
    out = []
    for row in dict.fromkeys(data.merged.loc[data.merged["dataset"] == dataset, "row"]):
        cells = data.merged[(data.merged["dataset"] == dataset) & (data.merged["row"] == row)]
        ok = cells[cells["status"] == "ok"]
        if ok.empty:
            out.append({"method": row, "ok cells": 0, "total min": _not_ok(cells),
                        "shared min": "", "cell min": "", "phases (share of total)": ""})
            continue
        mine = ph[ph["row"] == row]
        per_phase = mine.groupby(["phase", "shared"])["seconds"].sum() / len(ok)
        total = float(ok["seconds"].astype(float).mean())
        shares = sorted(per_phase.items(), key=lambda kv: -kv[1])
        text = ", ".join(f"{name}{'*' if shared else ''} {_percent(sec / total)}"
                         for (name, shared), sec in shares if total > 0)
        out.append({"method": row, "ok cells": len(ok), "total min": f"{total / 60:.2f}",
                    "shared min": f"{float(ok['seconds_shared'].astype(float).mean()) / 60:.2f}",
                    "cell min": f"{float(ok['seconds_cell'].astype(float).mean()) / 60:.2f}",
                    "phases (share of total)": text})
    return pd.DataFrame(out).set_index("method") if out else pd.DataFrame()


def _percent(share: float) -> str:
    return "<1%" if share < 0.005 else f"{100 * share:.0f}%"


def _not_ok(cells: "pd.DataFrame") -> str:
    counts = cells["status"].value_counts()
    return ", ".join(f"{counts[s]} {s}" for s in ("failed", "missing", "corrupt") if s in counts)


def colt_ratio(data: ReportData, dataset: str) -> tuple[str, "pd.DataFrame | None"]:
    """One-shot vs COLT wall-clock at 97.7 % (or the highest sparsity both have ok cells at).

    Which one-shot seconds count decides the ratio, so it is given three ways: the total (teacher
    and dense student included), without the teacher (trained once per dataset; the fair-
    comparison rule reports it separately), and the cell's own phases (what one more sparsity
    costs in a grid that shares the teacher and student). COLT's cost is all its own."""
    import pandas as pd

    m = data.merged[(data.merged["dataset"] == dataset) & (data.merged["status"] == "ok")]
    colt = m[m["method"] == "colt"]
    one = m[m["method"] == ONE_SHOT]
    asked = data.merged[data.merged["dataset"] == dataset]
    if not (asked["method"] == "colt").any():
        return "this grid has no COLT cells", None
    common = sorted(set(colt["sparsity"]) & set(one["sparsity"]))
    if not common:
        return "no sparsity with ok cells of both COLT and tg-oneshot yet", None
    s = COLT_POINT if COLT_POINT in common else common[-1]
    colt_min = float(colt[colt["sparsity"] == s]["seconds"].astype(float).mean()) / 60
    teacher = data.phases[data.phases["phase"] == "teacher"].groupby("id")["seconds"].sum()

    def ratio(t: float) -> str:
        return f"{colt_min / t:.1f}×" if t > 0 else "—"

    rows = []
    for row in dict.fromkeys(one["row"]):
        mine = one[(one["row"] == row) & (one["sparsity"] == s)]
        if mine.empty:
            continue
        total = float(mine["seconds"].astype(float).mean()) / 60
        no_teacher = total - float(teacher.reindex(mine["id"]).fillna(0.0).mean()) / 60
        own = float(mine["seconds_cell"].astype(float).mean()) / 60
        rows.append({"one-shot row": row, "sparsity": f"{s:g}", "colt min": f"{colt_min:.2f}",
                     "one-shot min: total": f"{total:.2f}",
                     "without teacher": f"{no_teacher:.2f}", "own": f"{own:.2f}",
                     "colt / total": ratio(total), "colt / without teacher": ratio(no_teacher),
                     "colt / own": ratio(own)})
    rep = _reported_ratio(data.reported, dataset)
    note = f"at sparsity {s:g}" + ("" if s == COLT_POINT else f" (no ok cells at {COLT_POINT:g})")
    if rep:
        note += f"; the paper prints {rep}"
    return note, pd.DataFrame(rows).set_index("one-shot row") if rows else None


def _reported_ratio(reported: "pd.DataFrame | None", dataset: str) -> str:
    if reported is None:
        return ""
    r = reported[(reported["dataset"] == dataset) & (reported["metric"] == "minutes")]
    one = r[r["method"] == ONE_SHOT]["value"]
    colt = r[r["method"] == "colt"]["value"]
    if one.empty or colt.empty:
        return ""
    a, b = float(one.iloc[0]), float(colt.iloc[0])
    return f"{a:g} vs {b:g} min, colt / one-shot = {b / a:.1f}×"


def temperature_tables(data: ReportData) -> list[tuple[str, "pd.DataFrame"]]:
    """For each dataset and method label swept over several temperatures: rows T, columns
    sparsity, cells as in the accuracy tables (best mean per column in bold)."""
    from bench.report.tables import summarize

    m = data.merged
    out = []
    if m.empty:
        return out
    for (dataset, label), group in m.groupby(["dataset", "label"], sort=False):
        if group["temperature"].nunique() < 2:
            continue
        g = group.assign(row=[f"T={t:g}" for t in group["temperature"]])
        out.append((f"{dataset}, {label}", summarize(g)))
    return out


def match_reported(reported: "pd.DataFrame | None", data: ReportData) -> "pd.DataFrame":
    """Each printed number of the grid's datasets beside our nearest cell (results/paper/README.md
    states the rule): per our row of that method, the grid sparsity whose mean overall sparsity
    (or the grid sparsity itself, when no seed is ok) is nearest the printed overall sparsity."""
    import pandas as pd

    from bench.report.stats import t_interval

    cols = ["dataset", "metric", "paper method", "paper sparsity %", "paper", "our row",
            "our sparsity", "our overall %", "ours", "ours − paper", "paper in our 95% CI"]
    if reported is None:
        return pd.DataFrame(columns=cols)
    rows = []
    s = data.summary
    for rep in reported.to_dict("records"):
        if rep["dataset"] not in data.datasets:
            continue
        asked = data.merged[(data.merged["dataset"] == rep["dataset"])
                            & (data.merged["method"] == rep["method"])]
        base = {"dataset": rep["dataset"], "metric": rep["metric"],
                "paper method": rep["method"],
                "paper sparsity %": f"{rep['sparsity_overall_pct']:g}",
                "paper": f"{rep['value']:g}"}
        if asked.empty:
            rows.append({**base, "our row": "—", "our sparsity": "—", "our overall %": "—",
                         "ours": "no cells of this method in the grid", "ours − paper": "—",
                         "paper in our 95% CI": "—"})
            continue
        for row in dict.fromkeys(asked["row"]):
            groups = s[(s["dataset"] == rep["dataset"]) & (s["row"] == row)]
            overall = [100 * (o if not math.isnan(o) else sp)
                       for o, sp in zip(groups["sparsity_overall"], groups["sparsity"])]
            dist = [abs(o - float(rep["sparsity_overall_pct"])) for o in overall]
            i = min(range(len(dist)), key=dist.__getitem__)
            g = groups.iloc[i]
            entry = {**base, "our row": row, "our sparsity": f"{g['sparsity']:g}",
                     "our overall %": f"{overall[i]:.2f}"
                                      + ("" if not math.isnan(g["sparsity_overall"])
                                         else " (grid)")}
            if dist[i] > MATCH_TOLERANCE_PP:
                entry.update({"ours": f"no cell within {MATCH_TOLERANCE_PP:g} pp",
                              "ours − paper": "—", "paper in our 95% CI": "—"})
            elif rep["metric"] == "minutes":
                cells = asked[(asked["row"] == row) & (asked["sparsity"] == g["sparsity"])
                              & (asked["status"] == "ok")]
                if cells.empty:
                    entry.update({"ours": g["text"], "ours − paper": "—",
                                  "paper in our 95% CI": "—"})
                else:
                    mins = float(cells["seconds"].astype(float).mean()) / 60
                    entry.update({"ours": f"{mins:.2f} (n={len(cells)})",
                                  "ours − paper": f"{mins - float(rep['value']):+.2f}",
                                  "paper in our 95% CI": inside(
                                      float(rep["value"]),
                                      t_interval(list(cells["seconds"].astype(float) / 60)))})
            else:
                entry.update({"ours": g["text"], "ours − paper":
                              f"{g['mean'] - float(rep['value']):+.2f}" if g["n"] else "—",
                              "paper in our 95% CI": inside(float(rep["value"]),
                                                            (g["ci_low"], g["ci_high"]))})
            rows.append(entry)
    return pd.DataFrame(rows, columns=cols)


def inside(value: float, interval: tuple[float, float]) -> str:
    """'yes (lo–hi)' / 'no (lo–hi)', or why there is no interval (fewer than two seeds)."""
    lo, hi = interval
    if lo is None or math.isnan(lo):
        return "no interval (n < 2)"
    return f"{'yes' if lo <= value <= hi else 'no'} ({lo:.2f}–{hi:.2f})"
