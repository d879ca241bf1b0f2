"""How sure a report can be: confidence intervals, paired comparisons and rankings (issue 20).

Pure functions over plain numbers and frames; the statistics themselves come from scipy.stats,
statsmodels (Holm) and scikit-posthocs (Nemenyi, the critical-difference diagram), not from code
written here.

- Interval of a cell group: Student-t, mean ± t(0.975, n-1) · s/√n, over the group's seeds (the
  seeds are few, so a bootstrap would only resample two or three numbers).
- Paired comparison of a method with the reference at one (dataset, sparsity): over the seeds both
  have an on-target ok result, the mean difference and its t interval; the p-value is a paired
  t-test for MIN_PAIRS <= n < WILCOXON_FROM and a Wilcoxon signed-rank test from WILCOXON_FROM
  pairs on (with fewer than ten pairs its smallest p-values are too coarse, and the differences of
  a few seeds are close enough to normal for the t-test). Holm's correction runs over all the
  comparisons of one dataset's table. Fewer than MIN_PAIRS pairs: no test, no mark.
- Ranking: average ranks over the (dataset, sparsity) settings where every compared method has a
  result, Friedman's test (scipy), Nemenyi's post-hoc (scikit-posthocs) and Demšar's (2006)
  critical difference q_α · √(k(k+1)/(6N)).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import pandas as pd

LEVEL = 0.95
ALPHA = 0.05
MIN_PAIRS = 3  # below this no test is run and no mark shown
# Friedman's test and Nemenyi's post-hoc need enough independent settings: Demšar (2006, section
# 3.2.2) finds the chi-square approximation adequate from about N > 10 data sets; (dataset,
# sparsity) settings that share seeds and dense networks are not even independent, so below this
# count a report shows the average ranks without a test or a critical-difference diagram.
MIN_RANK_SETTINGS = 10
WILCOXON_FROM = 10  # paired t-test below, Wilcoxon signed-rank from here on
BETTER, WORSE, SAME, REFERENCE = "↑", "↓", "≈", "ref"


def t_interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, float]:
    """Two-sided Student-t interval of the mean; (NaN, NaN) for fewer than two values."""
    from scipy import stats  # deferred: ~1 s of start-up that bench.report --help skips

    n = len(values)
    if n < 2:
        return math.nan, math.nan
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return mean - half, mean + half


def seeds_needed(effect_size: float = 1.0, power: float = 0.8, alpha: float = ALPHA) -> int:
    """Seeds (pairs) a two-sided paired t-test needs to detect a mean difference of
    `effect_size` standard deviations of the differences with the given power."""
    from statsmodels.stats.power import TTestPower  # deferred: statsmodels' ~2 s start-up

    n = TTestPower().solve_power(effect_size=effect_size, power=power, alpha=alpha,
                                 alternative="two-sided")
    return max(MIN_PAIRS, math.ceil(float(n)))


# In the differences' units (accuracy points; log time ratios in claims.cost_tests): far below
# any test split's resolution (1e-4 points at 1e6 images).
NO_SPREAD = 1e-9


@dataclass(frozen=True)
class Paired:
    """One method against the reference at one setting, over the seeds both have."""
    pairs: int
    seeds: tuple
    mean_diff: float  # method − reference, accuracy points
    ci_low: float
    ci_high: float
    test: str  # "paired t", "Wilcoxon" or "" (too few pairs)
    p: float  # raw p-value; NaN without a test


def paired(method: Mapping[int, float], reference: Mapping[int, float]) -> Paired:
    """Pair the two by seed (only seeds both have) and test the mean difference."""
    from scipy import stats  # deferred: ~1 s of start-up that bench.report --help skips

    seeds = tuple(sorted(set(method) & set(reference)))
    diffs = [method[s] - reference[s] for s in seeds]
    n = len(diffs)
    mean = sum(diffs) / n if n else math.nan
    lo, hi = t_interval(diffs)
    if n < MIN_PAIRS:
        return Paired(n, seeds, mean, lo, hi, "", math.nan)
    # No spread: the t statistic is undefined, and so is Wilcoxon's when every difference is 0.
    # Accuracies are multiples of 100 / (test images) points, so equal differences can differ
    # in the last bits only; below NO_SPREAD that is rounding, on which scipy warns of
    # cancellation and returns a p made of it. (Wilcoxon's p for n differences of one sign,
    # 2^(1-n), is exact whatever their spread: scipy computes it below.)
    if max(diffs) - min(diffs) <= NO_SPREAD:
        if abs(mean) <= NO_SPREAD:
            return Paired(n, seeds, 0.0, lo, hi,
                          "paired t" if n < WILCOXON_FROM else "Wilcoxon", 1.0)
        if n < WILCOXON_FROM:
            return Paired(n, seeds, mean, lo, hi, "paired t", 0.0)
    if n < WILCOXON_FROM:
        p = float(stats.ttest_rel(
            [method[s] for s in seeds], [reference[s] for s in seeds]).pvalue)
        return Paired(n, seeds, mean, lo, hi, "paired t", p)
    return Paired(n, seeds, mean, lo, hi, "Wilcoxon", float(stats.wilcoxon(diffs).pvalue))


def holm(pvalues: Sequence[float], alpha: float = ALPHA) -> list[float]:
    """Holm-adjusted p-values (NaN stays NaN and does not count as a comparison)."""
    from statsmodels.stats.multitest import multipletests  # deferred: ~2 s start-up

    idx = [i for i, p in enumerate(pvalues) if not math.isnan(p)]
    out = [math.nan] * len(pvalues)
    if idx:
        adjusted = multipletests([pvalues[i] for i in idx], alpha=alpha, method="holm")[1]
        for i, p in zip(idx, adjusted):
            out[i] = float(p)
    return out


def mark(p_holm: float, mean_diff: float, alpha: float = ALPHA) -> str:
    if math.isnan(p_holm):
        return ""
    if p_holm >= alpha:
        return SAME
    return BETTER if mean_diff > 0 else WORSE


def compare(seed_acc: pd.DataFrame, reference: str) -> pd.DataFrame:
    """Every row against `reference` at each (dataset, sparsity) where the reference has results.

    `seed_acc` has one row per on-target ok seed: dataset, row, sparsity, seed, acc (in %). Holm's
    correction runs per dataset over its tested comparisons."""
    cols = ["dataset", "sparsity", "row", "reference", "pairs", "seeds", "mean_diff", "ci_low",
            "ci_high", "test", "p", "p_holm", "mark"]
    out = []
    for (dataset, sparsity), group in seed_acc.groupby(["dataset", "sparsity"], sort=False):
        ref = group[group["row"] == reference]
        if ref.empty:
            continue
        ref_acc = dict(zip(ref["seed"], ref["acc"]))
        for row, mine in group.groupby("row", sort=False):
            if row == reference:
                continue
            pr = paired(dict(zip(mine["seed"], mine["acc"])), ref_acc)
            out.append({"dataset": dataset, "sparsity": sparsity, "row": row,
                        "reference": reference, "pairs": pr.pairs, "seeds": pr.seeds,
                        "mean_diff": pr.mean_diff, "ci_low": pr.ci_low, "ci_high": pr.ci_high,
                        "test": pr.test, "p": pr.p})
    frame = pd.DataFrame(out, columns=cols[:-2])
    frame["p_holm"] = math.nan
    for _, idx in frame.groupby("dataset", sort=False).groups.items():
        frame.loc[idx, "p_holm"] = holm(list(frame.loc[idx, "p"]))
    frame["mark"] = [mark(p, d) for p, d in zip(frame["p_holm"], frame["mean_diff"])]
    return frame[cols]


@dataclass(frozen=True)
class Ranking:
    """Average ranks (1 = best) over the complete settings and the tests on them."""
    methods: tuple
    settings: tuple  # (dataset, sparsity) pairs where every method has a result
    matrix: pd.DataFrame  # settings x methods, mean accuracy in %
    ranks: pd.Series  # average rank per method
    left_out: tuple  # settings where some method has no result
    friedman_stat: float = math.nan
    friedman_p: float = math.nan
    nemenyi: "pd.DataFrame | None" = None  # pairwise p-values
    cd: float = math.nan  # Demšar's critical difference at ALPHA
    reason: str = ""  # why no test was run, if none


def ranking(summary: pd.DataFrame, methods: Sequence[str] | None = None) -> Ranking:
    """Ranks of the summary's rows by mean accuracy per (dataset, sparsity), over the settings where
    every row of `methods` (default: all rows) has n > 0."""
    from scipy import stats  # deferred: ~1 s of start-up that bench.report --help skips

    methods = tuple(methods) if methods is not None else tuple(dict.fromkeys(summary["row"]))
    has = summary[(summary["n"] > 0) & summary["row"].isin(methods)]
    table = has.pivot_table(index=["dataset", "sparsity"], columns="row", values="mean",
                            aggfunc="first")
    all_settings = list(dict.fromkeys(zip(summary["dataset"], summary["sparsity"])))
    table = table.reindex(columns=list(methods))
    complete = table.dropna()
    settings = tuple(complete.index)
    left_out = tuple(s for s in all_settings if s not in set(settings))
    ranks_per = complete.rank(axis=1, ascending=False, method="average")
    avg = ranks_per.mean().reindex(list(methods))
    base = dict(methods=methods, settings=settings, matrix=complete, ranks=avg,
                left_out=left_out)
    k, n = len(methods), len(settings)
    if k < 3 or n < MIN_RANK_SETTINGS:
        return Ranking(**base, reason=f"{k} row(s) over {n} complete setting(s); Friedman's "
                                      f"test needs at least 3 rows and at least "
                                      f"{MIN_RANK_SETTINGS} settings (Demšar 2006), and settings "
                                      "that share seeds and networks are not independent")
    stat, p = stats.friedmanchisquare(*[complete[m].to_numpy() for m in methods])
    nemenyi = nemenyi_pvalues(complete)
    return Ranking(**base, friedman_stat=float(stat), friedman_p=float(p), nemenyi=nemenyi,
                   cd=critical_difference(k, n))


def nemenyi_pvalues(matrix: pd.DataFrame) -> pd.DataFrame:
    """Nemenyi's pairwise p-values after Friedman on a settings x methods accuracy matrix."""
    import scikit_posthocs as sp  # deferred: ~2 s start-up, for the ranking only

    return sp.posthoc_nemenyi_friedman(matrix.reset_index(drop=True))


def critical_difference(k: int, n: int, alpha: float = ALPHA) -> float:
    """Demšar (2006): two average ranks differ when they are more than this apart (Nemenyi)."""
    from scipy import stats  # deferred: ~1 s of start-up that bench.report --help skips

    q = float(stats.studentized_range.ppf(1 - alpha, k, math.inf)) / math.sqrt(2)
    return q * math.sqrt(k * (k + 1) / (6.0 * n))
