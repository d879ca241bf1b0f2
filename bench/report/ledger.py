"""The epoch ledger: what each row trained, in epochs over the training split, and whether the rows
a claim compares had matched budgets (issue 32).

The paper prints no epoch counts, so "the paper's proportions" are those of the `paper` grid
(bench/plan/grids.py), which takes them from the recipes of the papers it compares: dense training 160
epochs, retraining after one-shot pruning 50, from-initialisation methods (the EPSD family) 200,
COLT's rounds and final ticket 50 each, EGP's rounds 160. A scaled-down study keeps them when
its budgets are the same fractions of its dense budget.

Rules, per claim, over the rows it compares:
- one-shot rows (tg-oneshot, magnitude, random and their controls): the same dense (or stage-1)
  epochs and the same retraining epochs, exactly;
- from-initialisation rows: their one training run within `budget_tolerance` of the paper's
  from-init / (dense + retraining) proportion of the one-shot rows' dense + retraining;
- COLT: rounds of the paper's round / dense proportion, and a final ticket of the retraining
  budget (the paper grid gives the ticket the one-shot rows' retraining epochs);
- EGP: rounds of the paper's round / dense proportion.
"""
from __future__ import annotations

import math
from typing import Sequence

import pandas as pd

from bench.plan.estimate import relative_cost, rounds_to
from bench.report.gates import BUDGETS, GateResult
from bench.plan.grids import PAPER_BASE, PAPER_PER_METHOD
from bench.plan.thresholds import Thresholds

ONE_SHOT, FROM_INIT, ITERATIVE, DENSE = "one-shot", "from init", "iterative", "dense"
EPSD_METHODS = ("cskd-simple", "cskd-epsd", "pskd-simple", "pskd-epsd", "dlb-simple", "dlb-epsd")
KINDS = {"tg-oneshot": ONE_SHOT, "magnitude": ONE_SHOT, "random": ONE_SHOT, "dense": DENSE,
         **{m: FROM_INIT for m in EPSD_METHODS}, "colt": ITERATIVE, "egp": ITERATIVE}

_DENSE = PAPER_BASE["dense_epochs"]
_RETRAIN = PAPER_PER_METHOD["magnitude"]["sparse_epochs"]
PAPER_PROPORTIONS = {  # each budget as the paper grid sets it, over the budget it is matched to
    "from_init": PAPER_PER_METHOD["pskd-epsd"]["sparse_epochs"] / (_DENSE + _RETRAIN),
    "colt_round": PAPER_PER_METHOD["colt"]["round_epochs"] / _DENSE,
    "colt_ticket": PAPER_PER_METHOD["colt"]["sparse_epochs"] / _RETRAIN,
    "egp_round": PAPER_PER_METHOD["egp"]["round_epochs"] / _DENSE,
}
PAPER_TEACHER_PROPORTION = PAPER_BASE["teacher_epochs"] / _DENSE  # teacher / dense epochs
COLT_PRUNE_FRACTION = 0.15  # COLT's default (methods/colt.py), for rounds the records do not give


def kind_of(method: str) -> str:
    return KINDS.get(method, "other")


def _budget(rows: pd.DataFrame, name: str) -> float | None:
    values = pd.to_numeric(rows[name], errors="coerce").dropna().unique() if name in rows else []
    return float(values[0]) if len(values) == 1 else (math.nan if len(values) > 1 else None)


def round_counts(phases: pd.DataFrame | None) -> dict[str, int]:
    """Rounds each iterative cell ran, from its phases (one 'rounds-prune' entry a round)."""
    if phases is None or phases.empty:
        return {}
    pruned = phases[phases["phase"] == "rounds-prune"]
    return {str(k): int(v) for k, v in pruned.groupby("id").size().items()}


