"""Accuracy tables from records: methods x sparsities, mean ± std over seeds, per dataset."""
from __future__ import annotations

import math
from typing import Iterable

import pandas as pd

from bench.config import RunConfig


def expected_frame(cells: Iterable[RunConfig]) -> pd.DataFrame:
    """One row per cell the grid asks for, so missing cells show up as missing."""
    return pd.DataFrame([{"id": c.id, "label": c.label, "dataset": c.dataset,
                          "sparsity": c.sparsity, "seed": c.seed,
                          "temperature": c.resolved_temperature()} for c in cells])


def merge_status(expected: pd.DataFrame, records: pd.DataFrame) -> pd.DataFrame:
    cols = ["id", "status", "test_acc", "sparsity_overall", "sparsity_prunable", "seconds",
            "seconds_cell", "seconds_shared", "empty_layers", "error"]
    if records.empty:
        records = pd.DataFrame(columns=cols)
    merged = expected.merge(records[[c for c in cols if c in records]], on="id", how="left")
    merged["status"] = merged["status"].fillna("missing")
    return merged


def fmt_mean_std(values: list[float], scale: float = 100.0, digits: int = 2) -> str:
    if not values:
        return ""
    mean = sum(values) / len(values) * scale
    if len(values) == 1:
        return f"{mean:.{digits}f} (n=1)"
    var = sum((v * scale - mean) ** 2 for v in values) / (len(values) - 1)
    return f"{mean:.{digits}f} ± {math.sqrt(var):.{digits}f} (n={len(values)})"


def accuracy_table(merged: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Rows: method labels; columns: sparsities. Cells: mean ± std (n) of ok seeds, and the count
    of failed or missing seeds, never a number that is not a result."""
    df = merged[merged["dataset"] == dataset]
    labels = list(dict.fromkeys(df["label"]))
    sparsities = sorted(df["sparsity"].unique())
    table = pd.DataFrame(index=labels, columns=[f"{s:g}" for s in sparsities], dtype=object)
    for (label, sparsity), group in df.groupby(["label", "sparsity"]):
        ok = group[group["status"] == "ok"]["test_acc"].astype(float).tolist()
        text = fmt_mean_std(ok)
        failed = int((group["status"] == "failed").sum())
        missing = int((group["status"] == "missing").sum())
        notes = [f"{failed} failed"] * bool(failed) + [f"{missing} missing"] * bool(missing)
        if notes:
            text = (text + " " if text else "") + "[" + ", ".join(notes) + "]"
        table.loc[label, f"{sparsity:g}"] = text
    table.index.name = "method"
    return table.fillna("—")


def to_markdown(table: pd.DataFrame) -> str:
    header = "| " + " | ".join([table.index.name or ""] + list(table.columns)) + " |"
    rule = "|" + "---|" * (len(table.columns) + 1)
    rows = ["| " + " | ".join([str(idx)] + [str(v) for v in row]) + " |"
            for idx, row in zip(table.index, table.values)]
    return "\n".join([header, rule, *rows])
