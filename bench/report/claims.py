"""The paper's four claims, tested on whatever a results store holds (a report section).

"Stage 1" is the paper's first stage as a whole: the dense student trained with the teacher
(L_total) and the Taylor importance accumulated during that training. No row here separates the
two: magnitude and random prune the CE-trained dense network, tg-oneshot the teacher-guided one.

Each accuracy claim is a set of paired contrasts, `better` row against `worse` row, at the
sparsities the claim speaks of. Every contrast is a paired comparison over the seeds both rows have
an on-target ok result for (bench.report.stats.paired: mean difference, 95 % t interval, paired t-test),
and Holm's correction runs over all the tests of one claim on one dataset. A claim's verdict:

- supported: every test is significantly in the claimed direction;
- partly supported: some are, none is significantly against it;
- contradicted: some test is significantly against it and none for it (mixed: both happen);
- not shown: no test is significant (with 3 seeds only large, consistent differences are);
- not testable: the rows or seeds it needs are not in the store.

The cost claim compares wall-clock, not accuracy: COLT's seconds over the one-shot method's, per
seed pair, summarised by the geometric mean and the 95 % t interval of the log ratio; supported
when the interval's lower end is at least 10 at every sparsity tested, contradicted when its upper
end is below 10. A one-shot cell's seconds include its shared phases (teacher, teacher-guided
student) at the time they took when computed; a teacher loaded from a checkpoint costs nothing in
the cell, so the teacher's own training, when its record is in the same store (the checkpoint
file is named by its cell id), is also added in full to every one-shot cell as a second, harsher
ratio.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd

from bench.report import stats
from bench.report.data import on_target_ok
from bench.report.sections import fmt_interval, fmt_number
from bench.report.writer import Bullets, Paragraph, Section, Table, section

HIGH = 0.9  # "high sparsity": the paper's high columns on CIFAR are 90 % and above
TENFOLD = 10.0  # "an order of magnitude"
EPSD_ROWS = ("cskd-simple", "cskd-epsd", "pskd-simple", "pskd-epsd", "dlb-simple", "dlb-epsd")


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


CLAIMS = (
    Claim("importance", "teacher-guided importance beats magnitude at high sparsity", (
        Contrast("tg-oneshot-ft", "magnitude", "stage 1 vs CE + |w|, both CE fine-tuning"),
        Contrast("tg-oneshot-kd", "magnitude-kd", "stage 1 vs CE + |w|, both KD retraining"),
        Contrast("tg-oneshot-kd", "magnitude", "score and retraining, as the paper compares"),
        Contrast("tg-oneshot-ft", "random[match=tg-oneshot]",
                 "stage 1 vs random, same per-layer counts, both CE"),
    ), HIGH),
    Claim("kd", "KD retraining beats CE fine-tuning", (
        Contrast("tg-oneshot-kd", "tg-oneshot-ft", "retraining (teacher-guided mask)"),
        Contrast("magnitude-kd", "magnitude", "retraining (magnitude mask)"),
    )),
    Claim("epsd", "it beats the EPSD family at high sparsity", tuple(
        Contrast("tg-oneshot-kd", row, "method against an EPSD-family baseline")
        for row in EPSD_ROWS), HIGH),
)
COST_CLAIM = "it is an order of magnitude cheaper than COLT"
ONE_SHOT_ROW, COLT_ROW = "tg-oneshot-kd", "colt"


@dataclass(frozen=True)
class Verdict:
    dataset: str
    claim: str
    verdict: str
    detail: str


def _seed_values(ok: "pd.DataFrame", row: str, sparsity: float, column: str) -> dict:
    mine = ok[(ok["row"] == row) & (ok["sparsity"] == sparsity)]
    return dict(zip(mine["seed"], mine[column].astype(float)))


def _ok(merged: "pd.DataFrame", dataset: str) -> "pd.DataFrame":
    return on_target_ok(merged, dataset)


def accuracy_tests(merged: "pd.DataFrame", dataset: str) -> "pd.DataFrame":
    """One row per (claim, contrast, sparsity) both rows have ok cells at: paired difference
    better − worse in accuracy points, its interval, p and Holm's p within the claim."""
    ok = _ok(merged, dataset)
    ok = ok.assign(acc=ok["test_acc"].astype(float) * 100.0)
    out = []
    for claim in CLAIMS:
        mine = []
        for c in claim.contrasts:
            levels = sorted(set(ok.loc[ok["row"] == c.better, "sparsity"])
                            & set(ok.loc[ok["row"] == c.worse, "sparsity"]))
            for s in (s for s in levels if s >= claim.min_sparsity):
                pr = stats.paired(_seed_values(ok, c.better, s, "acc"),
                                  _seed_values(ok, c.worse, s, "acc"))
                mine.append({"dataset": dataset, "claim": claim.key, "better": c.better,
                             "worse": c.worse, "isolates": c.isolates, "sparsity": s,
                             "pairs": pr.pairs, "mean_diff": pr.mean_diff, "ci_low": pr.ci_low,
                             "ci_high": pr.ci_high, "p": pr.p})
        for row, p in zip(mine, stats.holm([r["p"] for r in mine])):
            row["p_holm"] = p
            row["mark"] = stats.mark(p, row["mean_diff"])
        out += mine
    cols = ["dataset", "claim", "better", "worse", "isolates", "sparsity", "pairs", "mean_diff",
            "ci_low", "ci_high", "p", "p_holm", "mark"]
    return pd.DataFrame(out, columns=cols)


