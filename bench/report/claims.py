"""The paper's four claims, judged on whatever a results store holds (a report section).

"Stage 1" is the paper's first stage as a whole: the dense student trained with the teacher
(L_total) and the Taylor importance accumulated during that training. No row here separates the
two: magnitude and random prune the CE-trained dense network, tg-oneshot the teacher-guided one.

A claim is judged in three steps, each written once here:

1. **Gates** (bench/report/gates.py, bench/report/ledger.py): the conditions under which the claim can be judged
   at all — the teacher's margin, stage 1 working, converged phases, matched budgets, the claim's
   full row set. Any failed gate makes the claim "not testable here", naming the gates; its tests
   are still shown, as observations.
2. **A fixed family of tests**: every contrast the claim defines (`better` row against `worse`
   row) at every sparsity the grid asked both rows for (from `min_sparsity` on). Each test
   is a paired comparison over the seeds both rows have an on-target ok result for
   (bench.report.stats.paired). Holm's correction runs over the whole family: a test that could not be
   run counts in it with p = 1, so a missing row can never make the others look stronger.
3. **A symmetric verdict** over the family's marks: supported when at least one test is
   significantly for the claim and none against; contradicted in mirror; mixed when both happen;
   not shown when none is significant.

The cost claim is judged the same way, with its own test: COLT's training seconds over the
one-shot row's, per seed pair (evaluation excluded: COLT tests every round; the teacher excluded:
it is trained once and reported on its own), the log ratio tested against log ORDER_OF_MAGNITUDE
(√10: a ratio nearer 10× than 1× on a log scale, which the paper's own 276 / 27.82 = 9.9×
passes) with the paired test, Holm over the sparsities; for the claim when significantly above,
against when significantly below. Beside it, the ratio's 95 % t interval and the ratio of
epoch-equivalents from the budgets (exact, scale-free), without and with a teacher charged at the
paper grid's teacher / dense proportion.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import pandas as pd

from bench import gates, ledger, stats
from bench.report.gates import BUDGETS, CONVERGED, ROWS, STAGE1, TEACHER, GateResult
from bench.report.data import on_target_ok
from bench.plan.thresholds import Thresholds

HIGH = 0.9  # "high sparsity": the paper's high columns on CIFAR are 90 % and above
ORDER_OF_MAGNITUDE = math.sqrt(10.0)
EPSD_ROWS = ledger.EPSD_METHODS
SUPPORTED, CONTRADICTED, MIXED, NOT_SHOWN = "supported", "contradicted", "mixed", "not shown"
NOT_TESTABLE = "not testable here"
FOR, AGAINST = stats.BETTER, stats.WORSE


@dataclass(frozen=True)
class Contrast:
    better: str  # the row the claim puts ahead
    worse: str
    isolates: str  # what the pair varies, in a few words


@dataclass(frozen=True)
class Claim:
    key: str
    text: str
    contrasts: tuple[Contrast, ...]
    min_sparsity: float = 0.0
    gates: tuple[str, ...] = (TEACHER, STAGE1, CONVERGED, BUDGETS, ROWS)

    @property
    def rows(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r for c in self.contrasts for r in (c.better, c.worse)))


CLAIMS = (
    Claim("importance", "teacher-guided importance beats magnitude at high sparsity", (
        Contrast("tg-oneshot-ft", "magnitude", "stage 1 vs CE + |w|, both CE fine-tuning"),
        Contrast("tg-oneshot-kd", "magnitude-kd", "stage 1 vs CE + |w|, both KD retraining"),
        Contrast("tg-oneshot-kd", "magnitude", "score and retraining, as the paper compares"),
        Contrast("tg-oneshot-ft", "random[match=tg-oneshot]",
                 "stage 1 vs random, same per-layer counts, both CE"),
    ), HIGH),
    # the same mask retrained two ways: stage 1 does not enter the contrast
    Claim("kd", "KD retraining beats CE fine-tuning", (
        Contrast("tg-oneshot-kd", "tg-oneshot-ft", "retraining (teacher-guided mask)"),
        Contrast("magnitude-kd", "magnitude", "retraining (magnitude mask)"),
    ), gates=(TEACHER, CONVERGED, BUDGETS, ROWS)),
    Claim("epsd", "it beats the EPSD family at high sparsity", tuple(
        Contrast("tg-oneshot-kd", row, "method against an EPSD-family baseline")
        for row in EPSD_ROWS), HIGH),
)
ONE_SHOT_ROW, COLT_ROW = "tg-oneshot-kd", "colt"
COST = Claim("cost", "it is an order of magnitude cheaper than COLT", (
    Contrast(ONE_SHOT_ROW, COLT_ROW, "training time: one-shot against iterative"),),
    gates=(BUDGETS, ROWS))
ALL_CLAIMS = CLAIMS + (COST,)
EVAL_PHASES = ("evaluate", "rounds-eval")


@dataclass(frozen=True)
class Verdict:
    dataset: str
    claim: str
    verdict: str
    detail: str
    failed_gates: tuple[str, ...] = ()


def verdict_from(up: int, down: int) -> str:
    """The one rule, the same in both directions."""
    if up and down:
        return MIXED
    if up:
        return SUPPORTED
    if down:
        return CONTRADICTED
    return NOT_SHOWN


def contrast_levels(merged: pd.DataFrame, dataset: str, claim: Claim, c: Contrast
                    ) -> list[float]:
    """The sparsities a contrast is tested at: those the grid asked both of its rows for
    (whatever became of the cells), from the claim's minimum sparsity on. A point asked of one
    row only (the paper grid's 0.977, set for the COLT timing) is no test of the other. Where the
    two rows share no level (a row the grid never asks for), the levels either row has, else the
    claim's first row's: the tests are kept, with no pairs, so the family keeps its size and the
    row-set gate names the missing row."""
    def asked(row: str) -> set:
        cells = merged[(merged["dataset"] == dataset) & (merged["row"] == row)]
        return {s for s in set(cells["sparsity"]) if s >= claim.min_sparsity and s > 0}

    better, worse = asked(c.better), asked(c.worse)
    return sorted((better & worse) or (better | worse) or asked(claim.contrasts[0].better))


def family_levels(merged: pd.DataFrame, dataset: str, claim: Claim) -> list[float]:
    """Every sparsity some contrast of the claim is tested at."""
    return sorted(set().union(*(contrast_levels(merged, dataset, claim, c)
                                for c in claim.contrasts)))


def _seed_values(ok: pd.DataFrame, row: str, sparsity: float, column: str) -> dict:
    """Per seed, the row's value at the sparsity; a seed without a number is no pair."""
    mine = ok[(ok["row"] == row) & (ok["sparsity"] == sparsity)]
    values = zip(mine["seed"], pd.to_numeric(mine[column], errors="coerce"))
    return {seed: v for seed, v in values if not math.isnan(v)}


def _family(merged: pd.DataFrame, dataset: str, claim: Claim,
            test: Callable[[pd.DataFrame, Contrast, float], dict]) -> pd.DataFrame:
    ok = on_target_ok(merged, dataset)
    rows = [{"dataset": dataset, "claim": claim.key, "better": c.better, "worse": c.worse,
             "isolates": c.isolates, "sparsity": s, **test(ok, c, s)}
            for c in claim.contrasts for s in contrast_levels(merged, dataset, claim, c)]
    return pd.DataFrame(rows)


def _holm_marks(frame: pd.DataFrame, diff: str) -> pd.DataFrame:
    """Holm over the whole family (a test that could not run counts with p = 1, so the family
    keeps its size) and each test's mark from its Holm p and the sign of `diff`."""
    padded = [1.0 if math.isnan(p) else p for p in frame["p"]]
    frame["p_holm"] = [h if not math.isnan(p) else math.nan
                       for h, p in zip(stats.holm(padded), frame["p"])]
    frame["mark"] = [stats.mark(p, d) for p, d in zip(frame["p_holm"], frame[diff])]
    return frame


ACC_COLUMNS = ["dataset", "claim", "better", "worse", "isolates", "sparsity", "pairs", "test",
               "mean_diff", "ci_low", "ci_high", "p", "p_holm", "mark"]


def accuracy_tests(merged: pd.DataFrame, dataset: str, claim: Claim) -> pd.DataFrame:
    """The claim's family on one dataset: paired difference better − worse in accuracy points,
    its interval, p, Holm's p over the whole family (tests that could not run count as p = 1)
    and the mark."""
    def test(ok: pd.DataFrame, c: Contrast, s: float) -> dict:
        acc = ok.assign(acc=pd.to_numeric(ok["test_acc"], errors="coerce") * 100.0)
        pr = stats.paired(_seed_values(acc, c.better, s, "acc"),
                          _seed_values(acc, c.worse, s, "acc"))
        return {"pairs": pr.pairs, "test": pr.test, "mean_diff": pr.mean_diff,
                "ci_low": pr.ci_low, "ci_high": pr.ci_high, "p": pr.p}

    frame = _family(merged, dataset, claim, test)
    if frame.empty:
        return pd.DataFrame(columns=ACC_COLUMNS)
    return _holm_marks(frame, "mean_diff")[ACC_COLUMNS]


COST_COLUMNS = ["dataset", "claim", "better", "worse", "isolates", "sparsity", "pairs",
                "one_shot_min", "colt_min", "colt_eval_share", "ratio", "ci_low", "ci_high",
                "epochs_ratio", "epochs_ratio_with_teacher", "p", "p_holm", "mark"]
# The teacher is trained once per dataset and architecture (or loaded) and reported on its own,
# as the fair-comparison rules have it (docs/methods.md); the epoch ratio "with teacher" is
# the column that charges one.
NOT_TRAINING = EVAL_PHASES + ("teacher",)


def phase_seconds(merged: pd.DataFrame, phases: pd.DataFrame | None,
                  names: Sequence[str]) -> pd.Series:
    """Each cell's seconds in the named phases (0 where the phase table is absent)."""
    if phases is None or phases.empty:
        return pd.Series(0.0, index=merged.index)
    by_id = phases[phases["phase"].isin(names)].groupby("id")["seconds"].sum()
    return pd.Series(merged["id"].map(by_id).fillna(0.0).to_numpy(), index=merged.index)


def training_seconds(merged: pd.DataFrame, phases: pd.DataFrame | None) -> pd.Series:
    """Each cell's seconds without its evaluation phases (COLT evaluates after every round) and
    without its teacher's."""
    seconds = pd.to_numeric(merged["seconds"], errors="coerce")
    return seconds - phase_seconds(merged, phases, NOT_TRAINING)


def cost_tests(merged: pd.DataFrame, dataset: str, phases: pd.DataFrame | None = None,
               book: pd.DataFrame | None = None) -> pd.DataFrame:
    """COLT's training seconds over the one-shot row's at each sparsity of the family: the
    geometric mean over seed pairs, its 95 % interval and the mark against ORDER_OF_MAGNITUDE;
    beside it the epoch-equivalent ratio from the budgets."""
    frame = merged.assign(train_s=training_seconds(merged, phases),
                          eval_s=phase_seconds(merged, phases, EVAL_PHASES))
    book = ledger.ledger(merged, dataset, phases) if book is None else book

    def test(ok: pd.DataFrame, c: Contrast, s: float) -> dict:
        one = _seed_values(ok.assign(train_s=frame.loc[ok.index, "train_s"]), c.better, s,
                           "train_s")
        colt = _seed_values(ok.assign(train_s=frame.loc[ok.index, "train_s"]), c.worse, s,
                            "train_s")
        evals = _seed_values(ok.assign(eval_s=frame.loc[ok.index, "eval_s"]), c.worse, s,
                             "eval_s")
        seeds = sorted(k for k in set(one) & set(colt) if one[k] > 0 and colt[k] > 0)
        logs = [math.log(colt[k] / one[k]) for k in seeds]
        lo, hi = stats.t_interval(logs)
        # the log ratio against log √10, paired by seed like every other test of a claim
        # (t below ten pairs, Wilcoxon from ten); Holm over the levels follows in the family
        vs = stats.paired(dict(zip(seeds, logs)),
                          {k: math.log(ORDER_OF_MAGNITUDE) for k in seeds})
        colt_total = sum(colt[k] + evals.get(k, 0.0) for k in seeds)
        return {"pairs": len(seeds),
                # means over the pairs; none without a pair (not 0 minutes)
                "one_shot_min": sum(one[k] for k in seeds) / len(seeds) / 60 if seeds else math.nan,
                "colt_min": sum(colt[k] for k in seeds) / len(seeds) / 60 if seeds else math.nan,
                "colt_eval_share": sum(evals.get(k, 0.0) for k in seeds) / colt_total
                if colt_total else math.nan,
                "ratio": math.exp(sum(logs) / len(logs)) if logs else math.nan,
                "ci_low": math.exp(lo) if not math.isnan(lo) else math.nan,
                "ci_high": math.exp(hi) if not math.isnan(hi) else math.nan,
                **_epoch_ratios(ok, book, c, s), "p": vs.p, "log_excess": vs.mean_diff}

    frame_out = _family(merged, dataset, COST, test)
    if frame_out.empty:
        return pd.DataFrame(columns=COST_COLUMNS)
    return _holm_marks(frame_out, "log_excess")[COST_COLUMNS]


def _epoch_ratios(ok: pd.DataFrame, book: pd.DataFrame, c: Contrast, s: float) -> dict:
    def entry(row: str):
        hit = book[(book["row"] == row) & (book["sparsity"] == s)]
        return hit.iloc[0] if len(hit) else None

    one, colt = entry(c.better), entry(c.worse)
    cells = ok[ok["row"] == c.better]
    if one is None or colt is None or cells.empty or "model" not in cells:
        return {"epochs_ratio": math.nan, "epochs_ratio_with_teacher": math.nan}
    model, teacher, dataset = (str(cells[k].iloc[0]) for k in ("model", "teacher", "dataset"))
    colt_ee = ledger.epoch_equivalents(colt, model, teacher, dataset, kd=False)
    return {name: colt_ee / ledger.epoch_equivalents(one, model, teacher, dataset, kd=True,
                                                       with_teacher=charged)
            for name, charged in (("epochs_ratio", False), ("epochs_ratio_with_teacher", True))}


def gate_results(claim: Claim, merged: pd.DataFrame, dataset: str, tests: pd.DataFrame,
                 th: Thresholds, curves: pd.DataFrame | None, book: pd.DataFrame
                 ) -> list[GateResult]:
    """The claim's gates on one dataset, in the declared order."""
    ok = on_target_ok(merged, dataset)
    out = []
    for gate in claim.gates:
        if gate == TEACHER:
            out.append(gates.teacher_margin(ok, th))
        elif gate == STAGE1:
            out.append(gates.stage1(ok, th))
        elif gate == CONVERGED:
            mine = curves[curves["dataset"] == dataset] if curves is not None and len(curves) \
                else curves
            out.append(gates.converged(mine, claim.rows, th,
                                       family_levels(merged, dataset, claim)))
        elif gate == BUDGETS:
            out.append(ledger.budget_gate(book, claim.rows, th))
        elif gate == ROWS:
            out.append(rows_gate(claim, tests, merged, dataset))
    return out


def rows_gate(claim: Claim, tests: pd.DataFrame, merged: pd.DataFrame, dataset: str
              ) -> GateResult:
    need = f"every test of the family with ≥ {stats.MIN_PAIRS} seed pairs"
    if tests.empty:
        return GateResult(ROWS, False, "no test", need,
                          f"the grid has no {claim.contrasts[0].better} cells"
                          + (f" at sparsity ≥ {claim.min_sparsity:g}" if claim.min_sparsity
                             else ""))
    short = tests[tests["pairs"] < stats.MIN_PAIRS]
    ok_rows = set(on_target_ok(merged, dataset)["row"])
    absent = [r for r in claim.rows if r not in ok_rows]
    value = f"{len(tests) - len(short)} of {len(tests)} tests"
    if short.empty:
        return GateResult(ROWS, True, value, need, "complete")
    detail = (f"no on-target results of {', '.join(absent)}" if absent else
              "too few seed pairs: " + "; ".join(
                  f"{r.better} − {r.worse} at {r.sparsity:g} ({r.pairs})"
                  for r in short.head(4).itertuples()))
    return GateResult(ROWS, False, value, need, detail)


def judge(claim: Claim, tests: pd.DataFrame, results: Sequence[GateResult], dataset: str
          ) -> Verdict:
    failed = tuple(g.gate for g in results if not g.passed)
    marked = tests[tests["mark"] != ""] if len(tests) else tests
    up = int((marked["mark"] == FOR).sum()) if len(marked) else 0
    down = int((marked["mark"] == AGAINST).sum()) if len(marked) else 0
    observed = f"{up} of {len(tests)} tests significantly for, {down} against"
    if len(marked) and "ratio" in marked:
        observed += "; COLT / one-shot training time " + ", ".join(
            f"{r:.1f}× at {s:g}" for r, s in zip(marked["ratio"], marked["sparsity"]))
    elif len(marked):
        observed += (f"; differences {marked['mean_diff'].min():+.2f} to "
                     f"{marked['mean_diff'].max():+.2f} points")
    if failed:
        return Verdict(dataset, claim.text, NOT_TESTABLE,
                       f"failed gate{'s' if len(failed) > 1 else ''}: {', '.join(failed)}; "
                       f"observed (not a verdict): {observed}", failed)
    return Verdict(dataset, claim.text, verdict_from(up, down), observed)


@dataclass(frozen=True)
class Evaluation:
    tests: pd.DataFrame  # accuracy claims: one row per (claim, contrast, sparsity)
    cost: pd.DataFrame  # the cost claim's tests
    gates: pd.DataFrame  # one row per (dataset, claim, gate)
    ledger: pd.DataFrame  # one row per (dataset, row, sparsity)
    verdicts: list


def evaluate(merged: pd.DataFrame, datasets: Sequence[str], th: Thresholds | None = None,
             curves: pd.DataFrame | None = None, phases: pd.DataFrame | None = None
             ) -> Evaluation:
    th = th or Thresholds()
    acc, cost, gate_rows, books, verdicts = [], [], [], [], []
    for d in datasets:
        book = ledger.ledger(merged, d, phases)
        books.append(book)
        for claim in ALL_CLAIMS:
            tests = (cost_tests(merged, d, phases, book) if claim is COST else
                     accuracy_tests(merged, d, claim))
            (cost if claim is COST else acc).append(tests)
            results = gate_results(claim, merged, d, tests, th, curves, book)
            gate_rows += [{"dataset": d, "claim": claim.key, **vars(g)} for g in results]
            verdicts.append(judge(claim, tests, results, d))

    def concat(parts: list, columns: list) -> pd.DataFrame:
        parts = [p for p in parts if len(p)]
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)

    return Evaluation(concat(acc, ACC_COLUMNS), concat(cost, COST_COLUMNS),
                      pd.DataFrame(gate_rows, columns=["dataset", "claim", "gate", "passed",
                                                       "value", "threshold", "detail"]),
                      concat(books, list(ledger.ledger(merged.iloc[:0], "").columns)),
                      verdicts)
