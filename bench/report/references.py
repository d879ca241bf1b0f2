"""Published numbers beside ours: every reference row that matches a cell's settings, with the
differences in protocol the harness knows about (results/references/README.md).

A reference row is data: its source (paper, table or file), network, dataset, method, sparsity,
retraining and budget, the dense schedule's length, mean accuracy with its spread and number of
trials, and how it was measured (test split, which epoch's accuracy, the prunable layers, the
architecture). The files are results/references/*.csv; the paper under study's printed accuracies
(results/paper/reported.csv) join them as one more source. A row matches a report row when the
dataset, network, method, retraining and budget agree (a reference that does not state one
matches any) and the sparsity is within MATCH_PP points (counted over all parameters where the
reference prints that, else over the prunable weights).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from bench.report.data import REPO, ReportData
from bench.report.writer import Paragraph, Section, Table, section

REFERENCES_DIR = REPO / "results" / "references"
COLUMNS = ("source", "table_or_file", "network", "dataset", "method", "sparsity_pct",
           "sparsity_over", "retraining", "budget_epochs", "dense_epochs", "accuracy_pct", "std",
           "n_trials", "test_split", "accuracy_at", "prunable", "architecture", "note")
MATCH_PP = 0.1  # sparsity points; the references print two decimals
# How this harness measures, for the protocol comparison
OURS = {"test_split": "the whole official test split", "accuracy_at": "final epoch",
        "architecture": "He et al.'s CIFAR ResNet: 1x1 projection shortcuts where the shape "
                        "changes (bench/train/models.py)"}
NOT_STATED = "not stated"


def load_references(folder: Path = REFERENCES_DIR, reported: pd.DataFrame | None = None
                    ) -> pd.DataFrame:
    """Every reference row: the CSVs in `folder`, then the paper under study's accuracies."""
    frames = [pd.read_csv(p, dtype=str, keep_default_na=False)
              for p in sorted(Path(folder).glob("*.csv"))]
    if reported is not None and len(reported):
        frames.append(_paper_rows(reported))
    if not frames:
        return pd.DataFrame(columns=COLUMNS)
    out = pd.concat(frames, ignore_index=True)
    for c in COLUMNS:
        if c not in out:
            out[c] = ""
    out = out[list(COLUMNS)].fillna("")
    for c in ("sparsity_pct", "accuracy_pct", "std"):
        out[c] = pd.to_numeric(out[c], errors="coerce")
    return out


def _paper_rows(reported: pd.DataFrame) -> pd.DataFrame:
    acc = reported[reported["metric"] == "accuracy_pct"]
    return pd.DataFrame({
        "source": acc["source"] + " (the paper under study)", "table_or_file": "reported.csv",
        "network": ["resnet18" if "ResNet-18" in str(n) else "" for n in acc["note"]],
        "dataset": acc["dataset"], "method": acc["method"],
        "sparsity_pct": acc["sparsity_overall_pct"], "sparsity_over": "all parameters",
        "retraining": "", "budget_epochs": "", "dense_epochs": "", "accuracy_pct": acc["value"],
        "std": "", "n_trials": "", "test_split": NOT_STATED, "accuracy_at": NOT_STATED,
        "prunable": NOT_STATED, "architecture": NOT_STATED, "note": acc["note"]})


def cell_settings(cells: Iterable[Any]) -> pd.DataFrame:
    """Per cell id, what a reference is matched and compared on."""
    return pd.DataFrame([{
        "id": c.id, "network": c.model, "method": c.method,
        "retraining": "none" if c.sparsity == 0 else c.option_dict.get("retraining", "restart"),
        "budget_epochs": "" if c.sparsity == 0 else str(c.sparse_epochs),
        "dense_epochs": str(c.dense_epochs), "prunable": c.prunable,
        "train_fraction": c.train_fraction} for c in cells])