def accuracy_verdict(tests: "pd.DataFrame", claim: Claim, dataset: str) -> Verdict:
    mine = tests[(tests["claim"] == claim.key) & (tests["mark"] != "")]
    if mine.empty:
        rows = ", ".join(dict.fromkeys(r for c in claim.contrasts for r in (c.better, c.worse)))
        where = f" at sparsity ≥ {claim.min_sparsity:g}" if claim.min_sparsity else ""
        return Verdict(dataset, claim.text, "not testable",
                       f"needs ≥ {stats.MIN_PAIRS} seed pairs of a contrast among {rows}{where}")
    up = int((mine["mark"] == stats.BETTER).sum())
    down = int((mine["mark"] == stats.WORSE).sum())
    n = len(mine)
    if up == n:
        verdict = "supported"
    elif up and down:
        verdict = "mixed"
    elif down:
        verdict = "contradicted"
    elif up:
        verdict = "partly supported"
    else:
        verdict = "not shown"
    return Verdict(dataset, claim.text, verdict,
                   f"{up} of {n} tests significantly for, {down} against (Holm, α = "
                   f"{stats.ALPHA:g}); mean differences "
                   f"{mine['mean_diff'].min():+.2f} to {mine['mean_diff'].max():+.2f} points")


def teacher_seconds(cells: Sequence, store) -> float | None:
    """Training seconds of the loaded teacher when its own record is in `store` (the checkpoint
    is named by its cell id); None when no cell loads one or its record is elsewhere."""
    paths = {c.teacher_checkpoint for c in cells if getattr(c, "teacher_checkpoint", "")}
    if len(paths) != 1 or store is None:
        return None
    records, _ = store.load_all([Path(next(iter(paths))).stem])
    ok = [r for r in records if r.get("status") == "ok"]
    return float((ok[0].get("cost") or {}).get("seconds_total") or 0.0) if ok else None


