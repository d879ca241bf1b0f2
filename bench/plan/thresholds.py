"""The thresholds of the claims' validity gates (bench/report/gates.py), declared before a study runs:
the defaults below, or a grid's own `gates` (a mapping of these names; grid files: `gates:`).
Kept apart from the checks so that a grid validates them without importing pandas."""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Mapping

from bench.registry import UsageError


@dataclass(frozen=True)
class Thresholds:
    """The gates' thresholds; a grid may set any of them (`gates:` in a grid file)."""

    # Accuracy points the teacher must lead the dense CE student by (mean over seeds). A teacher
    # barely above the student has nothing to teach: its guidance cannot be told from noise of a
    # few seeds (about 1 point on CIFAR-10), so 4 points leaves room for an effect to show.
    teacher_margin: float = 4.0
    # Points the teacher-guided dense student may trail the CE one (mean over seeds) before stage
    # 1 counts as not working: about one seed-to-seed standard deviation of a dense network.
    stage1_tolerance: float = 1.0
    # A phase has converged when the mean validation accuracy of its last `plateau_window` epochs
    # exceeds that of the window before by less than this many points (mean over seeds). A phase
    # still gaining this much would have kept improving: comparing such networks ranks how fast
    # they train, not where they end. Several epochs and seeds are averaged because one reading
    # of a small validation split moves by about a point by chance.
    plateau_gain: float = 1.0
    plateau_window: int = 3
    # Relative slack when budgets must be in the paper grid's proportions (the paper prints no
    # epoch counts; bench/plan/grids.py derives them): its own from-initialisation budget is 200
    # epochs against 160 + 50, 5 % short, and scaled-down budgets round to whole epochs.
    budget_tolerance: float = 0.10


THRESHOLD_REASONS = {
    "teacher_margin": "a teacher barely above the student has nothing to teach that a few seeds "
                      "could show",
    "stage1_tolerance": "about one seed-to-seed standard deviation of a dense network",
    "plateau_gain": "a phase still gaining this much over its last epochs had not finished "
                    "learning",
    "plateau_window": "epochs averaged on each side, against the noise of one validation reading",
    "budget_tolerance": "the paper grid's own from-initialisation budget is 5 % short of dense + "
                        "retraining; scaled budgets round to whole epochs",
}
THRESHOLD_FIELDS = tuple(f.name for f in fields(Thresholds))


def thresholds_from(values: Mapping[str, Any] | None, source: str = "gates") -> Thresholds:
    """A grid's `gates` mapping as Thresholds; unknown names and bad values are usage errors."""
    values = dict(values or {})
    unknown = sorted(set(values) - set(THRESHOLD_FIELDS))
    if unknown:
        raise UsageError(f"{source}: unknown gate threshold {unknown[0]!r}; valid: "
                         f"{', '.join(THRESHOLD_FIELDS)}")
    for name, value in values.items():
        whole = name == "plateau_window"
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and \
            math.isfinite(value) and value >= (1 if whole else 0) and \
            (not whole or float(value).is_integer())
        if not ok:
            raise UsageError(f"{source}: {name}={value!r} is invalid; expected "
                             f"{'an integer >= 1' if whole else 'a number >= 0'}")
    return Thresholds(**{k: (int(v) if k == "plateau_window" else float(v))
                         for k, v in values.items()})


def grid_thresholds(grid: Any) -> Thresholds:
    """The thresholds a grid declared (defaults where it declared none): what every report
    section that applies a gate reads, so they cannot disagree."""
    return thresholds_from(getattr(grid, "gates", None), f"grid {grid.name}")
