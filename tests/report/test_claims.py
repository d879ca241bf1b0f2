"""bench.report.claims, bench.report.gates, bench.report.ledger: the paper's claims judged on stores whose right answer
is known by construction — every gate passing, each gate failing alone, verdicts both ways."""
from __future__ import annotations

import math
import random

import pytest

from bench import claims, gates, ledger, stats
from bench.plan.grids import Grid, grid_from_mapping, make_config
from bench.registry import UsageError
from bench.report.data import load_report_data
from bench.store import ResultStore
from bench.plan.thresholds import Thresholds, thresholds_from

DENSE, RETRAIN, ROUND = 16, 6, 5  # the paper grid's proportions: COLT rounds 5, ticket 6, EPSD 20
ROWS = {  # row label -> (method, options)
    "dense": ("dense", {}),
    "magnitude": ("magnitude", {}),
    "magnitude-kd": ("magnitude", {"retrain": "kd"}),
    "random[match=tg-oneshot]": ("random", {"match": "tg-oneshot"}),
    "tg-oneshot-ft": ("tg-oneshot", {"retrain": "ft"}),
    "tg-oneshot-kd": ("tg-oneshot", {"retrain": "kd"}),
    "colt": ("colt", {}),
}
EPSD = {name: (name, {}) for name in ledger.EPSD_METHODS}
FLAT = [0.30, 0.50, 0.60, 0.65, 0.66, 0.66, 0.67, 0.66, 0.67, 0.67, 0.66, 0.67, 0.67, 0.67, 0.67,
        0.67]
RISING = [0.10 + 0.04 * i for i in range(16)]
COLT_ROUNDS = 4


def cells_for(rows, seeds=(0, 1, 2), sparsities=(0.5, 0.9, 0.98), budgets=None):
    out = []
    for label, (method, options) in rows.items():
        levels = (0.0,) if method == "dense" else sparsities
        fields = {"dense_epochs": DENSE, "sparse_epochs": RETRAIN, "round_epochs": ROUND,
                  "model": "smallcnn", "teacher": "smallcnn"}
        if method in ledger.EPSD_METHODS:
            fields["sparse_epochs"] = 20
        fields.update((budgets or {}).get(label, {}))
        for seed in seeds:
            for s in levels:
                out.append(make_config(method=method, options=options, dataset="synthetic",
                                       sparsity=s, seed=seed, **fields))
    return out


def hist(curve, epochs):
    """The last `epochs` values of the curve (padded at the front with its first value)."""
    return list(curve[-epochs:]) if epochs <= len(curve) else \
        [curve[0]] * (epochs - len(curve)) + list(curve)


def record_for(cfg, acc, *, teacher=0.85, dense=0.70, stage1=0.70, curve=FLAT, seconds=100.0,
               curves=None):
    """One ok record: test accuracy `acc`, the teacher's and the dense networks' accuracies,
    per-phase validation histories (`curves[phase]` overrides `curve`) and seconds."""
    curves = curves or {}
    phases = {"dense": cfg.dense_epochs} if cfg.method in ("dense", "magnitude", "random") else {}
    if cfg.method in ("magnitude", "random"):
        phases["finetune"] = cfg.sparse_epochs
    if cfg.method == "tg-oneshot":
        phases.update(teacher=2, student=cfg.dense_epochs, retrain=cfg.sparse_epochs)
    if cfg.method in ledger.EPSD_METHODS:
        phases["sparse"] = cfg.sparse_epochs
    if cfg.method == "colt":
        for r in range(1, COLT_ROUNDS + 1):
            phases[f"round{r}-a"] = phases[f"round{r}-b"] = cfg.round_epochs
        phases["ticket"] = cfg.sparse_epochs
    record_phases = {name: {"epochs": n, "seconds": seconds / (len(phases) + 1), "shared": False}
                     for name, n in phases.items()}
    if cfg.method == "colt":  # evaluation after every round: 20 % of COLT's time
        for r in range(1, COLT_ROUNDS + 1):
            record_phases[f"round{r}-prune"] = {"epochs": 0, "seconds": 0.0}
            record_phases[f"round{r}-eval"] = {"epochs": 0, "seconds": seconds * 0.25 / COLT_ROUNDS}
    record_phases["evaluate"] = {"epochs": 0, "seconds": 0.0}
    extra = {"dense_test_acc": stage1 if cfg.method == "tg-oneshot" else dense}
    if cfg.method == "tg-oneshot" or dict(cfg.options).get("retrain") == "kd":
        extra["teacher"] = {"test_acc": teacher}
    return {"id": cfg.id, "label": cfg.label, "config": cfg.to_dict(), "status": "ok",
            "temperature": cfg.resolved_temperature(), "phases": record_phases,
            "accuracy": {"test": acc, "val_history": {
                name: hist(curves.get(name, curve), n) for name, n in phases.items() if n}},
            "sparsity": {"prunable": cfg.sparsity, "overall": cfg.sparsity, "empty_layers": []},
            "extra": extra,
            "cost": {"seconds_total": seconds * (1.25 if cfg.method == "colt" else 1.0)}}


