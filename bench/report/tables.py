"""Accuracy tables from records: methods x sparsities, mean ± std over seeds, per dataset.

The flow is  cells ──expected_frame──┐
             records ──store.frame───┴─ merge_status ─> summarize ─> pivot ─> markdown/LaTeX/HTML
A cell the grid asks for but the store lacks is "missing"; a record that failed is "failed", with
the first line of its error; a record file that does not load is "corrupt". None of them ever
becomes a number.
"""
from __future__ import annotations

import html
import math
from typing import Iterable, Sequence

import pandas as pd

from bench.config import RunConfig
from bench.console import first_line
from bench.report.stats import t_interval

NOT_OK = ("failed", "missing", "corrupt")
OFF_TARGET_PP = 0.1  # an ok seed whose prunable sparsity misses its target by more is off target
CI_FROM_N = 3  # tables print the 95 % interval from this many seeds on (at n = 2 it is ±9 std)
COST_COLUMNS = ("compression_ratio", "macs_dense", "macs_sparse")
STYLES = ("plain", "markdown", "latex", "html")


def expected_frame(cells: Iterable[RunConfig]) -> pd.DataFrame:
    """One row per cell the grid asks for, so missing cells show up as missing."""
    return pd.DataFrame([{"id": c.id, "label": c.label, "method": c.method, "dataset": c.dataset,
                          "sparsity": c.sparsity, "seed": c.seed,
                          "temperature": c.resolved_temperature(), "model": c.model,
                          "sparse_epochs": c.sparse_epochs} for c in cells],
                        columns=["id", "label", "method", "dataset", "sparsity", "seed",
                                 "temperature", "model", "sparse_epochs"])


def merge_status(expected: pd.DataFrame, records: pd.DataFrame,
                 corrupt_ids: Iterable[str] = ()) -> pd.DataFrame:
    """The expected cells with their record's status and numbers; `corrupt_ids` (record files that
    did not load) are marked corrupt instead of missing."""
    cols = ["id", "status", "test_acc", "teacher_test_acc", "dense_test_acc", "test_top5",
            "test_ece", "test_nll", "sparsity_overall", "sparsity_prunable", "sparsity_over",
            "seconds", "seconds_cell", "seconds_shared", "empty_layers", "error", "precision",
            "device_name", "cpu_capability", *COST_COLUMNS]
    if records.empty:
        records = pd.DataFrame(columns=cols)
    merged = expected.merge(records[[c for c in cols if c in records]], on="id", how="left")
    corrupt = merged["id"].isin(set(corrupt_ids)) & merged["status"].isna()
    merged.loc[corrupt, "status"] = "corrupt"
    merged["status"] = merged["status"].fillna("missing")
    merged["off_target"] = off_target(merged)
    merged["row"] = row_labels(merged)
    return merged


def off_target(merged: pd.DataFrame) -> pd.Series:
    """True for an ok cell whose achieved sparsity over prunable weights misses the grid's target
    by more than OFF_TARGET_PP points, whatever the method: its accuracy is not an accuracy at
    that target. Records without the achieved sparsity count as on target (nothing to check)."""
    if merged.empty or "sparsity_prunable" not in merged:
        return pd.Series(False, index=merged.index, dtype=bool)
    reached = pd.to_numeric(merged["sparsity_prunable"], errors="coerce")
    miss = (reached - merged["sparsity"].astype(float)).abs() * 100.0 > OFF_TARGET_PP
    # a dense reference of about the target size (small-dense, over "width") has no exact count
    sized = merged["sparsity_over"] == "width" if "sparsity_over" in merged else \
        pd.Series(False, index=merged.index, dtype=bool)
    return (merged["status"] == "ok") & reached.notna() & miss & ~sized


