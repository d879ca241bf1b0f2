"""The report's section "The paper's claims": the gates first, then the verdicts, the epoch ledger
and the tests behind them (the rules are in bench/report/claims.py, bench/report/gates.py, bench/report/ledger.py)."""
from __future__ import annotations

import pandas as pd

from bench import claims, stats
from bench.report.gates import GATES
from bench.report.sections import fmt_interval, fmt_number
from bench.report.writer import Bullets, Paragraph, Section, Table, section
from bench.plan.thresholds import THRESHOLD_REASONS, grid_thresholds

TITLE = "The paper's claims"


def claims_section(data) -> Section:
    if not len(data.merged):
        return section(TITLE, Paragraph("No cells."))
    declared = dict(getattr(data.grid, "gates", {}) or {})
    th = grid_thresholds(data.grid)
    ev = claims.evaluate(data.merged, data.datasets, th, data.curves, data.phases)
    blocks: list = [Paragraph(
        "A claim is judged only where its validity gates pass: the teacher leads the dense CE "
        "student, stage 1 (the teacher-guided dense student) is not worse than the CE one, every "
        "compared phase has converged, the compared rows had matched budgets, and every row the "
        "claim compares is present. A claim with a failed gate is NOT TESTABLE HERE; its tests "
        "are shown as observations, not as evidence for or against the paper. Where the gates "
        "pass, each claim's fixed family of paired tests (Holm over the whole family; a test "
        "that could not run counts as p = 1) gives the verdict by one rule in both directions: "
        "supported when some test is significantly for the claim and none against, contradicted "
        "in mirror, mixed when both, not shown when none. Rules: bench/report/claims.py.")]
    blocks += _gates(ev, th, declared, data.grid.name)
    blocks.append(Bullets(tuple(f"{v.dataset}: {v.claim}: {v.verdict.upper()} ({v.detail})"
                                for v in ev.verdicts)))
    blocks += _ledger(ev)
    blocks += _tests(ev)
    blocks += _cost(ev)
    files = [("claims.csv", ev.tests.to_csv(index=False)),
             ("claims_cost.csv", ev.cost.to_csv(index=False)),
             ("gates.csv", ev.gates.to_csv(index=False)),
             ("ledger.csv", ev.ledger.to_csv(index=False)),
             ("curves.csv", data.curves.to_csv(index=False) if data.curves is not None else "")]
    return section(TITLE, *blocks, files=files)


def _gates(ev: claims.Evaluation, th, declared: dict, grid: str) -> list:
    where = (f"as declared by grid {grid}: " + ", ".join(f"{k} = {v:g}" for k, v in declared.items())
             + "; the rest at their defaults") if declared else \
        "at their defaults (bench/plan/thresholds.py)"
    rows = []
    for (dataset, gate), group in ev.gates.groupby(["dataset", "gate"], sort=False):
        row = {"dataset": dataset, "gate": gate, "threshold": group["threshold"].iloc[0]}
        for claim in claims.ALL_CLAIMS:
            hit = group[group["claim"] == claim.key]
            row[claim.key] = "—" if hit.empty else \
                f"{'pass' if hit['passed'].iloc[0] else 'FAIL'}: {hit['value'].iloc[0]}"
        rows.append(row)
    order = {g: i for i, g in enumerate(GATES)}
    table = pd.DataFrame(rows).sort_values(["dataset", "gate"], key=lambda s: s.map(order)
                                           if s.name == "gate" else s, kind="stable")
    failed = ev.gates[~ev.gates["passed"].astype(bool)]
    details = [f"{r.dataset}, {r.claim}, {r.gate}: {r.detail}"
               for r in failed.drop_duplicates(["dataset", "gate", "detail"]).itertuples()]
    passed = ev.gates[ev.gates["passed"].astype(bool)].drop_duplicates(["dataset", "gate"])
    details += [f"{r.dataset}, {r.gate}: {r.detail}" for r in passed.itertuples()
                if r.gate in ("teacher margin", "stage 1 works")]
    reasons = "; ".join(f"{k} = {getattr(th, k):g} ({why})" for k, why in
                        THRESHOLD_REASONS.items())
    return [Paragraph(f"**Validity gates**, thresholds {where}. Why these thresholds: "
                      f"{reasons}."),
            Table(table.set_index("dataset")),
            Bullets(tuple(details)) if details else None]


