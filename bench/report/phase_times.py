"""Where a cell's time went: images/s and share of time per phase, read from its record.

`python -m bench.run --profile` prints this after a run (for every finished cell of the grid, so
it also reads a Slurm run's records). The numbers come from the trainer's own clock, so a GPU run
prints the same table with no extra synchronisation inside the step.
"""
from __future__ import annotations

import re
from typing import Any, Iterable


def phase_group(name: str) -> str:
    """Phase names of iterative methods carry their round (round3, round3-a, round3-prune): fold
    them into 'rounds' (training) and 'rounds-<part>' so tables have one row per kind."""
    m = re.fullmatch(r"round\d+(?:-(.+))?", name)
    if not m:
        return name
    part = m.group(1)
    return "rounds" if part in (None, "a", "b") else f"rounds-{part}"


def phase_rows(record: dict[str, Any], fold_rounds: bool = True) -> list[dict[str, Any]]:
    """One row per phase, in the order the cell ran them; with `fold_rounds`, an iterative
    method's rounds are summed per kind (see phase_group) and `count` says how many phases each
    row holds. `share` is of all the record's phase seconds, shared ones included at what the run
    that computed them took; images/s is the row's training samples over its seconds (per-epoch
    validation included), None for phases that do not train or records from before images were
    counted."""
    phases = record.get("phases") or {}
    total = sum(float(p.get("seconds") or 0.0) for p in phases.values())
    order = [n for n in record.get("phase_order") or [] if n in phases]
    order += sorted(set(phases) - set(order), key=_natural)  # records from before phase_order
    rows: dict[str, dict[str, Any]] = {}
    for name in order:
        p = phases[name]
        row = rows.setdefault(phase_group(name) if fold_rounds else name, {
            "epochs": 0, "images": 0, "seconds": 0.0, "count": 0,
            "shared": bool(p.get("shared")), "cached": bool(p.get("cached"))})
        row["epochs"] += int(p.get("epochs") or 0)
        row["images"] += int(p.get("images") or 0)
        row["seconds"] += float(p.get("seconds") or 0.0)
        row["count"] += 1
    return [{"phase": name, **row,
             "images_per_s": row["images"] / row["seconds"]
             if row["images"] and row["seconds"] > 0 else None,
             "share": row["seconds"] / total if total > 0 else 0.0}
            for name, row in rows.items()]


def _natural(name: str) -> list:
    """round2 before round10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def format_profile(record: dict[str, Any]) -> str:
    cfg = record.get("config", {})
    prov = record.get("provenance", {})
    cost = record.get("cost", {})
    head = (f"{record.get('label', cfg.get('method'))} {cfg.get('dataset')} s={cfg.get('sparsity')} "
            f"seed={cfg.get('seed')} [{record.get('id')}] on {prov.get('device_name') or '?'} "
            f"({prov.get('device', '?')}): {float(cost.get('seconds_total') or 0):.1f} s, of "
            f"which {float(cost.get('seconds_cell') or 0):.1f} s this cell's own")
    lines = [head, "| phase | epochs | images | seconds | images/s | share |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in phase_rows(record):
        tag = " (shared, cached)" if r["cached"] else " (shared)" if r["shared"] else ""
        tag += f" ×{r['count']}" if r["count"] > 1 else ""
        ips = f"{r['images_per_s']:,.0f}" if r["images_per_s"] is not None else "—"
        images = f"{r['images']:,}" if r["images"] else "—"
        lines.append(f"| {r['phase']}{tag} | {r['epochs']} | {images} | {r['seconds']:.2f} | "
                     f"{ips} | {100 * r['share']:.0f}% |")
    return "\n".join(lines)


def format_profiles(records: Iterable[dict[str, Any]]) -> str:
    blocks = [format_profile(r) for r in records if r.get("status") == "ok"]
    return "\n\n".join(blocks) if blocks else "profile: no finished cells to show"
