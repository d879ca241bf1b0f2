"""The report's sections, one function each: ReportData in, a Section (title, paragraphs, tables,
images, side files) out. Nothing here writes a file or knows Markdown from HTML; the writer
(bench.report.writer) does both. Order of a report: bench.report.command.report_sections.
"""
from __future__ import annotations

import math
import re
import shlex

import pandas as pd

from bench.plan.thresholds import grid_thresholds
from bench.report import plots, stats
from bench.report.data import MATCH_TOLERANCE_PP, ReportData, first_line, mixed_precisions
from bench.report.derived import colt_ratio, match_reported, temperature_tables, wallclock_table
from bench.report.gates import NOT_JUDGED_PHASES
from bench.report.tables import long_csv, pivot, to_latex, to_markdown
from bench.report.writer import Bullets, Image, Paragraph, Section, Table, section


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "grid"


def header(data: ReportData, store_root) -> Section:
    made = [Paragraph(f"Made with `{data.command}` (run from this report's folder).")] \
        if data.command else []
    counts = data.merged["status"].value_counts().to_dict() if len(data.merged) else {}
    left_out = getattr(data.grid, "unregistered_methods", lambda: [])()
    return section(
        f"Report: grid {data.grid.name}",
        *made,
        Paragraph((f"Records: {store_root}. " if data.published else
                   f"Results store: {store_root} (relative to this report). ") +
                  f"{len(data.merged)} cells expected: "
                  + ", ".join(f"{counts.get(s, 0)} {s}"
                              for s in ("ok", "failed", "missing", "corrupt"))
                  + ". Accuracy is the final epoch's top-1 test accuracy in %, mean ± sample std "
                    "over the ok seeds (n = their count); the best mean of each column is bold. "
                    "From n = 3 on a cell also gives its 95 % confidence interval (Student t: "
                    "mean ± t(0.975, n−1)·std/√n) and its mark against the reference row "
                    f"({_reference_text(data)}): {stats.BETTER} better, {stats.WORSE} worse, "
                    f"{stats.SAME} no significant difference (paired by seed, Holm-corrected, "
                    f"α = {stats.ALPHA:g}); see 'Paired comparisons'."),
        Paragraph("Methods of this grid that are not registered (left out): "
                  + ", ".join(left_out)) if left_out else None,
        Paragraph("Every expected cell, one row each (status, accuracies, the teacher's and the "
                  "dense network's test accuracy, sparsity reached, seconds): `records.csv`."),
        level=1, files=[("records.csv", _records_csv(data))])


def _records_csv(data: ReportData) -> str:
    """The records summary beside the report: the merged frame, each cell's budgets included (no
    paths, so the file is as safe to share as the report)."""
    return data.merged.to_csv(index=False)


def _reference_text(data: ReportData) -> str:
    return data.reference or "none: the grid has no tg-oneshot-kd row; pick one with --against"