def _ledger(ev: claims.Evaluation) -> list:
    if ev.ledger.empty:
        return []
    book = ev.ledger.assign(total=[fmt_number(v, "g") for v in ev.ledger["total_epochs"]])
    table = book.groupby(["dataset", "row", "kind", "phases", "total"], sort=False)["sparsity"] \
        .agg(lambda s: ", ".join(f"{v:g}" for v in s)).reset_index()  # one line per budget
    return [Paragraph("**Epoch ledger**: what each row trained, in epochs over the training "
                      "split (COLT's two halves train on half the data each, so a round-epoch "
                      "of both is one epoch; rounds are as the records ran them, else as the "
                      "cost model counts them). `ledger.csv` has the numbers."),
            Table(table[["dataset", "row", "sparsity", "kind", "phases", "total"]]
                  .set_index("dataset"))]


def _tests(ev: claims.Evaluation) -> list:
    if ev.tests.empty:
        return []
    judged = {(v.dataset, c.key): v.verdict != claims.NOT_TESTABLE
              for v in ev.verdicts for c in claims.CLAIMS if c.text == v.claim}
    table = pd.DataFrame([{
        "dataset": r["dataset"], "claim": r["claim"],
        "contrast": f"{r['better']} − {r['worse']}", "isolates": r["isolates"],
        "sparsity": f"{r['sparsity']:g}", "pairs": r["pairs"],
        "difference": fmt_number(r["mean_diff"], "+.2f"),
        "95% CI": fmt_interval(r["ci_low"], r["ci_high"], "+.2f"),
        "p": fmt_number(r["p"], ".3g"), "p (Holm)": fmt_number(r["p_holm"], ".3g"),
        "mark": (r["mark"] or "—") + ("" if judged.get((r["dataset"], r["claim"])) else
                                      " (observation)")}
        for r in ev.tests.to_dict("records")])
    return [Paragraph(
        "The tests (difference = first row − second row in accuracy points, 95 % t interval, "
        f"paired t-test below {stats.WILCOXON_FROM} pairs, Wilcoxon signed-rank from there; Holm "
        f"over the claim's family; marks {stats.BETTER} for the claim, "
        f"{stats.WORSE} against, {stats.SAME} no significant difference). The section 'Paired "
        "comparisons' corrects over a different family (every row against the reference), so "
        "a pair that appears in both can carry a different mark there; its raw p is the same."),
        Table(table.set_index("dataset"))]


def _percent(share: float) -> str:
    text = fmt_number(100 * share, ".0f")
    return text if text == "—" else f"{text} %"


def _cost(ev: claims.Evaluation) -> list:
    if ev.cost.empty:
        return []
    table = pd.DataFrame([{
        "dataset": r["dataset"], "sparsity": f"{r['sparsity']:g}", "pairs": r["pairs"],
        f"{claims.ONE_SHOT_ROW} min": fmt_number(r["one_shot_min"], ".2f"),
        "colt min": fmt_number(r["colt_min"], ".2f"),
        "colt evaluation share": _percent(r["colt_eval_share"]),
        "colt / one-shot (training)": fmt_number(r["ratio"], ".1f"),
        "95% CI": fmt_interval(r["ci_low"], r["ci_high"], ".1f"),
        "p (Holm)": fmt_number(r["p_holm"], ".3g"),
        "epoch-equivalents": fmt_number(r["epochs_ratio"], ".1f"),
        "with teacher": fmt_number(r["epochs_ratio_with_teacher"], ".1f"),
        "mark": r["mark"] or "—"} for r in ev.cost.to_dict("records")])
    return [Paragraph(
        f"The cost claim: COLT's training seconds over {claims.ONE_SHOT_ROW}'s per seed pair "
        "(evaluation excluded, COLT's share of it shown; the teacher excluded, as it is trained "
        "once and reported on its own), geometric mean and 95 % interval. The log ratio is "
        f"tested against {claims.ORDER_OF_MAGNITUDE:.2f}× (√10: nearer 10× than 1× on a log "
        "scale, which the paper's own 9.9× passes) with the paired test, Holm over the "
        f"sparsities: {stats.BETTER} significantly above, {stats.WORSE} significantly below. "
        "Epoch-equivalents: "
        "the same ratio from the budgets alone (a KD step costs the student's step plus a third "
        "of the teacher's), which does not depend on the machine; 'with teacher' charges a "
        "teacher trained for the paper grid's teacher / dense proportion (200 / 160) of the dense "
        "budget to the one-shot row, as if it were not pretrained."),
        Table(table.set_index("dataset"))]
