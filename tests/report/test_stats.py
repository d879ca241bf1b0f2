"""bench/report/stats.py on numbers whose answer is known, and against direct scipy / statsmodels /
scikit-posthocs calls on the same data."""
from __future__ import annotations

import math
import random

import pandas as pd
import pytest
import scikit_posthocs as sp
from scipy import stats as st

from bench.report import stats


def seed_frame(draws: dict[str, list[float]], dataset="d", sparsity=0.9) -> pd.DataFrame:
    return pd.DataFrame([{"dataset": dataset, "row": row, "sparsity": sparsity, "seed": seed,
                          "acc": acc} for row, accs in draws.items()
                         for seed, acc in enumerate(accs) if acc is not None])


def test_t_interval_is_scipys_student_interval():
    values = [91.0, 92.5, 90.2, 93.1]
    sem = st.sem(values)
    assert stats.t_interval(values) == pytest.approx(
        st.t.interval(0.95, len(values) - 1, loc=sum(values) / 4, scale=sem))
    assert all(math.isnan(v) for v in stats.t_interval([91.0]))


def test_large_true_difference_is_marked_and_same_distribution_is_not():
    rng = random.Random(0)
    draws = {"ref": [90 + rng.gauss(0, 0.5) for _ in range(5)],
             "worse": [80 + rng.gauss(0, 0.5) for _ in range(5)],
             "better": [95 + rng.gauss(0, 0.5) for _ in range(5)],
             "same": [90 + rng.gauss(0, 0.5) for _ in range(5)]}
    c = stats.compare(seed_frame(draws), "ref").set_index("row")
    assert c.loc["worse", "mark"] == stats.WORSE and c.loc["better", "mark"] == stats.BETTER
    assert c.loc["same", "mark"] == stats.SAME and c.loc["same", "p_holm"] >= stats.ALPHA
    assert set(c["test"]) == {"paired t"} and set(c["pairs"]) == {5}
    # the p-value is scipy's paired t-test, Holm-corrected over the three comparisons
    raw = st.ttest_rel(draws["worse"], draws["ref"]).pvalue
    assert c.loc["worse", "p"] == pytest.approx(raw)
    assert c.loc["worse", "p_holm"] >= c.loc["worse", "p"]


def test_missing_seeds_are_paired_only_over_the_seeds_both_have():
    method = {0: 80.0, 1: 81.0, 2: 79.0, 3: 82.0}
    reference = {1: 90.0, 2: 91.0, 3: 90.0, 4: 99.0}
    pr = stats.paired(method, reference)
    assert pr.pairs == 3 and pr.seeds == (1, 2, 3)
    assert pr.mean_diff == pytest.approx(((81 - 90) + (79 - 91) + (82 - 90)) / 3)
    assert pr.p == pytest.approx(st.ttest_rel([81, 79, 82], [90, 91, 90]).pvalue)
    # through compare: a failed seed (absent row) leaves two pairs: no test, no mark
    c = stats.compare(seed_frame({"ref": [90, 91, 92], "m": [80, None, 81]}), "ref")
    assert c["pairs"].tolist() == [2] and c["mark"].tolist() == [""]
    assert c["test"].tolist() == [""] and math.isnan(c["p"].iloc[0])


def test_differences_equal_but_for_rounding_have_no_spread():
    import warnings

    # 77.30 - 76.57 and 54.46 - 53.73 are both 0.73 points, apart in the last bits only
    method = {0: 77.30, 1: 76.61, 2: 54.46}
    shifted = {s: v - 0.73 for s, v in method.items()}
    assert len({method[s] - shifted[s] for s in method}) > 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pr = stats.paired(method, shifted)
        # differences 5.6e-17, 5.6e-17, 0: a mean of 3.7e-17, which is no difference
        same = stats.paired({0: 0.1 + 0.2, 1: 0.1 + 0.2, 2: 0.7}, {0: 0.3, 1: 0.3, 2: 0.7})
        ten = stats.paired({s: 77.30 if s % 2 else 54.46 for s in range(10)},
                           {s: (77.30 if s % 2 else 54.46) - 0.73 for s in range(10)})
    assert (pr.test, pr.p, pr.mean_diff) == ("paired t", 0.0, pytest.approx(0.73))
    assert (same.p, same.mean_diff) == (1.0, 0.0)
    # from ten pairs the signed-rank test, whose p for ten differences of one sign is 2^-9
    assert (ten.test, ten.p) == ("Wilcoxon", pytest.approx(2 ** -9))


