"""The frames a report derives from its numbers (bench/report/data.py): the wall-clock table with
each phase's share, the one-shot vs COLT time ratio, the temperature sweeps, and our numbers
beside the paper's printed ones. Pure computations; bench.report.sections shows them."""
from __future__ import annotations

import math

import pandas as pd

from bench.report.data import COLT_POINT, MATCH_TOLERANCE_PP, ONE_SHOT, ReportData
from bench.report.stats import t_interval
from bench.report.tables import summarize


def wallclock_table(data: ReportData, dataset: str) -> "pd.DataFrame":
    """Per method row of `dataset`: ok cells, mean minutes (total, shared, cell-specific) and each
    phase's share of the mean total, over all its ok cells (every sparsity and seed); '*' marks a
    phase shared through the cache (teacher, dense network), whose seconds are those it took when
    it was computed."""
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
    cols = ["dataset", "metric", "paper method", "paper sparsity %", "paper", "our row",
            "our sparsity", "our overall %", "ours", "ours − paper", "paper in our 95% CI",
            "setup differences"]
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
                         "paper in our 95% CI": "—", "setup differences": ""})
            continue
        for row in dict.fromkeys(asked["row"]):
            base["setup differences"] = "; ".join(
                setup_differences(rep, asked[asked["row"] == row]))
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


def setup_differences(rep: dict, ours: "pd.DataFrame") -> list[str]:
    """What the harness knows differs between a printed number's setup and our rows' (the
    cells' model and train_fraction, as records and records.csv keep them): the network (the
    paper's note names it), the share of the training split, and for minutes the hardware and
    epochs, which the paper does not state."""
    out = []
    theirs = "resnet18" if "ResNet-18" in str(rep.get("note", "")) else ""
    models = sorted({str(m) for m in ours.get("model", pd.Series(dtype=str)).dropna()})
    if theirs and models and models != [theirs]:
        out.append(f"network: ResNet-18 (ours: {', '.join(models)})")
    fractions = sorted({float(f) for f in
                        ours.get("train_fraction", pd.Series(dtype=float)).dropna()})
    if fractions and fractions != [1.0]:
        out.append("ours trains on " + ", ".join(f"{100 * f:g} %" for f in fractions)
                   + " of the training split")
    if rep["metric"] == "minutes":
        out.append("the paper states neither its hardware nor its epochs: a difference in "
                   "minutes mixes machine, budget and method")
    return out


def inside(value: float, interval: tuple[float, float]) -> str:
    """'yes (lo–hi)' / 'no (lo–hi)', or why there is no interval (fewer than two seeds)."""
    lo, hi = interval
    if lo is None or math.isnan(lo):
        return "no interval (n < 2)"
    return f"{'yes' if lo <= value <= hi else 'no'} ({lo:.2f}–{hi:.2f})"