def accuracy(data: ReportData, dataset: str) -> Section:
    """The dataset's accuracy table (Markdown/CSV/LaTeX files too), curves, cost and radar."""
    grid = data.grid
    t_md = pivot(data.summary, dataset, "markdown")
    stem = f"accuracy_{safe_name(dataset)}"
    files = [(f"{stem}.md", to_markdown(t_md) + "\n"),
             (f"{stem}.csv", long_csv(data.summary[data.summary["dataset"] == dataset])
              .to_csv(index=False)),
             (f"{stem}.tex", to_latex(pivot(data.summary, dataset, "latex"),
                                      caption=f"{grid.name}, {dataset}: test accuracy (%), "
                                              "mean ± std over seeds (n; 95 % t interval from "
                                              "n = 3), mark against "
                                              f"{data.reference or 'no reference'}",
                                      label=f"tab:{safe_name(grid.name)}-{safe_name(dataset)}"))]
    blocks: list = [_precision_warning(data, dataset), _off_target_note(data, dataset),
                    Table(t_md, pivot(data.summary, dataset, "html")),
                    Paragraph(f"Tables: {stem}.md, {stem}.csv (long form, numbers, with the "
                              f"95 % interval also for n = 2), {stem}.tex.")]
    fig = plots.accuracy_curves(data.summary, dataset)
    blocks.append(Image(f"curves_{safe_name(dataset)}.png", f"{dataset}: accuracy vs sparsity",
                        fig, f"curves_{dataset}"))
    fig = plots.cost_curves(data.summary, dataset)
    if fig is not None:
        blocks += [Image(f"cost_{safe_name(dataset)}.png",
                         f"{dataset}: accuracy against compression and compute", fig,
                         f"cost_{dataset}"),
                   Paragraph("Compression = all parameters / non-zero ones; multiply-accumulates "
                             "count only the non-zero weights of convolutions and linear layers "
                             "(the theoretical speed-up a sparse kernel could reach; dense kernels "
                             "run at the dense cost). Bars: 95 % interval of the accuracy where "
                             f"n ≥ 3. The numbers are in {stem}.csv.")]
    fig = plots.radar(data.summary, dataset)
    if fig is None:
        blocks.append(Paragraph(
            "No radar plot: fewer than three of the radar sparsities "
            f"({', '.join(f'{100 * s:g}%' for s in plots.RADAR_LEVELS)}) are in this grid."))
    else:
        blocks.append(Image(f"radar_{safe_name(dataset)}.png", f"{dataset}: radar", fig,
                            f"radar_{dataset}"))
    th = grid_thresholds(data.grid)
    phases = data.phases[data.phases["dataset"] == dataset]
    fig = plots.training_curves(data.curves, dataset,
                                shared=set(phases.loc[phases["shared"], "phase"]),
                                window=th.plateau_window,
                                judged=lambda phase: phase not in NOT_JUDGED_PHASES)
    if fig is not None:
        blocks += [Image(f"training_{safe_name(dataset)}.png",
                         f"{dataset}: validation accuracy per epoch", fig, f"training_{dataset}"),
                   Paragraph("Training curves: a curve still rising at its last epoch means that "
                             "phase's budget had not converged. Shaded: the epochs the "
                             f"convergence gate compares, the last {th.plateau_window} (darker) "
                             f"against the {th.plateau_window} before. A shared phase (trained "
                             "once, reused by every sparsity) has one panel, and rows that "
                             "share its curve one line; every other phase a panel per sparsity "
                             f"(at most {plots.MAX_CURVE_LEVELS}: the lowest, middle and "
                             "highest). Numbers: curves.csv.")]
    return section(f"{dataset}: accuracy", *blocks, files=files)


def _precision_warning(data: ReportData, dataset: str) -> Paragraph | None:
    kinds = mixed_precisions(data, dataset)
    if len(kinds) < 2:
        return None
    m = data.merged[(data.merged["dataset"] == dataset) & (data.merged["status"] == "ok")]
    per_row = m.assign(p=m["precision"].fillna("fp32")).groupby("row", sort=False)["p"]
    rows = "; ".join(f"{row}: {', '.join(sorted(set(ps)))}" for row, ps in per_row)
    return Paragraph(f"MIXED PRECISION: the ok cells of {dataset} ran at {' and '.join(kinds)}, "
                     "so this table compares numbers of different arithmetic; every cell is "
                     f"tagged with the precision its seeds ran at, and its marks and ranks "
                     f"compare across precisions too. Rows: {rows}.")


def _off_target_note(data: ReportData, dataset: str) -> Paragraph | None:
    s = data.summary[data.summary["dataset"] == dataset]
    count = int(s["off_target"].sum()) if len(s) else 0
    if not count:
        return None
    return Paragraph(f"{count} ok seed(s) missed their target sparsity by more than "
                     "0.1 pt: they are shown as 'accuracy (reached x %)' and left out of the "
                     "mean, the interval, the marks and the ranking (see 'Off-target cells').")