def protocol_differences(ref: pd.Series, ours: pd.Series) -> list[str]:
    """What differs between how the reference and our cell were measured, as far as known."""
    out = []
    for key in ("test_split", "accuracy_at", "architecture"):
        if ref[key] and ref[key] != OURS[key]:
            out.append(f"{key.replace('_', ' ')}: {ref[key]} (ours: {OURS[key]})")
    if ref["prunable"] and ref["prunable"] != ours["prunable"]:
        out.append(f"prunable: {ref['prunable']} (ours: {ours['prunable']})")
    if ref["dense_epochs"] and ref["dense_epochs"] != ours["dense_epochs"]:
        out.append(f"dense epochs: {ref['dense_epochs']} (ours: {ours['dense_epochs']})")
    if float(ours["train_fraction"]) < 1.0:
        out.append(f"ours trains on {100 * float(ours['train_fraction']):g} % of the training split")
    if not ref["retraining"] and ours["retraining"] != "none":
        out.append("retraining not stated")
    if ref["note"]:
        out.append(str(ref["note"]))
    return out


def match(data: ReportData, refs: pd.DataFrame) -> pd.DataFrame:
    """One row per (reference row, our table row) that match."""
    cols = ["dataset", "network", "row", "sparsity", "retraining", "budget", "reference",
            "source", "ours", "inside", "protocol differences"]
    ok = data.merged[data.merged["status"] == "ok"]
    if refs.empty or ok.empty or not data.cells:  # a report from published CSVs has no configs
        return pd.DataFrame(columns=cols)
    settings = cell_settings(data.cells).set_index("id")
    ok = ok[ok["id"].isin(settings.index)]
    rows = []
    for (dataset, row, sparsity), group in ok.groupby(["dataset", "row", "sparsity"], sort=False):
        ours = settings.loc[group["id"].iloc[0]]
        summary = data.summary[(data.summary["dataset"] == dataset) & (data.summary["row"] == row)
                               & (data.summary["sparsity"] == sparsity)]
        if summary.empty:
            continue
        s = summary.iloc[0]
        overall = 100.0 * pd.to_numeric(group["sparsity_overall"], errors="coerce").mean()
        for _, ref in refs[refs["dataset"] == dataset].iterrows():
            if ref["network"] and ref["network"] != ours["network"]:
                continue
            if ref["method"] and ref["method"] != ours["method"]:
                continue
            if ref["retraining"] and ref["retraining"] != ours["retraining"]:
                continue
            if ref["budget_epochs"] and ref["budget_epochs"] != ours["budget_epochs"]:
                continue
            ours_pct = overall if ref["sparsity_over"] == "all parameters" else 100.0 * sparsity
            tolerance = 1.0 if ref["sparsity_over"] == "all parameters" else MATCH_PP
            if not math.isfinite(ours_pct) or abs(ours_pct - ref["sparsity_pct"]) > tolerance:
                continue
            inside = "" if s["n"] < 2 or not math.isfinite(s["ci_low"]) else \
                ("yes" if s["ci_low"] <= ref["accuracy_pct"] <= s["ci_high"] else "no")
            spread = f" ± {ref['std']:.2f}" if math.isfinite(ref["std"]) else ""
            n = f" (n={ref['n_trials']})" if ref["n_trials"] else ""
            rows.append({"dataset": dataset, "network": ours["network"], "row": row,
                         "sparsity": sparsity, "retraining": ours["retraining"],
                         "budget": ours["budget_epochs"],
                         "reference": f"{ref['accuracy_pct']:.2f}{spread}{n}",
                         "source": f"{ref['source']}, {ref['table_or_file']}", "ours": s["text"],
                         "inside": inside,
                         "protocol differences": "; ".join(protocol_differences(ref, ours))})
    return pd.DataFrame(rows, columns=cols)


def references_section(data: ReportData, folder: Path = REFERENCES_DIR) -> Section:
    title = "Against published references"
    refs = load_references(folder, data.reported)
    intro = Paragraph(
        "Every published number whose settings match one of our rows (results/references/: "
        "source, network, method, retraining, budget, sparsity within "
        f"{MATCH_PP:g} points of the prunable weights, or 1 point of all parameters where the "
        "source prints that). 'inside': whether the reference's mean lies in the 95 % t interval "
        "of our seeds (empty below two seeds). The protocol differences are those the harness "
        "knows of; a reference measured differently is a sanity check, not a test.")
    table = match(data, refs)
    if table.empty:
        return section(title, intro, Paragraph(
            f"No reference matches this grid's rows ({len(refs)} reference rows known; the "
            "renda2020 grid reproduces the settings of results/references/renda2020.csv)."))
    return section(title, intro, Table(table.set_index("dataset")),
                   files=[("references_vs_ours.csv", table.to_csv(index=False))])