def row_labels(merged: pd.DataFrame) -> pd.Series:
    """The table row of each cell: its label, plus what the grid varies for that label beside
    the sparsity — the network, the retraining budget and T=... within a dataset (a swept grid
    such as renda2020 or paper-temperature) — so that different settings are never averaged
    together."""
    if merged.empty:
        return pd.Series([], dtype=object)
    # per dataset: the paper grid's default T differs between datasets (3 on CIFAR, 5 on
    # TinyImageNet), which is no sweep within any one of them
    swept_t = merged.groupby(["dataset", "label"])["temperature"].nunique()
    varied = {name: merged.groupby(["dataset", "label"])[name].nunique()
              for name in ("model", "sparse_epochs") if name in merged}
    out = []
    for _, r in merged.iterrows():
        parts = []
        if "model" in varied and varied["model"].get((r["dataset"], r["label"]), 1) > 1:
            parts.append(str(r["model"]))
        if "sparse_epochs" in varied and \
                varied["sparse_epochs"].get((r["dataset"], r["label"]), 1) > 1:
            parts.append(f"{r['sparse_epochs']} ep")
        if swept_t.get((r["dataset"], r["label"]), 1) > 1:
            parts.append(f"T={r['temperature']:g}")
        out.append(f"{r['label']} ({', '.join(parts)})" if parts else r["label"])
    return pd.Series(out, index=merged.index, dtype=object)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (NaN for fewer than 2 values)."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, math.nan
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def fmt_mean_std(values: list[float], scale: float = 100.0, digits: int = 2) -> str:
    if not values:
        return ""
    mean, std = mean_std([v * scale for v in values])
    if len(values) == 1:
        return f"{mean:.{digits}f} (n=1)"
    return f"{mean:.{digits}f} ± {std:.{digits}f} (n={len(values)})"


def summarize(merged: pd.DataFrame, by: Sequence[str] = ("dataset", "row", "sparsity")
              ) -> pd.DataFrame:
    """One row per group (default: dataset x table row x sparsity): accuracy mean/std/95 % t
    interval in % over the ok seeds that reached their target sparsity, their count, the counts of
    failed/missing/corrupt seeds, the first failure's first line, how many ok seeds have an empty
    layer, the mean overall sparsity reached, the off-target seeds apart (count, mean accuracy,
    mean sparsity reached in %), the precisions the ok seeds ran at, and the text that tables
    print. Cost columns (compression ratio, multiply-accumulates per image) are means over the
    on-target ok seeds, NaN where records predate them."""
    rows = []
    if merged.empty:
        return pd.DataFrame(columns=[*by, "n", "mean", "std", "ci_low", "ci_high", "failed",
                                     "missing", "corrupt", "error", "empty_layers",
                                     "sparsity_overall", "off_target", "off_mean", "off_std",
                                     "off_reached", "precision", *COST_COLUMNS, "text"])
    merged = merged.assign(off_target=off_target(merged))
    for key, group in merged.groupby(list(by), sort=False):
        key = key if isinstance(key, tuple) else (key,)
        done = group[group["status"] == "ok"]
        off = done[done["off_target"].astype(bool)]
        ok = done[~done["off_target"].astype(bool)]
        accs = [float(v) * 100.0 for v in ok["test_acc"]]
        mean, std = mean_std(accs) if accs else (math.nan, math.nan)
        ci_low, ci_high = t_interval(accs)
        off_accs = [float(v) * 100.0 for v in off["test_acc"]]
        off_mean, off_std = mean_std(off_accs) if off_accs else (math.nan, math.nan)
        failed = group[group["status"] == "failed"]
        row = dict(zip(by, key), n=len(accs), mean=mean, std=std, ci_low=ci_low,
                   ci_high=ci_high, off_target=len(off), off_mean=off_mean, off_std=off_std,
                   off_reached=100.0 * _mean_of(off, "sparsity_prunable"),
                   precision=precisions(done), failed=len(failed),
                   missing=int((group["status"] == "missing").sum()),
                   corrupt=int((group["status"] == "corrupt").sum()),
                   error=first_line(failed["error"].iloc[0]) if len(failed) else "",
                   empty_layers=int((ok["empty_layers"].fillna(0).astype(float) > 0).sum()),
                   sparsity_overall=_mean_of(ok, "sparsity_overall"),
                   **{c: _mean_of(ok, c) for c in COST_COLUMNS})
        row["text"] = cell_text(row)
        rows.append(row)
    return pd.DataFrame(rows)


def precisions(frame: pd.DataFrame) -> str:
    """The precisions of these ok seeds, "fp32" where a record predates the field:
    "bf16", or "bf16 ×1, fp32 ×2" when they differ."""
    if frame.empty:
        return ""
    values = [p if isinstance(p, str) and p else "fp32"
              for p in (frame["precision"] if "precision" in frame else ["fp32"] * len(frame))]
    counts = pd.Series(values).value_counts()
    if len(counts) == 1:
        return str(counts.index[0])
    return ", ".join(f"{name} ×{count}" for name, count in sorted(counts.items()))


