"""bench.report.claims: the paper's claims tested on records whose truth the test sets."""
from __future__ import annotations

import random

import pytest

from bench.report import claims
from bench.report.data import load_report_data
from bench.store import ResultStore

from test_report import make_grid, make_record

METHODS = ("magnitude", "magnitude:retrain=kd", "tg-oneshot:retrain=ft", "tg-oneshot:retrain=kd",
           "colt")


def store_with(root, acc, seconds=None, seeds=(0, 1, 2), edit=None):
    """Records of METHODS at 0.5/0.9/0.98 on synthetic: accuracy acc[label] (a fraction) plus
    N(0, 0.2 pt) noise; seconds[label] (default 100) times 1 ± 5 % per seed."""
    grid = make_grid(methods=METHODS, seeds=seeds)
    rng = random.Random(1)
    store = ResultStore(root)
    for cfg in grid.cells():
        record = make_record(cfg, acc[cfg.label] + rng.gauss(0, 0.002))
        total = (seconds or {}).get(cfg.label, 100.0) * (1 + rng.uniform(-0.05, 0.05))
        record["cost"]["seconds_total"] = total
        if edit:
            edit(cfg, record)
        store.write(record)
    return load_report_data(grid, grid.cells(), store)


def verdicts(data, teacher=None) -> dict[str, str]:
    _, _, out = claims.evaluate(data.merged, data.datasets, teacher)
    return {v.claim: v.verdict for v in out}


IMPORTANCE, KD, EPSD = (c.text for c in claims.CLAIMS)


def test_a_true_importance_gain_is_supported_and_a_true_loss_contradicted(tmp_path):
    better = store_with(tmp_path / "a", {"magnitude": 0.70, "magnitude-kd": 0.72,
                                         "tg-oneshot-ft": 0.75, "tg-oneshot-kd": 0.77, "colt": 0.7})
    v = verdicts(better)
    assert v[IMPORTANCE] == "supported"
    assert v[KD] == "supported"  # +2 points, both masks, at every sparsity
    assert v[EPSD] == "not testable"  # no EPSD-family row in the grid
    worse = store_with(tmp_path / "b", {"magnitude": 0.75, "magnitude-kd": 0.75,
                                        "tg-oneshot-ft": 0.70, "tg-oneshot-kd": 0.70, "colt": 0.7})
    v = verdicts(worse)
    assert v[IMPORTANCE] == "contradicted"
    assert v[KD] == "not shown"  # the KD rows equal the CE rows up to noise


def test_high_sparsity_claims_ignore_lower_sparsities(tmp_path):
    data = store_with(tmp_path, {"magnitude": 0.70, "magnitude-kd": 0.70, "tg-oneshot-ft": 0.72,
                                 "tg-oneshot-kd": 0.72, "colt": 0.7})
    tests, _, _ = claims.evaluate(data.merged, data.datasets)
    assert set(tests.loc[tests["claim"] == "importance", "sparsity"]) == {0.9, 0.98}
    assert set(tests.loc[tests["claim"] == "kd", "sparsity"]) == {0.5, 0.9, 0.98}
    one = tests[(tests["claim"] == "importance") & (tests["better"] == "tg-oneshot-ft")
                & (tests["worse"] == "magnitude") & (tests["sparsity"] == 0.9)].iloc[0]
    assert one["pairs"] == 3 and one["mean_diff"] == pytest.approx(2.0, abs=0.6)
    assert one["ci_low"] < one["mean_diff"] < one["ci_high"]
    # Holm within the claim: never below the raw p
    assert (tests["p_holm"] >= tests["p"] - 1e-12).all()


def test_two_seeds_are_not_testable(tmp_path):
    data = store_with(tmp_path, {"magnitude": 0.70, "magnitude-kd": 0.72, "tg-oneshot-ft": 0.75,
                                 "tg-oneshot-kd": 0.77, "colt": 0.7}, seeds=(0, 1))
    v = verdicts(data)
    assert v[IMPORTANCE] == v[KD] == v[claims.COST_CLAIM] == "not testable"


def test_off_target_cells_do_not_count(tmp_path):
    def miss(cfg, record):  # every tg-oneshot-ft cell landed far from its target
        if cfg.label == "tg-oneshot-ft":
            record["sparsity"]["prunable"] = cfg.sparsity - 0.2

    data = store_with(tmp_path, {"magnitude": 0.70, "magnitude-kd": 0.70, "tg-oneshot-ft": 0.80,
                                 "tg-oneshot-kd": 0.70, "colt": 0.7}, edit=miss)
    tests, _, _ = claims.evaluate(data.merged, data.datasets)
    assert not (tests["better"] == "tg-oneshot-ft").any()