def comparisons(data: ReportData) -> Section:
    """Every row against the reference, per dataset and sparsity."""
    title = f"Paired comparisons against {data.reference or 'a reference'}"
    if not data.reference:
        return section(title, Paragraph(
            "No comparisons: the grid has no tg-oneshot-kd row. Pick a reference row with "
            "`--against LABEL`."))
    c = data.comparisons
    if c is None or c.empty:
        return section(title, Paragraph("No comparisons: no setting has ok cells of the "
                                        "reference and another row."))
    need = stats.seeds_needed()
    blocks: list = [Paragraph(
        "Difference = row − reference in accuracy points, averaged over the seeds both have an "
        "on-target ok result for (pairs), with its 95 % t interval. p: paired t-test for "
        f"{stats.MIN_PAIRS}–{stats.WILCOXON_FROM - 1} pairs, Wilcoxon signed-rank from "
        f"{stats.WILCOXON_FROM} pairs on; p (Holm): corrected for the number of comparisons in "
        f"that dataset's table. Marks: {stats.BETTER} / {stats.WORSE} where p (Holm) < "
        f"{stats.ALPHA:g}, {stats.SAME} otherwise.")]
    if int(c["pairs"].max()) < stats.MIN_PAIRS:
        blocks.append(Paragraph(
            f"NO SIGNIFICANCE CLAIMED: at most {int(c['pairs'].max())} seed pair(s) per "
            f"comparison, and a paired test needs at least {stats.MIN_PAIRS}; the tables carry "
            f"no marks. Run at least {stats.MIN_PAIRS} seeds (e.g. `--seeds 0,1,2`); to detect "
            f"a difference of one standard deviation (of the per-seed differences) with 80 % "
            f"power a paired t-test needs about {need} seeds."))
    elif int(c["pairs"].min()) < stats.MIN_PAIRS:
        blocks.append(Paragraph(
            f"Comparisons with fewer than {stats.MIN_PAIRS} pairs are not tested (no mark); "
            f"about {need} seeds detect a one-standard-deviation difference with 80 % power."))
    for dataset in data.datasets:
        mine = c[c["dataset"] == dataset]
        if mine.empty:
            continue
        blocks += [Paragraph(f"{dataset}:"), Table(_comparison_table(mine))]
    csv = c.assign(seeds=[" ".join(map(str, s)) for s in c["seeds"]]).to_csv(index=False)
    return section(title, *blocks, files=[("comparisons.csv", csv)])


def fmt_number(v: float | None, fmt: str) -> str:
    """A table cell: the number, or — where there is none (no test, too few pairs)."""
    return "—" if v is None or math.isnan(v) else format(v, fmt)


def fmt_interval(low: float, high: float, fmt: str) -> str:
    return "—" if math.isnan(low) else f"{format(low, fmt)} to {format(high, fmt)}"


def _comparison_table(c: "pd.DataFrame") -> "pd.DataFrame":
    rows = [{"row": r["row"], "sparsity": f"{r['sparsity']:g}", "pairs": r["pairs"],
             "difference": fmt_number(r["mean_diff"], "+.2f"),
             "95% CI": fmt_interval(r["ci_low"], r["ci_high"], "+.2f"),
             "test": r["test"] or f"none (< {stats.MIN_PAIRS} pairs)",
             "p": fmt_number(r["p"], ".3g"), "p (Holm)": fmt_number(r["p_holm"], ".3g"),
             "mark": r["mark"] or "—"} for r in c.to_dict("records")]
    return pd.DataFrame(rows).set_index("row")


