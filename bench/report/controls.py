"""Report sections beyond top-1 (issue 23): top-5 accuracy, calibration (ECE) and test NLL per
row and sparsity, and the per-layer sparsity of every row's mask at one chosen sparsity.

Both read what records already hold (`accuracy.top5|ece|nll`, `sparsity.layers`); records written
before these fields existed show as "missing", never as a number or a crash.
"""
from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

import pandas as pd

from bench import catalog
from bench.report import plots
from bench.report.data import ReportData, on_target_ok
from bench.report.sections import safe_name
from bench.report.writer import Image, Paragraph, Table, section

if TYPE_CHECKING:
    from bench.report.writer import Section

METRICS = (("test_top5", "top-5 %", 100.0, 2), ("test_ece", "ECE %", 100.0, 2),
           ("test_nll", "NLL", 1.0, 3))
LAYER_SPARSITY = 0.9  # the default sparsity of the per-layer figure (the nearest in the grid)


def _ok(data: ReportData, dataset: str) -> "pd.DataFrame":
    return on_target_ok(data.merged, dataset)


def metrics_frame(data: ReportData, dataset: str) -> "pd.DataFrame":
    """Long form: row, sparsity, metric means over the on-target ok seeds, n, and how many of
    those seeds' records lack the metrics (written before they were measured)."""
    ok = _ok(data, dataset)
    out = []
    for (row, sparsity), group in ok.groupby(["row", "sparsity"], sort=False):
        entry: dict[str, Any] = {"row": row, "sparsity": sparsity, "n": len(group)}
        for column, _, scale, _ in METRICS:
            values = pd.to_numeric(group[column], errors="coerce") if column in group else \
                pd.Series([math.nan] * len(group))
            present = values.dropna()
            entry[column] = float(present.mean()) * scale if len(present) else math.nan
            entry[f"{column}_missing"] = int(values.isna().sum())
        out.append(entry)
    return pd.DataFrame(out, columns=["row", "sparsity", "n", *[c for c, *_ in METRICS],
                                      *[f"{c}_missing" for c, *_ in METRICS]])


def _text(entry: "pd.Series") -> str:
    parts = []
    for column, _, _, digits in METRICS:
        value = entry[column]
        parts.append("missing" if math.isnan(value) else f"{value:.{digits}f}")
    lacking = max(int(entry[f"{c}_missing"]) for c, *_ in METRICS)
    note = f" ({lacking} of {entry['n']} seeds missing)" if 0 < lacking < entry["n"] else ""
    return " / ".join(parts) + note


def metrics_section(data: ReportData, dataset: str) -> "Section":
    long = metrics_frame(data, dataset)
    stem = f"metrics_{safe_name(dataset)}"
    if long.empty:
        return section(f"{dataset}: top-5, calibration, NLL", Paragraph("No ok cells."), level=3)
    rows = list(dict.fromkeys(long["row"]))
    sparsities = sorted(long["sparsity"].unique())
    table = pd.DataFrame(index=pd.Index(rows, name="method"),
                         columns=[f"{100 * s:g}%" for s in sparsities], dtype=object).fillna("—")
    for _, entry in long.iterrows():
        table.loc[entry["row"], f"{100 * entry['sparsity']:g}%"] = _text(entry)
    return section(
        f"{dataset}: top-5, calibration, NLL", Table(table),
        Paragraph("Each cell: top-5 accuracy % / expected calibration error % (15 equal-width "
                  "confidence bins) / test NLL (nats), means over the on-target ok seeds, from "
                  "the same evaluation pass as the top-1 table. 'missing': records written "
                  f"before these were measured. Numbers: {stem}.csv."),
        level=3, files=[(f"{stem}.csv", long.to_csv(index=False))])