def test_wilcoxon_from_ten_pairs():
    rng = random.Random(1)
    a = {s: 90 + rng.gauss(0, 1) for s in range(12)}
    b = {s: 89 + rng.gauss(0, 1) for s in range(12)}
    pr = stats.paired(a, b)
    assert pr.test == "Wilcoxon"
    assert pr.p == pytest.approx(st.wilcoxon([a[s] - b[s] for s in range(12)]).pvalue)
    assert stats.paired({s: a[s] for s in range(9)}, b).test == "paired t"


def test_holm_by_hand():
    # sorted 0.01, 0.03, 0.04 -> 3*0.01, max(0.03, 2*0.03), max(0.06, 1*0.04)
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    out = stats.holm([math.nan, 0.02])
    assert math.isnan(out[0]) and out[1] == pytest.approx(0.02)


def test_friedman_and_nemenyi_equal_direct_calls():
    rng = random.Random(2)
    methods = ["a", "b", "c", "d"]
    rows = [{"dataset": ds, "sparsity": s, "row": m, "n": 3,
             "mean": 90 - 3 * i + rng.gauss(0, 2)}
            for ds in ("x", "y", "z", "w") for s in (0.5, 0.9, 0.98) for i, m in enumerate(methods)]
    # a setting where one method has no result is left out of every number
    rows.append({"dataset": "y", "sparsity": 0.99, "row": "a", "n": 3, "mean": 10.0})
    rows += [{"dataset": "y", "sparsity": 0.99, "row": m, "n": 0, "mean": math.nan}
             for m in methods[1:]]
    summary = pd.DataFrame(rows)
    r = stats.ranking(summary)
    assert len(r.settings) == 12 and r.left_out == (("y", 0.99),)
    matrix = summary[summary["n"] > 0].pivot_table(index=["dataset", "sparsity"], columns="row",
                                                  values="mean").dropna()[methods]
    stat, p = st.friedmanchisquare(*[matrix[m] for m in methods])
    assert (r.friedman_stat, r.friedman_p) == pytest.approx((stat, p))
    direct = sp.posthoc_nemenyi_friedman(matrix.reset_index(drop=True))
    pd.testing.assert_frame_equal(r.nemenyi, direct)
    ranks = pd.DataFrame([st.rankdata([-v for v in row]) for row in matrix.to_numpy()],
                         columns=methods).mean()
    assert r.ranks.tolist() == pytest.approx(ranks.tolist())
    # Demšar's table: q_0.05 = 2.569 for k = 4
    assert r.cd == pytest.approx(2.569 * math.sqrt(4 * 5 / (6 * 12)), abs=1e-3)


def test_ranking_needs_three_methods_and_two_settings():
    summary = pd.DataFrame([{"dataset": "x", "sparsity": 0.5, "row": m, "n": 1, "mean": v}
                            for m, v in (("a", 1.0), ("b", 2.0), ("c", 3.0))])
    r = stats.ranking(summary)
    assert r.reason and math.isnan(r.friedman_p) and r.ranks.tolist() == [3.0, 2.0, 1.0]


def test_seeds_needed_for_one_standard_deviation():
    from statsmodels.stats.power import TTestPower

    n = stats.seeds_needed(1.0)
    assert n == math.ceil(TTestPower().solve_power(1.0, power=0.8, alpha=0.05)) == 10
