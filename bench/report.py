"""`python -m bench.report`: the paper's tables and figures from a results store.

Writes, under --out (default <results>/report/<grid>): per dataset an accuracy table (Markdown,
CSV, LaTeX; best mean per column in bold), accuracy-vs-sparsity curves, accuracy against
compression and multiply-accumulates, and a radar plot (PNG); a
wall-clock table with each phase's share; the one-shot vs COLT time ratio; the temperature
ablation; our numbers beside the paper's printed ones (results/paper/reported.csv); and all of it
in report.md and index.html. Missing, failed and corrupt cells are shown as such, never as numbers.
"""
from __future__ import annotations

import argparse
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from bench.registry import UsageError
from bench.cli import OneLineParser, run_command
from bench.console import first_line
from bench.profile import phase_group
from bench.arguments import add_common

if TYPE_CHECKING:
    import pandas as pd

REPORTED_CSV = Path(__file__).resolve().parent.parent / "results" / "paper" / "reported.csv"
REPORTED_COLUMNS = ("source", "dataset", "method", "sparsity_overall_pct", "metric", "value",
                    "note")
MATCH_TOLERANCE_PP = 1.0  # a printed sparsity matches our nearest cell within this many points
COLT_POINT = 0.977
ONE_SHOT = "tg-oneshot"


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m bench.report", description=__doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common(p)
    p.add_argument("--out", metavar="DIR", help="report folder (default: <results>/report/<grid>)")
    p.add_argument("--reported", metavar="CSV", default=None,
                   help=f"the paper's printed numbers (default: {REPORTED_CSV})")
    return p


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


def load_report_data(grid, cells, store, reported_path: str | Path | None = None) -> ReportData:
    import pandas as pd

    from bench.store import flatten_record
    from bench.tables import expected_frame, merge_status, summarize

    records, problems = store.load_all([c.id for c in cells])
    frame = pd.DataFrame([flatten_record(r) for r in records])
    merged = merge_status(expected_frame(cells), frame, {p.path.stem for p in problems})
    rows = dict(zip(merged["id"], merged["row"])) if len(merged) else {}
    phase_rows = []
    for r in records:
        if r["status"] != "ok" or r["id"] not in rows:
            continue
        cfg = r["config"]
        for name, rec in (r.get("phases") or {}).items():
            phase_rows.append({"id": r["id"], "row": rows[r["id"]], "dataset": cfg["dataset"],
                               "sparsity": cfg["sparsity"], "phase": phase_group(name),
                               "shared": bool(rec.get("shared")),
                               "seconds": float(rec.get("seconds") or 0.0)})
    phases = pd.DataFrame(phase_rows, columns=["id", "row", "dataset", "sparsity", "phase",
                                               "shared", "seconds"])
    reported, note = load_reported(reported_path)
    return ReportData(grid, cells, merged, summarize(merged), phases, problems, reported, note,
                      list(dict.fromkeys(c.dataset for c in cells)))


def load_reported(path: str | Path | None) -> tuple["pd.DataFrame | None", str]:
    import pandas as pd

    explicit = path is not None
    path = Path(path) if explicit else REPORTED_CSV
    if not path.is_file():
        if explicit:
            raise UsageError(f"--reported {str(path)!r} does not exist")
        return None, f"No {path} found: nothing to compare against"
    try:
        df = pd.read_csv(path)
    except Exception as exc:  # a malformed file is a user's input error
        raise UsageError(f"{path}: not a readable CSV ({first_line(exc)})") from None
    missing = [c for c in REPORTED_COLUMNS if c not in df.columns]
    if missing:
        raise UsageError(f"{path}: missing column(s) {', '.join(missing)}; "
                         f"expected {', '.join(REPORTED_COLUMNS)}")
    return df, f"Paper numbers from {path}"


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
    from bench.tables import summarize

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

    cols = ["dataset", "metric", "paper method", "paper sparsity %", "paper", "our row",
            "our sparsity", "our overall %", "ours", "ours − paper"]
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
                         "ours": "no cells of this method in the grid", "ours − paper": "—"})
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
                              "ours − paper": "—"})
            elif rep["metric"] == "minutes":
                cells = asked[(asked["row"] == row) & (asked["sparsity"] == g["sparsity"])
                              & (asked["status"] == "ok")]
                if cells.empty:
                    entry.update({"ours": g["text"], "ours − paper": "—"})
                else:
                    mins = float(cells["seconds"].astype(float).mean()) / 60
                    entry.update({"ours": f"{mins:.2f} (n={len(cells)})",
                                  "ours − paper": f"{mins - float(rep['value']):+.2f}"})
            else:
                entry.update({"ours": g["text"], "ours − paper":
                              f"{g['mean'] - float(rep['value']):+.2f}" if g["n"] else "—"})
            rows.append(entry)
    return pd.DataFrame(rows, columns=cols)


# --- writing --------------------------------------------------------------------------------------