def ranking(data: ReportData) -> Section:
    """Average ranks, Friedman, Nemenyi and the critical-difference diagram."""
    r = data.ranking
    title = "Ranking across settings"
    if r is None or r.ranks.empty:
        return section(title, Paragraph("No ranking: no ok results."))
    settings = ", ".join(f"{d} {s:g}" for d, s in r.settings) or "none"
    blocks: list = [Paragraph(
        f"Rank 1 = highest mean accuracy in a (dataset, sparsity) setting (ties share the "
        f"average rank), averaged over the {len(r.settings)} setting(s) where all "
        f"{len(r.methods)} rows have an on-target result: {settings}."
        + (f" Left out (some row has no result): "
           f"{', '.join(f'{d} {s:g}' for d, s in r.left_out)}." if r.left_out else ""))]
    others = [row for row in dict.fromkeys(data.merged["row"]) if row not in r.methods]
    if others:
        blocks.append(Paragraph("Not ranked (asked for at fewer settings than the other rows): "
                                + ", ".join(others) + "."))
    table = pd.DataFrame({"average rank": [f"{v:.2f}" if not math.isnan(v) else "—"
                                           for v in r.ranks]}, index=list(r.ranks.index))
    table.index.name = "row"
    blocks.append(Table(table.sort_values("average rank")))
    if r.reason:
        blocks.append(Paragraph(f"No Friedman test and no diagram: {r.reason}."))
        return section(title, *blocks)
    verdict = "the rows' ranks differ" if r.friedman_p < stats.ALPHA else \
        "no evidence that the rows' ranks differ"
    blocks.append(Paragraph(
        f"Friedman test (scipy.stats.friedmanchisquare): χ² = {r.friedman_stat:.2f}, "
        f"p = {r.friedman_p:.3g} ({verdict} at α = {stats.ALPHA:g}). Nemenyi post-hoc "
        f"(scikit-posthocs): critical difference CD = {r.cd:.2f} ranks (Demšar 2006); in the "
        "diagram a bar joins rows whose Nemenyi p ≥ α, i.e. that are not significantly "
        "different. With few settings the test has little power: an absent difference is "
        "not a proven tie."))
    fig = plots.cd_diagram(r.ranks, r.nemenyi, r.cd, alpha=stats.ALPHA)
    blocks.append(Image("cd_diagram.png", "critical-difference diagram", fig, "cd_diagram"))
    nemenyi = r.nemenyi.map(lambda v: f"{v:.3g}") if hasattr(r.nemenyi, "map") \
        else r.nemenyi.applymap(lambda v: f"{v:.3g}")
    nemenyi.index.name = "Nemenyi p"
    blocks.append(Table(nemenyi))
    return section(title, *blocks, files=[("ranking.csv", r.matrix.assign(
        **{f"rank {m}": r.matrix.rank(axis=1, ascending=False)[m] for m in r.methods})
        .to_csv())])


def off_target(data: ReportData) -> Section:
    """Ok cells whose achieved sparsity over prunable weights misses the target by > 0.1 pt."""
    m = data.merged
    off = m[m["off_target"].astype(bool)] if len(m) else m
    if off.empty:
        return section("Off-target cells", Paragraph(
            "None: every ok cell reached its target sparsity within 0.1 pt (over prunable "
            "weights; records without the achieved sparsity are not checked)."))
    rows = [{"cell": r["id"], "method": r["row"], "dataset": r["dataset"],
             "target %": f"{100 * r['sparsity']:g}",
             "reached %": f"{100 * float(r['sparsity_prunable']):.2f}", "seed": r["seed"],
             "accuracy": f"{100 * float(r['test_acc']):.2f}"} for r in off.to_dict("records")]
    return section("Off-target cells", Paragraph(
        f"{len(off)} ok cell(s) whose sparsity over prunable weights misses the target by more "
        "than 0.1 pt; their accuracy is not counted at the target's column."),
        Table(pd.DataFrame(rows).set_index("cell")))


# The report parser's options bench.run lacks, listed rather than derived to keep this module
# free of an import of command.py (which imports it); tests/report/test_report.py keeps the two
# in step.
REPORT_ONLY_FLAGS = ("--out", "--reported", "--against", "--records", "--layer-sparsity")


def _fill_command(data: ReportData) -> str:
    """The bench.run command that fills in this report's missing cells: the report's own
    command with its report-only options dropped, so a selection (`--set
    teacher_checkpoint=...`, `--methods`, `--seeds`, a plugin) names the same cell ids."""
    if not data.command.startswith("python -m bench.report"):
        return f"python -m bench.run --grid {data.grid.name} --results {data.store_root}"
    words, out, skip = shlex.split(data.command)[3:], [], False
    for word in words:
        if skip:
            skip = False
        elif word in REPORT_ONLY_FLAGS:
            skip = True
        elif word.partition("=")[0] not in REPORT_ONLY_FLAGS:
            out.append(word)
    return "python -m bench.run " + shlex.join(out)


