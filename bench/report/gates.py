"""Validity gates: when a claim of the paper can be judged at all (issue 32).

A verdict on "the teacher-guided importance beats magnitude" means something only where the
teacher knows more than the student, the paper's first stage does what it says, the networks have
finished learning, the rows compared trained for matched budgets and every row the claim compares
is present. Each of those is a gate: a number measured on the records and a threshold declared
before the study ran (the defaults below, or the grid's own `gates`). A claim whose gates fail is
"not testable here"; its contrasts are still shown, as observations.

Every check is a pure function over the report's frames (one row per cell: `merged`; one row per
epoch: `curves`), so the same gates come out of a results store and of a report's published
`records.csv` and `curves.csv`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import pandas as pd

from bench.plan.thresholds import Thresholds

TEACHER, STAGE1, CONVERGED, BUDGETS, ROWS = (
    "teacher margin", "stage 1 works", "converged", "matched budgets", "row set")
GATES = (TEACHER, STAGE1, CONVERGED, BUDGETS, ROWS)


@dataclass(frozen=True)
class GateResult:
    gate: str  # one of GATES
    passed: bool
    value: str  # what was measured, formatted
    threshold: str
    detail: str = ""


# --- the dense networks: the teacher, the CE student, the teacher-guided student -----------------


def _by_seed(cells: pd.DataFrame, column: str) -> dict[int, float]:
    """The first number `column` holds for each seed (in %): one value a seed, however many of
    its cells carry it."""
    if column not in cells or cells.empty:
        return {}
    values = cells.assign(v=pd.to_numeric(cells[column], errors="coerce")).dropna(
        subset=["v"]).groupby("seed")["v"].first()
    return {int(k): 100.0 * float(v) for k, v in values.items()}


def dense_ce_by_seed(ok: pd.DataFrame) -> dict[int, float]:
    """The dense CE student's test accuracy per seed (in %): the `dense` row at 0 %, else the dense
    network the magnitude (or random) rows pruned."""
    dense = ok[(ok["row"] == "dense") & (ok["sparsity"] == 0)]
    if len(dense):
        return _by_seed(dense, "test_acc")
    return _by_seed(ok[ok["method"].isin(("magnitude", "random"))], "dense_test_acc")


def stage1_by_seed(ok: pd.DataFrame) -> dict[int, float]:
    """The teacher-guided dense student's test accuracy per seed (in %), as tg-oneshot measured
    it before pruning."""
    return _by_seed(ok[ok["method"] == "tg-oneshot"], "dense_test_acc")


def teacher_by_seed(ok: pd.DataFrame) -> dict[int, float]:
    """The teacher's test accuracy per seed (in %), as the cells that learned from it measured
    it: one value a seed, however many cells of that seed used it."""
    return _by_seed(ok, "teacher_test_acc")


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    return sum(values) / len(values) if values else math.nan


def teacher_margin(ok: pd.DataFrame, th: Thresholds) -> GateResult:
    """Teacher minus dense CE student, paired by seed and averaged over the seeds (a teacher
    trained per seed is weighed once a seed, not once a cell)."""
    teacher, dense = teacher_by_seed(ok), dense_ce_by_seed(ok)
    need = f"≥ {th.teacher_margin:+g} points"
    if not teacher or not dense:
        missing = "the teacher's test accuracy" if not teacher else "a dense CE student"
        return GateResult(TEACHER, False, "not measured", need, f"the records hold no {missing}")
    seeds = sorted(set(teacher) & set(dense))
    if not seeds:
        return GateResult(TEACHER, False, "not measured", need,
                          "needs the teacher and the dense CE student of the same seeds")
    t, d = _mean(teacher[s] for s in seeds), _mean(dense[s] for s in seeds)
    margin = t - d
    return GateResult(TEACHER, margin >= th.teacher_margin, f"{margin:+.2f} points", need,
                      f"teacher {t:.2f} %, dense CE student {d:.2f} % (paired over "
                      f"{len(seeds)} seeds)")


def stage1(ok: pd.DataFrame, th: Thresholds) -> GateResult:
    tg, ce = stage1_by_seed(ok), dense_ce_by_seed(ok)
    seeds = sorted(set(tg) & set(ce))
    need = f"≥ {-th.stage1_tolerance:+g} points"
    if not seeds:
        return GateResult(STAGE1, False, "not measured", need,
                          "needs the teacher-guided and the CE dense student of the same seeds")
    diff = _mean(tg[s] - ce[s] for s in seeds)
    return GateResult(STAGE1, diff >= -th.stage1_tolerance, f"{diff:+.2f} points", need,
                      f"teacher-guided dense student {_mean(tg[s] for s in seeds):.2f} % − CE "
                      f"{_mean(ce[s] for s in seeds):.2f} % (paired over {len(seeds)} seeds)")


# --- convergence -------------------------------------------------------------------------------

NOT_JUDGED_PHASES = ("teacher",)  # the teacher is judged by its margin, not by its curve


def plateau_gains(curves: pd.DataFrame, window: int) -> pd.DataFrame:
    """Per (row, sparsity, seed, phase): the mean validation accuracy (points) of the last
    `window` epochs minus that of the `window` before; NaN where the phase has fewer than
    2 × window epochs (too short to judge)."""
    out = []
    for (row, sparsity, seed, phase), g in curves.groupby(
            ["row", "sparsity", "seed", "phase"], sort=False):
        if phase in NOT_JUDGED_PHASES:
            continue
        acc = list(g.sort_values("epoch")["val_acc"])
        gain = (_mean(acc[-window:]) - _mean(acc[-2 * window:-window])
                if len(acc) >= 2 * window else math.nan)
        out.append({"row": row, "sparsity": sparsity, "seed": seed, "phase": phase,
                    "epochs": len(acc), "gain": gain})
    return pd.DataFrame(out, columns=["row", "sparsity", "seed", "phase", "epochs", "gain"])


def converged(curves: pd.DataFrame | None, rows: Sequence[str], th: Thresholds,
              levels: Sequence[float] | None = None) -> GateResult:
    """Every phase of every compared row (mean over seeds, per sparsity; only at `levels` where
    given) within the plateau threshold; a phase too short to judge fails."""
    need = f"< {th.plateau_gain:g} points over the last {th.plateau_window} epochs"
    mine = None
    if curves is not None and len(curves):
        mine = curves[curves["row"].isin(rows)]
        if levels is not None:
            mine = mine[mine["sparsity"].isin(list(levels))]
    if mine is None or mine.empty:
        return GateResult(CONVERGED, False, "not measured", need,
                          "no per-epoch validation history of these rows in the records")
    gains = plateau_gains(mine, th.plateau_window)
    # a seed too short to judge makes its phase too short, not a mean over the other seeds
    per = gains.groupby(["row", "sparsity", "phase"], sort=False).agg(
        gain=("gain", lambda g: g.mean(skipna=False)), epochs=("epochs", "min")).reset_index()
    short = per[per["gain"].isna()]
    rising = per[per["gain"] >= th.plateau_gain].sort_values("gain", ascending=False)
    judged = per["gain"].dropna()
    value = f"largest gain {judged.max():+.2f} points" if len(judged) else "too short to judge"
    problems = [f"{r.row} {r.phase} at {r.sparsity:g}: {r.gain:+.2f}"
                for r in rising.itertuples()]
    problems += [f"{r.row} {r.phase} at {r.sparsity:g}: {r.epochs} epochs, too short to judge"
                 for r in short.itertuples()]
    detail = (f"{len(per)} phases judged; still rising: " + "; ".join(problems[:4])
              + (f" (+{len(problems) - 4} more)" if len(problems) > 4 else "")) if problems \
        else f"{len(per)} phases (row × sparsity × phase), each flat within the threshold"
    return GateResult(CONVERGED, not problems, value, need, detail)