@dataclass
class Report:
    out: Path
    files: list[Path]
    figures: dict  # name -> Figure (closed after saving; kept for inspection)
    markdown: str


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "grid"


def build_report(grid, cells, store, out: str | Path,
                 reported_path: str | Path | None = None) -> Report:
    from bench import plots
    from bench.store import atomic_write_bytes
    from bench.tables import long_csv, pivot, to_html, to_latex, to_markdown

    out = Path(out)
    data = load_report_data(grid, cells, store, reported_path)
    files: list[Path] = []
    figures: dict = {}

    def write(name: str, text: str) -> Path:
        path = out / name
        atomic_write_bytes(path, text.encode())
        files.append(path)
        return path

    md: list[str] = []
    html: list[str] = []

    def section(title: str, level: int = 2) -> None:
        md.append(f"{'#' * level} {title}\n")
        html.append(f"<h{level}>{_h(title)}</h{level}>")

    def para(text: str) -> None:
        md.append(text + "\n")
        html.append(f"<p>{_h(text)}</p>")

    def table(frame: "pd.DataFrame", html_frame: "pd.DataFrame | None" = None) -> None:
        md.append(to_markdown(frame) + "\n")
        html.append(to_html(html_frame if html_frame is not None else _escaped(frame)))

    def image(name: str, alt: str) -> None:
        md.append(f"![{alt}]({name})\n")
        html.append(f'<p><img src="{_h(name)}" alt="{_h(alt)}"></p>')

    # header -------------------------------------------------------------------------------
    counts = data.merged["status"].value_counts().to_dict() if len(data.merged) else {}
    title = f"Report: grid {grid.name}"
    section(title, 1)
    para(f"Results store: {store.root}. {len(cells)} cells expected: "
         + ", ".join(f"{counts.get(s, 0)} {s}" for s in ("ok", "failed", "missing", "corrupt"))
         + ". Accuracy is the final epoch's top-1 test accuracy in %, mean ± sample std over "
           "the ok seeds (n = their count); the best mean of each column is bold.")
    left_out = getattr(grid, "unregistered_methods", lambda: [])()
    if left_out:
        para("Methods of this grid that are not registered (left out): " + ", ".join(left_out))

    # accuracy per dataset ------------------------------------------------------------------
    for dataset in data.datasets:
        section(f"{dataset}: accuracy")
        t_md = pivot(data.summary, dataset, "markdown")
        table(t_md, pivot(data.summary, dataset, "html"))
        stem = f"accuracy_{safe_name(dataset)}"
        write(f"{stem}.md", to_markdown(t_md) + "\n")
        write(f"{stem}.csv", long_csv(data.summary[data.summary["dataset"] == dataset])
              .to_csv(index=False))
        write(f"{stem}.tex", to_latex(pivot(data.summary, dataset, "latex"),
                                      caption=f"{grid.name}, {dataset}: test accuracy (%), "
                                              "mean ± std over seeds (n)",
                                      label=f"tab:{safe_name(grid.name)}-{safe_name(dataset)}"))
        para(f"Tables: {stem}.md, {stem}.csv (long form, numbers), {stem}.tex.")
        fig = plots.accuracy_curves(data.summary, dataset)
        figures[f"curves_{dataset}"] = fig
        name = f"curves_{safe_name(dataset)}.png"
        files.append(plots.save(fig, out / name))
        image(name, f"{dataset}: accuracy vs sparsity")
        fig = plots.cost_curves(data.summary, dataset)
        if fig is not None:
            figures[f"cost_{dataset}"] = fig
            name = f"cost_{safe_name(dataset)}.png"
            files.append(plots.save(fig, out / name))
            image(name, f"{dataset}: accuracy against compression and compute")
            para("Compression = all parameters / non-zero ones; multiply-accumulates count "
                 "only the non-zero weights of convolutions and linear layers (the theoretical "
                 "speed-up a sparse kernel could reach; dense kernels run at the dense cost). "
                 f"The numbers are in {stem}.csv.")
        fig = plots.radar(data.summary, dataset)
        if fig is None:
            para(f"No radar plot: fewer than three of the radar sparsities "
                 f"({', '.join(f'{100 * s:g}%' for s in plots.RADAR_LEVELS)}) are in this grid.")
        else:
            figures[f"radar_{dataset}"] = fig
            name = f"radar_{safe_name(dataset)}.png"
            files.append(plots.save(fig, out / name))
            image(name, f"{dataset}: radar")

    # failures and problems -----------------------------------------------------------------
    section("Failed, missing and corrupt cells")
    bad = data.merged[data.merged["status"] != "ok"]
    if bad.empty and not data.problems:
        para("None: every cell of the grid has an ok record.")
    failed = bad[bad["status"] == "failed"]
    if len(failed):
        rows = [{"cell": r["id"], "method": r["row"], "dataset": r["dataset"],
                 "sparsity": f"{r['sparsity']:g}", "seed": r["seed"],
                 "error": "failed: " + first_line(r["error"])} for r in failed.to_dict("records")]
        import pandas as pd

        table(pd.DataFrame(rows).set_index("cell"))
    missing = bad[bad["status"] == "missing"]
    if len(missing):
        para(f"{len(missing)} cell(s) without a record yet (missing): run "
             f"`python -m bench.run --grid {grid.name} --results {store.root}` to fill them in.")
    if data.problems:
        para("Record files that could not be read (corrupt; their cells count as corrupt, "
             "not as results):")
        items = [f"{p.path.name}: {first_line(p.message.replace(str(p.path) + ': ', ''))}"
                 for p in data.problems]
        md.append("".join(f"- {item}\n" for item in items))
        html.append("<ul>" + "".join(f"<li>{_h(item)}</li>" for item in items) + "</ul>")
    empty = data.merged[(data.merged["status"] == "ok")
                        & (data.merged["empty_layers"].fillna(0).astype(float) > 0)]
    if len(empty):
        para(f"{len(empty)} ok cell(s) with at least one prunable layer left without weights "
             "(flagged 'empty layer' in the tables; record sparsity.empty_layers).")

    # wall-clock ----------------------------------------------------------------------------
    section("Wall-clock")
    para("Mean over each method's ok cells (all sparsities and seeds). Phases marked * are "
         "shared through the cache (computed once, used by many cells; their seconds are those "
         "of the run that computed them).")
    wall_csv = []
    for dataset in data.datasets:
        wt = wallclock_table(data, dataset)
        section(f"{dataset}", 3)
        if wt.empty:
            para("no cells")
        else:
            table(wt)
            wall_csv.append(wt.assign(dataset=dataset))
        note, ratio = colt_ratio(data, dataset)
        para(f"One-shot vs COLT: {note}.")
        if ratio is not None:
            table(ratio)
    if wall_csv:
        import pandas as pd

        write("wallclock.csv", pd.concat(wall_csv).to_csv())
    if len(data.phases):
        write("phases.csv", data.phases.to_csv(index=False))

    # temperature ablation ------------------------------------------------------------------
    section("Temperature ablation")
    temps = temperature_tables(data)
    if not temps:
        para("This grid does not sweep temperatures (see the paper-temperature grid).")
    for name, summ in temps:
        dataset = summ["dataset"].iloc[0]
        section(name, 3)
        t = pivot(summ, dataset, "markdown")
        t.index.name = "T"
        h = pivot(summ, dataset, "html")
        h.index.name = "T"
        table(t, h)
        write(f"temperature_{safe_name(name)}.md", to_markdown(t) + "\n")
        write(f"temperature_{safe_name(name)}.csv", long_csv(summ).to_csv(index=False))

    # against the paper ---------------------------------------------------------------------
    section("Against the paper's printed numbers")
    para(data.reported_note + f". Matching: our nearest cell by overall sparsity (all "
         f"parameters, as the paper prints), within {MATCH_TOLERANCE_PP:g} pp; see "
         "results/paper/README.md.")
    vs = match_reported(data.reported, data)
    if vs.empty:
        shown = ", ".join(sorted(set(data.reported["dataset"]))) if data.reported is not None \
            else "none"
        para(f"No printed numbers for this grid's datasets ({', '.join(data.datasets)}); "
             f"the paper prints: {shown}.")
    else:
        table(vs.set_index("dataset"))
        write("reported_vs_ours.csv", vs.to_csv(index=False))

    text = "\n".join(md)
    write("report.md", text)
    write("index.html", _page(title, "\n".join(html)))
    return Report(out, files, figures, text)


def _h(text: object) -> str:
    import html

    return html.escape(str(text))


def _escaped(frame: "pd.DataFrame") -> "pd.DataFrame":
    out = frame.map(_h) if hasattr(frame, "map") else frame.applymap(_h)
    out.index = [_h(i) for i in frame.index]
    out.index.name = frame.index.name
    return out


def _page(title: str, body: str) -> str:
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{_h(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }}
thead th {{ background: #f2f2f2; }}
img {{ max-width: 100%; }}
</style></head>
<body>
{body}
</body></html>
"""


# --- command line ---------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(_main, build_parser().parse_args(argv))


def _main(args: argparse.Namespace) -> int:
    from bench.arguments import select_cells
    from bench.store import ResultStore

    results = Path(args.results)
    if not results.is_dir():
        raise UsageError(f"results directory {str(results)!r} does not exist; run "
                         f"`python -m bench.run --results {results}` first")
    grid, cells = select_cells(args)
    out = Path(args.out) if args.out else results / "report" / safe_name(grid.name)
    report = build_report(grid, cells, ResultStore(results), out, args.reported)
    print(report.markdown)
    print(f"report: {out / 'report.md'} and {out / 'index.html'} ({len(report.files)} files)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
