"""bench/report/phase_times.py: images/s and share of time per phase, from a record."""
import pytest

from bench.report.phase_times import format_profile, format_profiles, phase_rows

RECORD = {
    "id": "abc123", "label": "tg-oneshot-kd", "status": "ok",
    "config": {"method": "tg-oneshot", "dataset": "digits", "sparsity": 0.9, "seed": 0},
    "provenance": {"device": "cuda", "device_name": "NVIDIA H100"},
    "cost": {"seconds_total": 40.0, "seconds_cell": 10.0},
    "phases": {
        "teacher": {"epochs": 2, "images": 3000, "seconds": 20.0, "shared": True, "cached": True},
        "student": {"epochs": 1, "images": 1500, "seconds": 10.0, "shared": True},
        "prune": {"epochs": 0, "seconds": 0.5},
        "retrain": {"epochs": 2, "images": 3000, "seconds": 8.0},
        "evaluate": {"epochs": 0, "seconds": 1.5},
    },
    "phase_order": ["teacher", "student", "prune", "retrain", "evaluate"],
}


def test_rows_in_run_order_with_rates_and_shares():
    rows = phase_rows(RECORD)
    assert [r["phase"] for r in rows] == ["teacher", "student", "prune", "retrain", "evaluate"]
    assert [r["images_per_s"] for r in rows] == [150.0, 150.0, None, 375.0, None]
    assert sum(r["share"] for r in rows) == pytest.approx(1.0)
    assert rows[0]["share"] == pytest.approx(0.5) and rows[3]["share"] == pytest.approx(0.2)
    assert rows[0]["cached"] and rows[1]["shared"] and not rows[1]["cached"]


def test_records_without_an_order_sort_rounds_by_number():
    phases = {n: {"epochs": 1, "seconds": 1.0} for n in ("round10-a", "round2-a", "round1-a",
                                                          "ticket")}
    assert [r["phase"] for r in phase_rows({"phases": phases}, fold_rounds=False)] == [
        "round1-a", "round2-a", "round10-a", "ticket"]


def test_rounds_fold_into_one_row_per_kind():
    phases, order = {}, []
    for i in (1, 2, 3):
        for part, epochs, images, seconds in (("a", 2, 100, 1.0), ("b", 2, 100, 1.0),
                                              ("prune", 0, 0, 0.5)):
            order.append(f"round{i}-{part}")
            phases[order[-1]] = {"epochs": epochs, "images": images, "seconds": seconds}
    phases["ticket"] = {"epochs": 4, "images": 400, "seconds": 4.5}  # 12 s in all
    rows = phase_rows({"phases": phases, "phase_order": order + ["ticket"]})
    assert [(r["phase"], r["count"], r["epochs"], r["images"]) for r in rows] == [
        ("rounds", 6, 12, 600), ("rounds-prune", 3, 0, 0), ("ticket", 1, 4, 400)]
    assert rows[0]["images_per_s"] == pytest.approx(100.0) and rows[0]["share"] == pytest.approx(0.5)
    assert "| rounds ×6 | 12 | 600 | 6.00 | 100 | 50% |" in format_profile(
        {"phases": phases, "phase_order": order + ["ticket"]})


def test_old_records_without_image_counts_show_a_dash():
    old = {**RECORD, "phases": {"finetune": {"epochs": 3, "seconds": 6.0}}}
    assert phase_rows(old)[0]["images_per_s"] is None
    assert "| finetune | 3 | — | 6.00 | — | 100% |" in format_profile(old)


def test_text_names_the_cell_device_and_marks_shared_phases():
    text = format_profile(RECORD)
    assert text.splitlines()[0].startswith("tg-oneshot-kd digits s=0.9 seed=0 [abc123] on "
                                           "NVIDIA H100 (cuda): 40.0 s")
    assert "| teacher (shared, cached) | 2 | 3,000 | 20.00 | 150 | 50% |" in text
    assert "| retrain | 2 | 3,000 | 8.00 | 375 | 20% |" in text
    failed = {**RECORD, "status": "failed"}
    assert format_profiles([failed]) == "profile: no finished cells to show"
    assert format_profiles([RECORD, failed]).count("| phase |") == 1