def _mean_of(frame: pd.DataFrame, column: str) -> float:
    values = [float(v) for v in frame[column] if pd.notna(v)] if column in frame else []
    return sum(values) / len(values) if values else math.nan


def cell_text(s: dict, bold: bool = False, style: str = "plain") -> str:
    """What a table prints for one summarised group. Results first (mean ± std (n), the 95 %
    interval from CI_FROM_N seeds on, the paired-comparison mark if the summary has one); then
    what is not a result at this target, in words: off-target seeds with the sparsity they reached
    ('61.20 (reached 96.10 %)'), 'failed: <first line>', 'missing', 'corrupt'; then empty layers
    and, where the report asks for it (`precision_tag`), the precision the seeds ran at."""
    parts = []
    if s["n"]:
        pm = {"latex": r"$\pm$"}.get(style, "±")
        number = f"{s['mean']:.2f}" + (f" {pm} {s['std']:.2f}" if s["n"] > 1 else "")
        ci = s.get("ci_low", math.nan)
        interval = "" if s["n"] < CI_FROM_N or ci is None or math.isnan(ci) else \
            f"; CI {s['ci_low']:.2f}{'--' if style == 'latex' else '–'}{s['ci_high']:.2f}"
        parts += [_bold(number, style) if bold else number, f"(n={s['n']}{interval})"]
        if s.get("mark"):
            parts.append(LATEX_MARKS.get(s["mark"], s["mark"]) if style == "latex"
                         else _escape(str(s["mark"]), style))
    kinds = [(k, int(s[k])) for k in NOT_OK if s[k]]
    off = int(s.get("off_target") or 0)
    single = not s["n"] and len(kinds) + bool(off) == 1 and (off or kinds[0][1]) == 1
    notes = []
    if off:
        spread = f" ± {s['off_std']:.2f}" if off > 1 else ""
        count = f"n={off}, " if off > 1 else ""
        text = f"{s['off_mean']:.2f}{spread} ({count}reached {s['off_reached']:.2f} %)"
        notes.append(text if not s["n"] and not kinds else f"off target: {text}")
    for what, count in kinds:
        word = what if single else f"{count} {what}"
        notes.append(f"{word}: {s['error']}" if what == "failed" else word)
    if s.get("empty_layers"):
        notes.append(f"empty layer in {s['empty_layers']}/{s['n']} seeds")
    if s.get("precision_tag"):
        notes.append(str(s["precision_tag"]))
    if notes:
        note = _escape("; ".join(notes), style)
        parts.append(note if not parts else f"[{note}]")
    return " ".join(parts)


def _bold(text: str, style: str) -> str:
    return {"markdown": f"**{text}**", "latex": rf"\textbf{{{text}}}",
            "html": f"<b>{text}</b>"}.get(style, text)


LATEX_SPECIAL = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "&": r"\&",
                 "#": r"\#", "_": r"\_", "%": r"\%", "~": r"\textasciitilde{}",
                 "^": r"\textasciicircum{}", "|": r"\textbar{}", "<": r"\textless{}",
                 ">": r"\textgreater{}", "±": r"$\pm$"}


LATEX_MARKS = {"↑": r"$\uparrow$", "↓": r"$\downarrow$", "≈": r"$\approx$"}  # bench.report.stats marks


def _escape(text: str, style: str) -> str:
    """Free text (labels, error messages) made safe for the output format."""
    if style == "html":
        return html.escape(text)
    if style == "latex":
        return "".join(LATEX_SPECIAL.get(ch, ch) for ch in text)
    return text


def pivot(summary: pd.DataFrame, dataset: str, style: str = "plain",
          mark_best: bool = True) -> pd.DataFrame:
    """Rows: table rows (method labels); columns: sparsities. The highest mean of each column is
    bold (every tie), among groups with at least one ok seed."""
    df = summary[summary["dataset"] == dataset]
    rows = list(dict.fromkeys(df["row"]))
    sparsities = sorted(df["sparsity"].unique())
    table = pd.DataFrame(index=rows, columns=[f"{s:g}" for s in sparsities], dtype=object)
    best = df.groupby("sparsity")["mean"].max() if mark_best else {}
    for record in df.to_dict("records"):
        is_best = bool(mark_best and record["n"] and record["mean"] == best[record["sparsity"]])
        table.loc[record["row"], f"{record['sparsity']:g}"] = cell_text(record, is_best, style)
    table.index.name = "method"
    return table.fillna("—")


