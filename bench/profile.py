"""Where a cell's time went: images/s and share of time per phase, read from its record.

`python -m bench.run --profile` prints this after a run (for every finished cell of the grid, so
it also reads a Slurm run's records). The numbers come from the trainer's own clock, so a GPU run
prints the same table with no extra synchronisation inside the step.
"""
from __future__ import annotations

import re
from typing import Any, Iterable


def phase_rows(record: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per phase, in the order the cell ran them. `share` is of all the record's phase
    seconds, shared ones included at what the run that computed them took; images/s is the
    phase's training samples over its seconds (per-epoch validation included), None for phases
    that do not train or records written before images were counted."""
    phases = record.get("phases") or {}
    total = sum(float(p.get("seconds") or 0.0) for p in phases.values())
    order = [n for n in record.get("phase_order") or [] if n in phases]
    order += sorted(set(phases) - set(order), key=_natural)  # records from before phase_order
    rows = []
    for name in order:
        p = phases[name]
        seconds = float(p.get("seconds") or 0.0)
        images = int(p.get("images") or 0)
        rows.append({"phase": name, "epochs": int(p.get("epochs") or 0), "images": images,
                     "seconds": seconds,
                     "images_per_s": images / seconds if images and seconds > 0 else None,
                     "share": seconds / total if total > 0 else 0.0,
                     "shared": bool(p.get("shared")), "cached": bool(p.get("cached"))})
    return rows


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
        ips = f"{r['images_per_s']:,.0f}" if r["images_per_s"] is not None else "—"
        images = f"{r['images']:,}" if r["images"] else "—"
        lines.append(f"| {r['phase']}{tag} | {r['epochs']} | {images} | {r['seconds']:.2f} | "
                     f"{ips} | {100 * r['share']:.0f}% |")
    return "\n".join(lines)


def format_profiles(records: Iterable[dict[str, Any]]) -> str:
    blocks = [format_profile(r) for r in records if r.get("status") == "ok"]
    return "\n\n".join(blocks) if blocks else "profile: no finished cells to show"