def cost_tests(merged: "pd.DataFrame", dataset: str, teacher: float | None = None
               ) -> "pd.DataFrame":
    """COLT's seconds over the one-shot row's, per sparsity both have ok cells at: geometric mean
    over seed pairs and its 95 % interval; with `teacher`, also with the teacher's training added
    to every one-shot cell."""
    ok = _ok(merged, dataset)
    levels = sorted(set(ok.loc[ok["row"] == ONE_SHOT_ROW, "sparsity"])
                    & set(ok.loc[ok["row"] == COLT_ROW, "sparsity"]))
    out = []
    for s in levels:
        one = _seed_values(ok, ONE_SHOT_ROW, s, "seconds")
        colt = _seed_values(ok, COLT_ROW, s, "seconds")
        seeds = sorted(set(one) & set(colt))
        row = {"dataset": dataset, "sparsity": s, "pairs": len(seeds),
               "one_shot_min": sum(one[k] for k in seeds) / max(1, len(seeds)) / 60,
               "colt_min": sum(colt[k] for k in seeds) / max(1, len(seeds)) / 60}
        for name, extra in (("", 0.0), ("_with_teacher", teacher)):
            if extra is None:
                row.update({f"ratio{name}": math.nan, f"ci_low{name}": math.nan,
                            f"ci_high{name}": math.nan})
                continue
            logs = [math.log(colt[k] / (one[k] + extra)) for k in seeds if one[k] + extra > 0]
            lo, hi = stats.t_interval(logs)
            row.update({f"ratio{name}": math.exp(sum(logs) / len(logs)) if logs else math.nan,
                        f"ci_low{name}": math.exp(lo) if not math.isnan(lo) else math.nan,
                        f"ci_high{name}": math.exp(hi) if not math.isnan(hi) else math.nan})
        out.append(row)
    cols = ["dataset", "sparsity", "pairs", "one_shot_min", "colt_min", "ratio", "ci_low",
            "ci_high", "ratio_with_teacher", "ci_low_with_teacher", "ci_high_with_teacher"]
    return pd.DataFrame(out, columns=cols)


def cost_verdict(tests: "pd.DataFrame", dataset: str) -> Verdict:
    tested = tests[tests["pairs"] >= stats.MIN_PAIRS]
    if tested.empty:
        return Verdict(dataset, COST_CLAIM, "not testable",
                       f"needs ≥ {stats.MIN_PAIRS} seed pairs of {ONE_SHOT_ROW} and {COLT_ROW} "
                       "at one sparsity")
    lows, highs = tested["ci_low"], tested["ci_high"]
    if (lows >= TENFOLD).all():
        verdict = "supported"
    elif (highs < TENFOLD).all():
        verdict = "contradicted"
    else:
        verdict = "not shown"
    ratios = ", ".join(f"{r:.1f}× at {s:g}" for r, s in zip(tested["ratio"], tested["sparsity"]))
    detail = f"COLT / {ONE_SHOT_ROW} wall-clock {ratios} (threshold {TENFOLD:g}×, 95 % interval)"
    with_teacher = tested["ratio_with_teacher"].dropna()
    if len(with_teacher):
        detail += "; with the teacher's training added to every one-shot cell " + ", ".join(
            f"{r:.1f}×" for r in with_teacher)
    return Verdict(dataset, COST_CLAIM, verdict, detail)


def teacher_margin(merged: "pd.DataFrame", dataset: str) -> str:
    """The premise of every teacher-guided claim, from the records: the teacher's test accuracy
    (as the one-shot cells measured it) against the dense CE student's (the `dense` row, else
    the dense network magnitude pruned); "" when the store has neither."""
    ok = merged[(merged["dataset"] == dataset) & (merged["status"] == "ok")]
    if "teacher_test_acc" not in ok:
        return ""
    teacher = pd.to_numeric(ok.loc[ok["method"] == "tg-oneshot", "teacher_test_acc"],
                            errors="coerce").dropna()
    dense = ok[(ok["row"] == "dense") & (ok["sparsity"] == 0)]
    dense = (dense.set_index("seed")["test_acc"] if len(dense) else
             ok[ok["method"] == "magnitude"].groupby("seed")["dense_test_acc"].first())
    dense = pd.to_numeric(dense, errors="coerce").dropna()
    if teacher.empty or dense.empty:
        return ""
    t, d = 100 * float(teacher.mean()), 100 * float(dense.mean())
    spread = f" ± {100 * float(dense.std()):.2f}" if len(dense) > 1 else ""
    text = (f"{dataset}: teacher {t:.2f} % test accuracy, dense CE student {d:.2f}{spread} % "
            f"(n = {len(dense)}): margin {t - d:+.2f} points")
    if t <= d:
        text += (" — the teacher is not stronger than the student, so the teacher-guided claims "
                 "are not tested as the paper means them")
    return text