def study(root, acc, *, rows=ROWS, seeds=(0, 1, 2), budgets=None, skip=(), gates_=None,
          seconds=None, curves_by_row=None, **kw):
    """A store of `rows` where row r scores acc[r] (a fraction) + N(0, 0.2 pt) per seed."""
    cells = cells_for(rows, seeds, budgets=budgets)
    rng = random.Random(7)
    store = ResultStore(root)
    for cfg in cells:
        noise = rng.gauss(0, 0.002)
        if (cfg.label, cfg.seed) in skip:
            continue
        store.write(record_for(cfg, acc.get(cfg.label, 0.7) + noise,
                               seconds=(seconds or {}).get(cfg.label, 100.0) *
                               (1 + rng.uniform(-0.05, 0.05)),
                               curves=(curves_by_row or {}).get(cfg.label), **kw))
    grid = Grid(name="synth", methods=tuple(rows), datasets=("synthetic",),
                sparsities=(0.5, 0.9, 0.98), gates=gates_ or {})
    return load_report_data(grid, cells, store)


def judged(data, th=None):
    ev = claims.evaluate(data.merged, data.datasets, th or thresholds_from(data.grid.gates),
                         data.curves, data.phases)
    return ev, {v.claim: v for v in ev.verdicts}


IMPORTANCE, KD, EPSD_CLAIM = (c.text for c in claims.CLAIMS)
COST = claims.COST.text
GAIN = {"magnitude": 0.70, "magnitude-kd": 0.72, "random[match=tg-oneshot]": 0.69,
        "tg-oneshot-ft": 0.75, "tg-oneshot-kd": 0.77, "dense": 0.70}
LOSS = {"magnitude": 0.75, "magnitude-kd": 0.77, "random[match=tg-oneshot]": 0.76,
        "tg-oneshot-ft": 0.70, "tg-oneshot-kd": 0.72, "dense": 0.70}


def test_the_verdict_rule_is_the_same_in_both_directions():
    assert claims.verdict_from(1, 0) == claims.verdict_from(5, 0) == claims.SUPPORTED
    assert claims.verdict_from(0, 1) == claims.verdict_from(0, 5) == claims.CONTRADICTED
    assert claims.verdict_from(1, 1) == claims.verdict_from(3, 2) == claims.MIXED
    assert claims.verdict_from(0, 0) == claims.NOT_SHOWN


def test_every_gate_passes_and_a_true_gain_is_supported(tmp_path):
    data = study(tmp_path, GAIN, rows={**ROWS, **EPSD},
                 seconds={"colt": 2000.0, "tg-oneshot-kd": 100.0})
    ev, v = judged(data)
    assert ev.gates["passed"].all(), ev.gates[~ev.gates["passed"]].to_dict("records")
    assert v[IMPORTANCE].verdict == claims.SUPPORTED
    assert v[KD].verdict == claims.SUPPORTED  # +2 points with both masks
    assert v[EPSD_CLAIM].verdict == claims.SUPPORTED  # EPSD rows at 0.70, tg-oneshot-kd 0.77
    assert v[COST].verdict == claims.SUPPORTED  # 20x, evaluation excluded
    importance = ev.tests[ev.tests["claim"] == "importance"]
    assert len(importance) == 4 * 2  # four contrasts at the two high sparsities
    assert set(importance["mark"]) == {stats.BETTER}
    assert set(importance["test"]) == {"paired t"}  # which test ran is in claims.csv