def ledger(merged: pd.DataFrame, dataset: str, phases: pd.DataFrame | None = None
           ) -> pd.DataFrame:
    """One row per (row, sparsity) of the dataset: the row's kind, its budgets and its total
    training in epochs over the training split (COLT's two halves train on half the data each,
    so one round-epoch of both is one epoch)."""
    rounds = round_counts(phases)
    mine = merged[merged["dataset"] == dataset]
    out = []
    for (row, sparsity), cells in mine.groupby(["row", "sparsity"], sort=False):
        method = str(cells["method"].iloc[0])
        kind = kind_of(method)
        dense, retrain, rnd = (_budget(cells, f) for f in
                               ("dense_epochs", "sparse_epochs", "round_epochs"))
        counted = [rounds[i] for i in cells["id"] if i in rounds]
        n_rounds = (max(counted) if counted else
                    rounds_to(sparsity, COLT_PRUNE_FRACTION) if method == "colt" else
                    rounds_to(sparsity, 0.5) if method == "egp" else 0)
        parts: list[tuple[str, float | None]] = []
        if kind == ONE_SHOT:
            parts = [("stage 1" if method == "tg-oneshot" else "dense", dense),
                     ("retrain", retrain)]
        elif kind == DENSE:
            parts = [("dense", dense)]
        elif kind == FROM_INIT:
            parts = [("from init", retrain)]
        elif method == "colt":
            parts = [(f"{n_rounds} rounds × {rnd:g}" if rnd else "rounds",
                      n_rounds * rnd if rnd else None), ("ticket", retrain)]
        elif method == "egp":
            parts = [("dense", dense), (f"{n_rounds} rounds × {rnd:g}" if rnd else "rounds",
                                        n_rounds * rnd if rnd else None)]
        known = [v for _, v in parts if v is not None and not math.isnan(v)]
        out.append({"dataset": dataset, "row": row, "method": method, "sparsity": sparsity,
                    "kind": kind,
                    "dense_epochs": dense, "retrain_epochs": retrain, "round_epochs": rnd,
                    "rounds": n_rounds if kind == ITERATIVE else None,
                    "phases": " + ".join(f"{name} {v:g}" if v is not None and not math.isnan(v)
                                         else f"{name} ?" for name, v in parts) or "—",
                    "total_epochs": sum(known) if len(known) == len(parts) and parts else None})
    return pd.DataFrame(out, columns=["dataset", "row", "method", "sparsity", "kind", "dense_epochs",
                                      "retrain_epochs", "round_epochs", "rounds", "phases",
                                      "total_epochs"])


def _within(value: float, target: float, tolerance: float) -> bool:
    return target > 0 and abs(value / target - 1.0) <= tolerance + 1e-9


def budget_gate(book: pd.DataFrame, rows: Sequence[str], th: Thresholds) -> GateResult:
    """Matched budgets among `rows` (a claim's rows) of one dataset's ledger."""
    mine = book[book["row"].isin(rows)]
    need = (f"equal one-shot budgets; others at the paper grid's proportions "
            f"± {100 * th.budget_tolerance:g} %")
    if mine.empty:
        return GateResult(BUDGETS, False, "not measured", need, "none of the rows ran")
    problems: list[str] = []
    one_shot = mine[mine["kind"] == ONE_SHOT]
    for column, what in (("dense_epochs", "dense/stage-1"), ("retrain_epochs", "retraining")):
        values = sorted(set(one_shot[column].dropna()))
        if len(values) > 1:
            problems.append(f"{what} epochs differ among the one-shot rows: "
                            + ", ".join(f"{v:g}" for v in values))
    dense = one_shot["dense_epochs"].dropna()
    retrain = one_shot["retrain_epochs"].dropna()
    base_dense = float(dense.iloc[0]) if len(dense) else None
    base_retrain = float(retrain.iloc[0]) if len(retrain) else None

    def check(row: str, value: float | None, target: float | None, what: str) -> None:
        if value is None or target is None or math.isnan(value):
            problems.append(f"{row}: {what} not known")
        elif not _within(value, target, th.budget_tolerance):
            problems.append(f"{row}: {what} {value:g} epochs, the paper's proportion gives "
                            f"{target:.3g}")

    for r in mine.drop_duplicates("row").itertuples():
        if r.kind == FROM_INIT:
            target = None if base_dense is None or base_retrain is None else \
                PAPER_PROPORTIONS["from_init"] * (base_dense + base_retrain)
            check(r.row, r.retrain_epochs, target, "training from initialisation")
        elif r.method == "colt":
            check(r.row, r.round_epochs, None if base_dense is None else
                  PAPER_PROPORTIONS["colt_round"] * base_dense, "rounds of")
            check(r.row, r.retrain_epochs, None if base_retrain is None else
                  PAPER_PROPORTIONS["colt_ticket"] * base_retrain, "final ticket")
        elif r.method == "egp":
            check(r.row, r.round_epochs, None if base_dense is None else
                  PAPER_PROPORTIONS["egp_round"] * base_dense, "rounds of")
    value = "matched" if not problems else f"{len(problems)} mismatch(es)"
    detail = "; ".join(problems) if problems else (
        f"one-shot rows: dense {base_dense:g} + retraining {base_retrain:g} epochs"
        if base_dense is not None and base_retrain is not None else "budgets as required")
    return GateResult(BUDGETS, not problems, value, need, detail)


def epoch_equivalents(book_row: pd.Series, model: str, teacher: str, dataset: str,
                      kd: bool, with_teacher: bool = False) -> float:
    """A row's training in epochs of the student's CE step over the training split: a KD step
    adds the teacher's forward (a third of its training step, as bench.plan.estimate counts it);
    `with_teacher` charges a teacher trained for the paper grid's teacher / dense proportion of
    the dense budget, at its own cost per image."""
    total = book_row["total_epochs"]
    if total is None or (isinstance(total, float) and math.isnan(total)):
        return math.nan
    m, t = relative_cost(model, dataset), relative_cost(teacher, dataset)
    factor = 1.0 + t / (3.0 * m) if kd else 1.0
    out = float(total) * factor
    if with_teacher:
        out += PAPER_TEACHER_PROPORTION * float(book_row["dense_epochs"] or 0.0) * t / m
    return out