def accuracy_table(merged: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Rows: method labels; columns: sparsities. Cells: mean ± std (n) of ok seeds, and the count
    of failed or missing seeds, never a number that is not a result. The compact form that
    `bench.run` prints after a run ("[1 failed]"); the report's tables (`pivot`) say why."""
    summary = summarize(merged)
    summary["text"] = [compact_text(r) for r in summary.to_dict("records")]
    df = summary[summary["dataset"] == dataset]
    table = pd.DataFrame(index=list(dict.fromkeys(df["row"])),
                         columns=[f"{s:g}" for s in sorted(df["sparsity"].unique())], dtype=object)
    for r in df.to_dict("records"):
        table.loc[r["row"], f"{r['sparsity']:g}"] = r["text"]
    table.index.name = "method"
    return table.fillna("—")


def compact_text(s: dict) -> str:
    """mean ± std (n) and the counts of seeds that are not results: '[1 failed, 2 missing]'."""
    text = "" if not s["n"] else f"{s['mean']:.2f} (n=1)" if s["n"] == 1 else \
        f"{s['mean']:.2f} ± {s['std']:.2f} (n={s['n']})"
    notes = [f"{s[k]} {k}" for k in NOT_OK if s[k]]
    if s.get("off_target"):
        notes.append(f"{s['off_target']} off target")
    if notes:
        text = (text + " " if text else "") + "[" + ", ".join(notes) + "]"
    return text


def to_markdown(table: pd.DataFrame) -> str:
    header = "| " + " | ".join([table.index.name or ""] + list(map(str, table.columns))) + " |"
    rule = "|" + "---|" * (len(table.columns) + 1)
    rows = ["| " + " | ".join([str(idx)] + [str(v).replace("|", "\\|") for v in row]) + " |"
            for idx, row in zip(table.index, table.values)]
    return "\n".join([header, rule, *rows])


def to_latex(table: pd.DataFrame, caption: str = "", label: str = "") -> str:
    """A booktabs tabular; cell texts must already be LaTeX (pivot(..., style="latex"))."""
    cols = "l" + "c" * len(table.columns)
    head = " & ".join([_escape(str(table.index.name or ""), "latex")]
                      + [_escape(str(c), "latex") for c in table.columns]) + r" \\"
    body = [" & ".join([_escape(str(i), "latex")] + [str(v) for v in row]) + r" \\"
            for i, row in zip(table.index, table.values)]
    lines = [r"\begin{table}[t]", r"\centering"]
    if caption:
        lines.append(rf"\caption{{{_escape(caption, 'latex')}}}")
    if label:
        lines.append(rf"\label{{{label}}}")
    lines += [rf"\begin{{tabular}}{{{cols}}}", r"\toprule", head, r"\midrule", *body,
              r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def to_html(table: pd.DataFrame) -> str:
    """A plain HTML table; cell texts must already be HTML (pivot(..., style="html"))."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in [table.index.name or ""]
                   + list(table.columns))
    body = "".join("<tr><th>" + html.escape(str(i)) + "</th>"
                   + "".join(f"<td>{v}</td>" for v in row) + "</tr>"
                   for i, row in zip(table.index, table.values))
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>{body}</tbody>\n</table>"


def long_csv(summary: pd.DataFrame) -> pd.DataFrame:
    """The machine-readable form of the accuracy tables: numbers, counts and status per group."""
    cols = ["dataset", "row", "sparsity", "n", "mean", "std", "ci_low", "ci_high", "mark",
            "failed", "missing", "corrupt", "error", "empty_layers", "sparsity_overall",
            "off_target", "off_mean", "off_reached", "precision", *COST_COLUMNS, "text"]
    out = summary[[c for c in cols if c in summary]].rename(columns={
        "row": "method", "mean": "acc_mean_pct", "std": "acc_std_pct",
        "ci_low": "acc_ci95_low_pct", "ci_high": "acc_ci95_high_pct",
        "off_mean": "off_target_acc_mean_pct", "off_reached": "off_target_reached_pct"})
    return out