def test_a_true_loss_is_contradicted_in_mirror(tmp_path):
    data = study(tmp_path, LOSS, seconds={"colt": 150.0, "tg-oneshot-kd": 100.0})
    ev, v = judged(data)
    assert v[IMPORTANCE].verdict == claims.CONTRADICTED
    assert v[KD].verdict == claims.SUPPORTED  # kd rows stay 2 points above their ft rows
    assert v[COST].verdict == claims.CONTRADICTED  # 1.5x, far below √10


def test_for_and_against_in_one_claim_is_mixed_and_noise_is_not_shown(tmp_path):
    mixed = dict(GAIN, **{"magnitude-kd": 0.82})  # tg-oneshot-kd − magnitude-kd is now −5
    _, v = judged(study(tmp_path / "a", mixed))
    assert v[IMPORTANCE].verdict == claims.MIXED
    flat = {row: 0.70 for row in ROWS}
    _, v = judged(study(tmp_path / "b", flat))
    assert v[IMPORTANCE].verdict == v[KD].verdict == claims.NOT_SHOWN


def _not_testable(verdict, gate):
    return verdict.verdict == claims.NOT_TESTABLE and gate in verdict.failed_gates


def test_a_weak_teacher_makes_the_teacher_claims_not_testable(tmp_path):
    ev, v = judged(study(tmp_path, GAIN, teacher=0.72))  # +2 over the dense CE student
    for claim in (IMPORTANCE, KD, EPSD_CLAIM):
        assert _not_testable(v[claim], gates.TEACHER)
    assert "SUPPORTED" not in v[IMPORTANCE].verdict.upper().replace("NOT TESTABLE HERE", "")
    margin = ev.gates[ev.gates["gate"] == gates.TEACHER].iloc[0]
    assert margin["value"].startswith("+2.0") and not margin["passed"]
    # the same store, judged with a lower declared margin: the gate passes, the verdict returns
    _, v = judged(study(tmp_path / "b", GAIN, teacher=0.72, gates_={"teacher_margin": 1.0}))
    assert v[IMPORTANCE].verdict == claims.SUPPORTED


def test_a_stage_one_student_below_the_ce_one_fails_only_the_claims_that_use_it(tmp_path):
    _, v = judged(study(tmp_path, GAIN, stage1=0.67))  # −3 points
    assert _not_testable(v[IMPORTANCE], gates.STAGE1)
    assert v[KD].verdict == claims.SUPPORTED  # kd vs ft on the same mask: stage 1 not involved
    _, v = judged(study(tmp_path / "b", GAIN, stage1=0.695))  # −0.5: within the tolerance
    assert v[IMPORTANCE].verdict == claims.SUPPORTED


def test_a_phase_still_rising_fails_convergence(tmp_path):
    data = study(tmp_path, GAIN, curves_by_row={"magnitude": {"finetune": RISING}})
    ev, v = judged(data)
    assert _not_testable(v[IMPORTANCE], gates.CONVERGED)
    assert _not_testable(v[KD], gates.CONVERGED)
    row = ev.gates[(ev.gates["claim"] == "importance") & (ev.gates["gate"] == gates.CONVERGED)]
    assert "magnitude finetune" in row["detail"].iloc[0]
    # RISING gains 0.12 a window-step of 3 epochs = 12 points; a 13-point threshold lets it pass
    _, v = judged(data, Thresholds(plateau_gain=13.0))
    assert v[IMPORTANCE].verdict == claims.SUPPORTED


def test_plateau_gain_is_the_last_window_against_the_one_before():
    import pandas as pd

    curve = [10, 20, 30, 40, 50, 60, 70, 71, 72]  # last 3: 71.0, the 3 before: 50.0
    frame = pd.DataFrame({"row": "r", "sparsity": 0.9, "seed": 0, "phase": "finetune",
                          "epoch": range(1, 10), "val_acc": curve})
    gains = gates.plateau_gains(frame, 3)
    assert gains["gain"].iloc[0] == pytest.approx(71.0 - 50.0)
    assert math.isnan(gates.plateau_gains(frame.head(5), 3)["gain"].iloc[0])  # too short
    result = gates.converged(frame.head(5), ["r"], Thresholds())
    assert not result.passed and "too short to judge" in result.detail


