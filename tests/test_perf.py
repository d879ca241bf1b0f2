"""bench/perf.py's command line and its cost rows (their arithmetic, not their timings)."""
import pytest

from bench.perf import TARGETS, colt_against_oneshot
from conftest import TINY, run_cli


def test_unknown_row_is_one_line_and_exit_2():
    res = run_cli("bench.perf", "--only", "colt,nosuch")
    assert res.returncode == 2
    assert res.stderr.strip() == f"error: unknown row(s) ['nosuch']; valid: {', '.join(TARGETS)}"


def test_colt_row_matches_round_budgets_and_splits_tg_oneshot_costs():
    base = {**TINY, "sparse_epochs": 2, "round_epochs": 1}
    t = colt_against_oneshot("cpu", 0.9, base=base)
    assert t["colt_rounds"] >= 2  # 15 % a round cannot reach 90 % in one
    # the three tg-oneshot figures drop the teacher, then the dense student too
    assert 0 < t["tg_cell"] < t["tg_without_teacher"] < t["tg_total"]
    assert t["colt"] > 0
    assert t["round_epochs"] == t["sparse_epochs"] == 2  # matched, whatever the base said