def evaluate(merged: "pd.DataFrame", datasets: Sequence[str], teacher: float | None = None
             ) -> tuple["pd.DataFrame", "pd.DataFrame", list[Verdict]]:
    """(accuracy tests, cost tests, one verdict per claim and dataset)."""
    acc = [accuracy_tests(merged, d) for d in datasets]
    cost = [cost_tests(merged, d, teacher) for d in datasets]
    acc_frame = pd.concat(acc, ignore_index=True) if acc else accuracy_tests(merged.iloc[:0], "")
    cost_frame = pd.concat(cost, ignore_index=True) if cost else cost_tests(merged.iloc[:0], "")
    verdicts = []
    for d, a, c in zip(datasets, acc, cost):
        verdicts += [accuracy_verdict(a, claim, d) for claim in CLAIMS] + [cost_verdict(c, d)]
    return acc_frame, cost_frame, verdicts


def claims_section(data) -> "Section":
    """The report's section: one verdict per claim and dataset, then the tests behind them."""
    title = "The paper's claims"
    if not len(data.merged):
        return section(title, Paragraph("No cells."))
    teacher = teacher_seconds(data.cells, data.store)
    acc, cost, verdicts = evaluate(data.merged, data.datasets, teacher)
    blocks: list = [Paragraph(
        "Each claim is tested with paired contrasts over seeds (difference = first row − second "
        "row in accuracy points, 95 % t interval, paired t-test; Holm's correction over the "
        "tests of one claim on one dataset); the cost claim with COLT's wall-clock over "
        f"{ONE_SHOT_ROW}'s per seed pair (geometric mean, 95 % interval of the log ratio). "
        "Verdicts: supported (every test significant for the claim), partly supported, not "
        "shown (nothing significant), contradicted, mixed, not testable (rows or seeds "
        "missing). Rules: bench/report/claims.py."),
        Bullets(tuple(f"{v.dataset}: {v.claim}: {v.verdict.upper()} ({v.detail})"
                      for v in verdicts))]
    margins = [m for m in (teacher_margin(data.merged, d) for d in data.datasets) if m]
    if margins:
        blocks.insert(1, Paragraph("The premise, from the records: " + "; ".join(margins) + "."))

    if len(acc):
        blocks.append(Table(pd.DataFrame([{
            "dataset": r["dataset"], "claim": r["claim"],
            "contrast": f"{r['better']} − {r['worse']}", "isolates": r["isolates"],
            "sparsity": f"{r['sparsity']:g}", "pairs": r["pairs"],
            "difference": fmt_number(r["mean_diff"], "+.2f"),
            "95% CI": fmt_interval(r["ci_low"], r["ci_high"], "+.2f"),
            "p": fmt_number(r["p"], ".3g"), "p (Holm)": fmt_number(r["p_holm"], ".3g"),
            "mark": r["mark"] or "—"} for r in acc.to_dict("records")]).set_index("dataset")))
    if len(cost):
        blocks.append(Table(pd.DataFrame([{
            "dataset": r["dataset"], "sparsity": f"{r['sparsity']:g}", "pairs": r["pairs"],
            f"{ONE_SHOT_ROW} min": f"{r['one_shot_min']:.2f}", "colt min": f"{r['colt_min']:.2f}",
            "colt / one-shot": fmt_number(r["ratio"], ".1f"),
            "95% CI": fmt_interval(r["ci_low"], r["ci_high"], ".1f"),
            "with teacher": fmt_number(r["ratio_with_teacher"], ".1f")}
            for r in cost.to_dict("records")]).set_index("dataset")))
    if teacher is not None:
        blocks.append(Paragraph(f"The loaded teacher's own training took {teacher / 60:.1f} min "
                                "(its record is in this store); 'with teacher' adds all of it "
                                "to every one-shot cell."))
    files = [("claims.csv", acc.to_csv(index=False)), ("claims_cost.csv", cost.to_csv(index=False))]
    return section(title, *blocks, files=files)