def test_unequal_retraining_or_off_proportion_iterative_budgets_fail(tmp_path):
    data = study(tmp_path, GAIN, budgets={"magnitude": {"sparse_epochs": 10}},
                 seconds={"colt": 2000.0})
    _, v = judged(data)
    assert _not_testable(v[IMPORTANCE], gates.BUDGETS)
    assert _not_testable(v[KD], gates.BUDGETS)
    # COLT's ticket trained 3x the retraining budget: the cost claim cannot be judged
    data = study(tmp_path / "b", GAIN, budgets={"colt": {"sparse_epochs": 18}},
                 seconds={"colt": 2000.0})
    ev, v = judged(data)
    assert _not_testable(v[COST], gates.BUDGETS)
    assert v[IMPORTANCE].verdict == claims.SUPPORTED
    detail = ev.gates[(ev.gates["claim"] == "cost") & (ev.gates["gate"] == gates.BUDGETS)]
    assert "colt: final ticket 18 epochs" in detail["detail"].iloc[0]


def test_a_missing_row_makes_the_claim_not_testable_instead_of_shrinking_the_family(tmp_path):
    full = study(tmp_path / "a", GAIN)
    part = study(tmp_path / "b", GAIN, skip={("random[match=tg-oneshot]", s) for s in (0, 1, 2)})
    ev_full, _ = judged(full)
    ev_part, v = judged(part)
    assert _not_testable(v[IMPORTANCE], gates.ROWS)
    fam_full = ev_full.tests[ev_full.tests["claim"] == "importance"]
    fam_part = ev_part.tests[ev_part.tests["claim"] == "importance"]
    assert len(fam_part) == len(fam_full) == 8  # the family keeps its size
    assert (fam_part["pairs"] == 0).sum() == 2
    # Holm over 8 tests, the two that could not run counting as p = 1: the smallest p is
    # multiplied by 8, not by the 6 tests that ran
    present = fam_part[fam_part["pairs"] > 0]
    smallest = present.loc[present["p"].idxmin()]
    assert smallest["p_holm"] == pytest.approx(min(1.0, 8 * smallest["p"]))
    # the EPSD claim, with no EPSD row at all, names the rows it lacks
    assert _not_testable(v[EPSD_CLAIM], gates.ROWS)
    # a row the grid never asks for (the quick grid has no magnitude-kd): its tests stay in the
    # family with no pairs, whichever side of the contrast the row is on
    no_kd = study(tmp_path / "c", GAIN, rows={k: v for k, v in ROWS.items() if k != "magnitude-kd"})
    ev_kd, v_kd = judged(no_kd)
    kd_family = ev_kd.tests[ev_kd.tests["claim"] == "kd"]
    assert len(kd_family) == 6 and (kd_family["pairs"] == 0).sum() == 3
    assert _not_testable(v_kd[KD], gates.ROWS)


def test_the_cost_claim_in_epoch_equivalents_is_exact(tmp_path):
    data = study(tmp_path, GAIN, seconds={"colt": 2000.0, "tg-oneshot-kd": 100.0})
    ev, _ = judged(data)
    row = ev.cost[ev.cost["sparsity"] == 0.98].iloc[0]
    colt = COLT_ROUNDS * ROUND + RETRAIN  # rounds x round epochs + the ticket
    one_shot = (DENSE + RETRAIN) * (1 + 1 / 3)  # smallcnn teacher: a third of its own step
    assert row["epochs_ratio"] == pytest.approx(colt / one_shot)
    teacher = 200 / 160 * DENSE  # charged at the paper grid's teacher / dense proportion
    assert row["epochs_ratio_with_teacher"] == pytest.approx(colt / (one_shot + teacher))
    # COLT's evaluation (a fifth of its seconds) is not training time
    assert row["colt_eval_share"] == pytest.approx(0.2, abs=0.02)
    # and neither is the one-shot row's teacher (a quarter of its 100 s here): trained once per
    # dataset and architecture, it is reported on its own
    assert row["ratio"] == pytest.approx(2000.0 / 75.0, rel=0.1)
    assert row["ci_low"] < row["ratio"] < row["ci_high"]
    # tested against √10 and Holm-corrected over the levels like every other claim's family
    assert (ev.cost["p_holm"] >= ev.cost["p"]).all() and set(ev.cost["mark"]) == {claims.FOR}