def failures(data: ReportData) -> Section:
    m = data.merged
    bad = m[m["status"] != "ok"]
    blocks: list = []
    if bad.empty and not data.problems:
        blocks.append(Paragraph("None: every cell of the grid has an ok record."))
    failed = bad[bad["status"] == "failed"]
    if len(failed):
        rows = [{"cell": r["id"], "method": r["row"], "dataset": r["dataset"],
                 "sparsity": f"{r['sparsity']:g}", "seed": r["seed"],
                 "error": "failed: " + first_line(r["error"])} for r in failed.to_dict("records")]
        blocks.append(Table(pd.DataFrame(rows).set_index("cell")))
    missing = bad[bad["status"] == "missing"]
    if len(missing):
        blocks.append(Paragraph(
            f"{len(missing)} cell(s) without a record yet (missing): run `{_fill_command(data)}` "
            "(from this report's folder, with the `--data-root` the grid ran with where its data "
            "is not under the default root) to fill them in."))
    if data.problems:
        blocks += [Paragraph("Record files that could not be read (corrupt; their cells count "
                             "as corrupt, not as results):"),
                   Bullets(tuple(f"{p.path.name}: "
                                 f"{first_line(p.message.replace(str(p.path) + ': ', ''))}"
                                 for p in data.problems))]
    empty = m[(m["status"] == "ok") & (m["empty_layers"].fillna(0).astype(float) > 0)]
    if len(empty):
        blocks.append(Paragraph(
            f"{len(empty)} ok cell(s) with at least one prunable layer left without weights "
            "(flagged 'empty layer' in the tables; record sparsity.empty_layers)."))
    return section("Failed, missing and corrupt cells", *blocks)


def wallclock(data: ReportData) -> list[Section]:
    out = [section("Wall-clock", Paragraph(
        "Mean over each method's ok cells (all sparsities and seeds). Phases marked * are "
        "shared through the cache (computed once, used by many cells; their seconds are those "
        "of the run that computed them)."))]
    frames = []
    for dataset in data.datasets:
        wt = wallclock_table(data, dataset)
        note, ratio = colt_ratio(data, dataset)
        if not wt.empty:
            frames.append(wt.assign(dataset=dataset))
        out.append(section(dataset, Paragraph("no cells") if wt.empty else Table(wt),
                           Paragraph(f"One-shot vs COLT: {note}."),
                           Table(ratio) if ratio is not None else None, level=3))
    files = [("wallclock.csv", pd.concat(frames).to_csv())] if frames else []
    if len(data.phases):
        files.append(("phases.csv", data.phases.to_csv(index=False)))
    out[-1] = Section(out[-1].title, out[-1].level, out[-1].blocks, tuple(files))
    return out


def temperature(data: ReportData) -> list[Section]:
    temps = temperature_tables(data)
    out = [section("Temperature ablation", None if temps else Paragraph(
        "This grid does not sweep temperatures (see the paper-temperature grid)."))]
    for name, summ in temps:
        dataset = summ["dataset"].iloc[0]
        t = pivot(summ, dataset, "markdown")
        t.index.name = "T"
        h = pivot(summ, dataset, "html")
        h.index.name = "T"
        out.append(section(name, Table(t, h), level=3, files=[
            (f"temperature_{safe_name(name)}.md", to_markdown(t) + "\n"),
            (f"temperature_{safe_name(name)}.csv", long_csv(summ).to_csv(index=False))]))
    return out


def against_paper(data: ReportData) -> Section:
    title = "Against the paper's printed numbers"
    intro = Paragraph(
        data.reported_note + f". Matching: our nearest cell by overall sparsity (all "
        f"parameters, as the paper prints), within {MATCH_TOLERANCE_PP:g} pp; see "
        "results/paper/README.md. 'paper in our 95% CI': whether the printed number lies inside "
        "the 95 % t interval of our seeds (none with fewer than two). 'setup differences': what "
        "the harness knows differs between the paper's setup and our cells'; where it lists "
        "any, the difference is a sanity check, not a replication.")
    vs = match_reported(data.reported, data)
    if vs.empty:
        shown = ", ".join(sorted(set(data.reported["dataset"]))) \
            if data.reported is not None else "none"
        return section(title, intro, Paragraph(
            f"No printed numbers for this grid's datasets ({', '.join(data.datasets)}); "
            f"the paper prints: {shown}."))
    return section(title, intro, Table(vs.set_index("dataset")),
                   files=[("reported_vs_ours.csv", vs.to_csv(index=False))])
