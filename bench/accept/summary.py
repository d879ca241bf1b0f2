"""The run as markdown, printed as each line is known (a GPU session watching the log sees every
method as it ends) and kept for summary.md; summary.json beside it holds the same facts as data."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from bench.store import atomic_write_bytes


class Report:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def emit(self, text: str = "") -> None:
        print(text, flush=True)
        self.lines.append(text)

    def heading(self, number: int, title: str) -> None:
        self.emit(f"\n## {number}. {title}\n")

    def table(self, header: Sequence[str], rows: Sequence[Sequence[Any]] = ()) -> None:
        self.emit("| " + " | ".join(header) + " |")
        self.emit("|" + " --- |" * len(header))
        for row in rows:
            self.row(row)

    def row(self, cells: Sequence[Any]) -> None:
        self.emit("| " + " | ".join(str(c) for c in cells) + " |")

    def markdown(self) -> str:
        return "\n".join(self.lines).lstrip("\n") + "\n"


def write_summary(out: Path, report: Report, data: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "summary.md", report.markdown().encode())
    atomic_write_bytes(out / "summary.json",
                       json.dumps(data, indent=1, default=str).encode() + b"\n")


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def ratio_verdict(value: float, target: float, tiny: bool) -> str:
    """"met" / "NOT met" against a >= target; a tiny run's few steps measure nothing."""
    if tiny:
        return "tiny run: not a measurement"
    return "met" if value >= target else "NOT met"