def test_the_cost_claim_without_colt_has_no_minutes(tmp_path):
    rows = {k: v for k, v in ROWS.items() if k != "colt"}
    ev, _ = judged(study(tmp_path, GAIN, rows=rows))
    assert len(ev.cost) and (ev.cost["pairs"] == 0).all()
    # no pair, no mean: not "0.00 minutes" beside cells that took an hour
    assert ev.cost["one_shot_min"].isna().all() and ev.cost["colt_min"].isna().all()
    from bench.report.claims_section import _cost

    _, table = _cost(ev)
    assert set(table.frame.iloc[0][["tg-oneshot-kd min", "colt evaluation share"]]) == {"—"}


def test_the_ledger_counts_each_rows_epochs(tmp_path):
    data = study(tmp_path, GAIN, rows={**ROWS, **EPSD})
    book = ledger.ledger(data.merged, "synthetic", data.phases)
    at = book.set_index(["row", "sparsity"])
    assert at.loc[("tg-oneshot-kd", 0.9), "total_epochs"] == DENSE + RETRAIN
    assert at.loc[("tg-oneshot-kd", 0.9), "phases"] == f"stage 1 {DENSE} + retrain {RETRAIN}"
    assert at.loc[("colt", 0.9), "rounds"] == COLT_ROUNDS
    assert at.loc[("pskd-epsd", 0.9), "total_epochs"] == 20
    assert at.loc[("dense", 0.0), "total_epochs"] == DENSE


def test_thresholds_are_declared_by_the_grid_and_checked(tmp_path):
    with pytest.raises(UsageError, match=r"unknown gate threshold 'margin'; valid: teacher_margin"):
        Grid(name="g", methods=("magnitude",), datasets=("digits",), sparsities=(0.5,),
             gates={"margin": 2})
    with pytest.raises(UsageError, match=r"plateau_window=0 is invalid"):
        thresholds_from({"plateau_window": 0})
    grid = grid_from_mapping({"methods": ["magnitude"], "datasets": ["digits"],
                              "sparsities": [0.5], "gates": {"teacher_margin": 2.5}}, "g.yaml")
    assert thresholds_from(grid.gates).teacher_margin == 2.5
    with pytest.raises(UsageError, match=r"^g.yaml: gates: unknown gate threshold 'x'"):
        grid_from_mapping({"methods": ["magnitude"], "datasets": ["digits"],
                           "sparsities": [0.5], "gates": {"x": 1}}, "g.yaml")


def _report_verdicts(data, out):
    """The claims section as the report writes it: its verdict lines and its gates.csv."""
    import pandas as pd

    from bench.report.claims_section import claims_section
    from bench.report.writer import write_report

    text = write_report([claims_section(data)], out, "r").markdown
    lines = {claim: next(line for line in text.splitlines()
                         if line.startswith("- synthetic:") and claim in line)
             for claim in (IMPORTANCE, KD)}
    return text, lines, pd.read_csv(out / "gates.csv")


def test_the_report_judges_with_the_thresholds_its_grid_declares(tmp_path):
    """The grid's `gates` reach the report's verdicts, both ways: a looser declared margin
    admits a teacher +2 points ahead, a stricter one rejects a teacher +15 points ahead."""
    loose = study(tmp_path / "a", GAIN, teacher=0.72, gates_={"teacher_margin": 1.0})
    text, lines, table = _report_verdicts(loose, tmp_path / "out-a")
    assert "declared by grid synth: teacher_margin = 1" in text
    for claim in (IMPORTANCE, KD):
        assert lines[claim].startswith(f"- synthetic: {claim}: SUPPORTED ("), lines[claim]
    margin = table[table["gate"] == gates.TEACHER]
    assert margin["passed"].all() and set(margin["threshold"]) == {"≥ +1 points"}

    strict = study(tmp_path / "b", GAIN, gates_={"teacher_margin": 20.0})  # teacher +15
    text, lines, table = _report_verdicts(strict, tmp_path / "out-b")
    assert "teacher_margin = 20" in text
    for claim in (IMPORTANCE, KD):
        assert "NOT TESTABLE HERE" in lines[claim] and "teacher margin" in lines[claim]
    margin = table[table["gate"] == gates.TEACHER]
    assert not margin["passed"].any() and set(margin["threshold"]) == {"≥ +20 points"}