@pytest.mark.parametrize("colt_times, verdict", [(20.0, "supported"), (3.0, "contradicted")])
def test_cost_claim_is_the_ratio_of_wall_clock(tmp_path, colt_times, verdict):
    data = store_with(tmp_path, {"magnitude": 0.7, "magnitude-kd": 0.7, "tg-oneshot-ft": 0.7,
                                 "tg-oneshot-kd": 0.7, "colt": 0.7},
                      seconds={"tg-oneshot-kd": 60.0, "colt": 60.0 * colt_times})
    _, cost, out = claims.evaluate(data.merged, data.datasets, teacher=60.0)
    assert {v.claim: v.verdict for v in out}[claims.COST_CLAIM] == verdict
    row = cost[cost["sparsity"] == 0.98].iloc[0]
    assert row["ratio"] == pytest.approx(colt_times, rel=0.1)
    assert row["ci_low"] < row["ratio"] < row["ci_high"]
    # the teacher's 60 s added to every one-shot cell halves the ratio
    assert row["ratio_with_teacher"] == pytest.approx(colt_times / 2, rel=0.1)


def test_the_loaded_teachers_seconds_come_from_its_record(tmp_path):
    import dataclasses

    data = store_with(tmp_path, {"magnitude": 0.7, "magnitude-kd": 0.7, "tg-oneshot-ft": 0.7,
                                 "tg-oneshot-kd": 0.7, "colt": 0.7})
    teacher_cfg = data.cells[0]
    record = make_record(teacher_cfg, 0.9)
    record["cost"]["seconds_total"] = 1234.0
    data.store.write(record)
    path = data.store.checkpoint_path(teacher_cfg.id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"weights")  # a config hashes the file it loads
    elsewhere = tmp_path / "elsewhere.pt"
    elsewhere.write_bytes(b"weights")
    path, elsewhere = str(path), str(elsewhere)
    loading = [dataclasses.replace(c, teacher_checkpoint=path) for c in data.cells]
    assert claims.teacher_seconds(loading, data.store) == pytest.approx(1234.0)
    assert claims.teacher_seconds(data.cells, data.store) is None  # nothing loaded
    other = dataclasses.replace(data.cells[1], teacher_checkpoint=elsewhere)
    assert claims.teacher_seconds([other], data.store) is None  # trained in another store


def test_the_report_has_the_claims_section_and_its_csv(tmp_path):
    from bench.report.command import build_report

    grid = make_grid(methods=METHODS, seeds=(0, 1, 2))
    store, rng = ResultStore(tmp_path / "s"), random.Random(2)
    for cfg in grid.cells():
        store.write(make_record(cfg, 0.7 + (0.05 if cfg.method == "tg-oneshot" else 0.0)
                                + rng.gauss(0, 0.002)))
    build_report(grid, grid.cells(), store, tmp_path / "out")
    text = (tmp_path / "out" / "report.md").read_text()
    assert "## The paper's claims" in text
    assert f"synthetic: {IMPORTANCE}: SUPPORTED" in text
    rows = (tmp_path / "out" / "claims.csv").read_text().splitlines()
    assert rows[0].startswith("dataset,claim,better,worse")
    assert len(rows) > 1
    records = (tmp_path / "out" / "records.csv").read_text().splitlines()
    assert len(records) == 1 + len(grid.cells())  # the records summary: one row per cell
    assert "teacher_test_acc" in records[0] and "dense_epochs" in records[0]


def test_the_teachers_margin_over_the_dense_student_is_read_from_the_records(tmp_path):
    def teacher(cfg, record):
        record["extra"] = ({"teacher": {"test_acc": 0.80}} if cfg.method == "tg-oneshot" else
                           {"dense_test_acc": 0.70 + cfg.seed / 100})
    data = store_with(tmp_path / "a", {"magnitude": 0.7, "magnitude-kd": 0.7, "tg-oneshot-ft": 0.7,
                                       "tg-oneshot-kd": 0.7, "colt": 0.7}, edit=teacher)
    text = claims.teacher_margin(data.merged, "synthetic")
    assert "teacher 80.00 %" in text and "dense CE student 71.00 ± 1.00 %" in text
    assert "margin +9.00 points" in text and "not stronger" not in text

    def weak(cfg, record):
        record["extra"] = ({"teacher": {"test_acc": 0.60}} if cfg.method == "tg-oneshot" else
                           {"dense_test_acc": 0.70})
    data = store_with(tmp_path / "b", {"magnitude": 0.7, "magnitude-kd": 0.7, "tg-oneshot-ft": 0.7,
                                       "tg-oneshot-kd": 0.7, "colt": 0.7}, edit=weak)
    assert "not stronger than the student" in claims.teacher_margin(data.merged, "synthetic")