def layer_frame(data: ReportData, dataset: str, sparsity: float) -> "pd.DataFrame":
    """row, layer (in network order), its index, sparsity % of the layer (mean over the on-target
    ok seeds), seeds. Dense stand-ins (small-dense) have no mask and are left out."""
    if data.store is None:  # a report from published CSVs: the one the study published
        path = data.published.with_name(f"layers_{safe_name(dataset)}.csv")
        return pd.read_csv(path) if path.is_file() else pd.DataFrame()
    ok = _ok(data, dataset)
    ok = ok[(ok["sparsity"] == sparsity) & (ok.get("sparsity_over") != "width")]
    records, _ = data.store.load_all(list(ok["id"]))
    by_id = {r["id"]: r for r in records}
    out = []
    for row, group in ok.groupby("row", sort=False):
        per_layer: dict[str, list[float]] = {}
        for cell_id in group["id"]:
            layers = ((by_id.get(cell_id) or {}).get("sparsity") or {}).get("layers") or {}
            for name, (kept, total) in layers.items():
                per_layer.setdefault(name, []).append(100.0 * (1.0 - kept / max(1, total)))
        order = _network_order(by_id.get(group["id"].iloc[0]) or {}, list(per_layer))
        for index, name in enumerate(order):
            values = per_layer[name]
            out.append({"row": row, "layer": name, "index": index,
                        "sparsity_pct": sum(values) / len(values), "seeds": len(values)})
    return pd.DataFrame(out, columns=["row", "layer", "index", "sparsity_pct", "seeds"])


def _network_order(record: dict, names: list[str]) -> list[str]:
    """`names` in the order the network runs them: records store layers with sorted keys. The
    model is built on the meta device (shapes only); where that fails, numbers sort as numbers."""
    def natural(name: str) -> list:
        return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"\.", name)]

    try:
        # deferred: torch's start-up, which `bench.report --help` need not pay
        import torch

        from bench.masks import prunable_modules
        from bench.train.models import build_model

        cfg = record["config"]
        spec = catalog.DATASETS.get(cfg["dataset"])
        model_name = (record.get("extra") or {}).get("model_built", cfg["model"])
        with torch.device("meta"):
            net = build_model(model_name, spec.num_classes, spec.channels, spec.image_size)
        order = [n for n in prunable_modules(net) if n in names]
        if sorted(order) == sorted(names):
            return order
    except Exception:  # a plugin model or dataset this process lacks: fall back
        pass
    return sorted(names, key=natural)


def chosen_sparsity(data: ReportData, dataset: str, wanted: float | None) -> float | None:
    """The grid's sparsity of `dataset` nearest `wanted` (default LAYER_SPARSITY)."""
    m = data.merged
    levels = sorted(m[m["dataset"] == dataset]["sparsity"].unique()) if len(m) else []
    if not levels:
        return None
    target = LAYER_SPARSITY if wanted is None else wanted
    return min(levels, key=lambda s: (abs(s - target), s))


def layer_section(data: ReportData, dataset: str, wanted: float | None = None) -> "Section":
    sparsity = chosen_sparsity(data, dataset, wanted)
    title = f"{dataset}: per-layer sparsity"
    frame = layer_frame(data, dataset, sparsity) if sparsity is not None else None
    if frame is None or frame.empty:
        return section(title, Paragraph("No ok cell with per-layer counts."), level=3)
    stem = f"layers_{safe_name(dataset)}"
    fig = plots.layer_sparsity(frame, f"{dataset}: sparsity of each layer at {100 * sparsity:g} %")
    return section(
        title, Image(f"{stem}.png", f"{dataset}: per-layer sparsity", fig, stem),
        Paragraph(f"Each prunable layer's sparsity (%) in network order, at {100 * sparsity:g} % "
                  "overall (`bench.report --layer-sparsity S` picks another), mean over the "
                  "on-target ok seeds; 100 % is an emptied layer. Global rules move sparsity "
                  "between layers, uniform keeps it flat; a layer-matched random row lies on "
                  f"the row it copies. Numbers: {stem}.csv."),
        level=3, files=[(f"{stem}.csv", frame.to_csv(index=False))])