def test_rankings_are_tested_only_from_enough_settings():
    import pandas as pd

    rows = [{"dataset": "d", "row": r, "sparsity": s, "n": 3, "mean": m + s}
            for s in (0.5, 0.9) for r, m in (("a", 70.0), ("b", 60.0), ("c", 50.0))]
    few = stats.ranking(pd.DataFrame(rows))
    assert math.isnan(few.friedman_p) and "at least 10" in few.reason
    assert list(few.ranks) == [1.0, 2.0, 3.0]  # the average ranks are still shown
    many = [dict(r, sparsity=r["sparsity"] + k) for k in range(5) for r in rows]
    assert not math.isnan(stats.ranking(pd.DataFrame(many)).friedman_p)


def test_the_report_shows_the_gates_first_and_never_a_verdict_past_a_failed_gate(tmp_path):
    from bench.report.command import report_sections
    from bench.report.writer import write_report

    data = study(tmp_path / "s", GAIN, stage1=0.60, teacher=0.72)
    report = write_report(report_sections(data), tmp_path / "out", "r")
    text = (tmp_path / "out" / "report.md").read_text()
    section = text[text.index("## The paper's claims"):]
    assert section.index("Validity gates") < section.index("- synthetic:")
    for line in section.splitlines():
        if line.startswith("- synthetic:") and IMPORTANCE in line:
            assert "NOT TESTABLE HERE" in line and "teacher margin, stage 1 works" in line
            assert "SUPPORTED" not in line and "CONTRADICTED" not in line
    assert "(observation)" in section
    for name in ("gates.csv", "ledger.csv", "claims.csv", "claims_cost.csv"):
        assert (tmp_path / "out" / name).is_file(), name
    assert report.files


def test_the_published_csvs_give_the_same_gates_and_verdicts_as_the_store(tmp_path):
    """A report's records.csv, phases.csv and curves.csv carry everything the claims need:
    `bench.report --records` rebuilds the same gates, tests and verdicts without the store."""
    from bench.report.published import load_published
    from bench.report.command import report_sections
    from bench.report.writer import write_report

    data = study(tmp_path / "s", GAIN, stage1=0.68, seconds={"colt": 2000.0},
                 curves_by_row={"magnitude": {"finetune": RISING}})
    write_report(report_sections(data), tmp_path / "a", "r")
    again = load_published(tmp_path / "a" / "records.csv", data.grid, report_dir=tmp_path / "b")
    write_report(report_sections(again), tmp_path / "b", "r")
    for name in ("gates.csv", "claims.csv", "claims_cost.csv", "ledger.csv"):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text(), name
    verdicts = [line for line in (tmp_path / "b" / "report.md").read_text().splitlines()
                if line.startswith("- synthetic:")]
    assert verdicts == [line for line in (tmp_path / "a" / "report.md").read_text().splitlines()
                        if line.startswith("- synthetic:")]
    assert any("NOT TESTABLE HERE" in v and "converged" in v for v in verdicts)


@pytest.mark.parametrize("grid_name", ["paper", "cifar-converged"])
def test_the_claims_grids_hold_every_row_their_claims_compare(grid_name):
    """A grid meant to judge claims 1 and 2 must run their controls and the dense CE row, or its
    report can only say "not testable" (the row-set and teacher-margin gates)."""
    from bench.plan.grid import load_grid

    import pandas as pd

    from bench.report.tables import row_labels

    cells = load_grid(grid_name).cells()
    merged = pd.DataFrame([{"dataset": c.dataset, "label": c.label, "sparsity": c.sparsity,
                            "temperature": c.resolved_temperature(), "model": c.model,
                            "sparse_epochs": c.sparse_epochs} for c in cells])
    merged["row"] = row_labels(merged)  # as the report names them
    for dataset in set(merged["dataset"]):
        mine = merged[merged["dataset"] == dataset]
        for claim in claims.CLAIMS[:2]:
            for c in claim.contrasts:
                for s in claims.contrast_levels(merged, dataset, claim, c):
                    at = set(mine[mine["sparsity"] == s]["row"])
                    assert {c.better, c.worse} <= at, (grid_name, dataset, claim.key, s, at)
        assert ((mine["row"] == "dense") & (mine["sparsity"] == 0)).any()


def test_the_teacher_margin_weighs_each_seed_once_not_each_cell():
    """A teacher trained per seed: seed 0's nine cells must not outvote seeds 1 and 2."""
    import pandas as pd

    cells = [{"row": "tg-oneshot-kd", "method": "tg-oneshot", "sparsity": 0.9, "seed": 0,
              "teacher_test_acc": 0.60, "test_acc": 0.5, "dense_test_acc": 0.5}] * 9
    cells += [{"row": "tg-oneshot-kd", "method": "tg-oneshot", "sparsity": 0.9, "seed": s,
               "teacher_test_acc": 0.50, "test_acc": 0.5, "dense_test_acc": 0.5} for s in (1, 2)]
    cells += [{"row": "dense", "method": "dense", "sparsity": 0.0, "seed": s,
               "teacher_test_acc": None, "test_acc": 0.50, "dense_test_acc": None}
              for s in (0, 1, 2)]
    result = gates.teacher_margin(pd.DataFrame(cells), Thresholds())
    assert result.value == "+3.33 points" and not result.passed  # per cell it read +8.18


def test_a_seed_too_short_to_judge_fails_convergence_rather_than_dropping_out():
    import pandas as pd

    rows = [{"row": "magnitude", "sparsity": 0.9, "seed": s, "phase": "finetune", "epoch": e,
             "val_acc": 70.0} for s in (0, 1) for e in range(10)]
    rows += [{"row": "magnitude", "sparsity": 0.9, "seed": 2, "phase": "finetune", "epoch": e,
              "val_acc": 40.0 + 5 * e} for e in range(4)]
    result = gates.converged(pd.DataFrame(rows), ["magnitude"], Thresholds())
    assert not result.passed and "too short to judge" in result.detail


def test_a_point_asked_of_one_row_only_is_no_test_of_the_other(tmp_path):
    """The paper grid adds tg-oneshot at 0.977 for the COLT timing only: the importance claim
    must not count tests there against rows the grid never asked for at 0.977."""
    cells = cells_for(ROWS) + [make_config(
        method="tg-oneshot", options={"retrain": r}, dataset="synthetic", sparsity=0.977,
        seed=s, dense_epochs=DENSE, sparse_epochs=RETRAIN, round_epochs=ROUND,
        model="smallcnn", teacher="smallcnn") for r in ("ft", "kd") for s in (0, 1, 2)]
    store = ResultStore(tmp_path)
    for cfg in cells:
        store.write(record_for(cfg, GAIN.get(cfg.label, 0.7) + 0.001 * cfg.seed))
    grid = Grid(name="synth", methods=tuple(ROWS), datasets=("synthetic",),
                sparsities=(0.5, 0.9, 0.98))
    ev, verdicts = judged(load_report_data(grid, cells, store))
    importance = ev.tests[ev.tests["claim"] == "importance"]
    assert set(importance["sparsity"]) == {0.9, 0.98}
    assert verdicts[IMPORTANCE].verdict == claims.SUPPORTED


def test_a_default_temperature_that_differs_between_datasets_is_no_sweep():
    import pandas as pd

    from bench.report.tables import row_labels

    merged = pd.DataFrame([{"dataset": d, "label": "tg-oneshot-kd", "temperature": t,
                            "model": "resnet18", "sparse_epochs": 50}
                           for d, t in (("cifar10", 3.0), ("tinyimagenet", 5.0))]
                          + [{"dataset": "cifar10", "label": "tg-oneshot-ft", "temperature": t,
                              "model": "resnet18", "sparse_epochs": 50} for t in (2.0, 4.0)])
    assert list(row_labels(merged)) == ["tg-oneshot-kd", "tg-oneshot-kd",
                                        "tg-oneshot-ft (T=2)", "tg-oneshot-ft (T=4)"]
