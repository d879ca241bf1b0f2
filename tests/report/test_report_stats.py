"""The report's statistics, off-target cells and precision tags, on hand-written stores (the
records of tests/test_report.py, with accuracies drawn so that the answer is known)."""
from __future__ import annotations

import random
import re

import pandas as pd
import pytest

from bench.report import stats
from bench.registry import UsageError
from bench.store import ResultStore

from test_report import make_grid, make_record

METHODS = ("magnitude", "random", "tg-oneshot:retrain=kd")
TRUE_ACC = {"magnitude": 0.80, "random": 0.90, "tg-oneshot-kd": 0.90}  # random ~ the reference


def drawn_store(root, seeds, skip=(), edit=None):
    """Accuracy = the method's true accuracy + N(0, 0.3 pt), at a fixed seed; `skip`: (label,
    sparsity, seed) cells left without a record; `edit(cfg, record)` changes a record."""
    grid = make_grid(methods=METHODS, seeds=seeds)
    rng = random.Random(0)
    store = ResultStore(root)
    for cfg in grid.cells():
        acc = TRUE_ACC[cfg.label] - 0.02 * cfg.sparsity + rng.gauss(0, 0.003)
        if (cfg.label, cfg.sparsity, cfg.seed) in skip:
            continue
        record = make_record(cfg, acc)
        if edit:
            edit(cfg, record)
        store.write(record)
    return grid, store


def table_rows(path) -> dict[str, list[str]]:
    split = [re.split(r"(?<!\\)\|", line) for line in path.read_text().splitlines()[2:]]
    return {cells[1].strip(): [c.strip() for c in cells[2:-1]] for cells in split}


@pytest.fixture(scope="module")
def three_seeds(tmp_path_factory):
    from bench.report.command import build_report

    tmp = tmp_path_factory.mktemp("three")
    # magnitude at 0.9 loses seed 2 (missing): paired over seeds 0 and 1 only
    grid, store = drawn_store(tmp / "s", (0, 1, 2), skip={("magnitude", 0.9, 2)})
    reported = tmp / "reported.csv"
    reported.write_text("source,dataset,method,sparsity_overall_pct,metric,value,note\n"
                        "t,synthetic,tg-oneshot,49.9,accuracy_pct,89.0,in\n"
                        "t,synthetic,tg-oneshot,89.82,accuracy_pct,95.0,out\n")
    return build_report(grid, grid.cells(), store, tmp / "out", reported)


def test_three_seeds_show_intervals_and_marks(three_seeds):
    rows = table_rows(three_seeds.out / "accuracy_synthetic.md")
    assert all(c.endswith(stats.WORSE) for c in (rows["magnitude"][0], rows["magnitude"][2]))
    assert "(n=2)" in rows["magnitude"][1] and not rows["magnitude"][1].endswith(stats.WORSE)
    assert all(c.endswith(stats.SAME) for c in rows["random"])
    assert not any(c.endswith((stats.SAME, stats.WORSE, stats.BETTER))
                   for c in rows["tg-oneshot-kd"])
    csv = pd.read_csv(three_seeds.out / "accuracy_synthetic.csv")
    kd = csv[(csv["method"] == "tg-oneshot-kd") & (csv["sparsity"] == 0.5)].iloc[0]
    assert f"; CI {kd['acc_ci95_low_pct']:.2f}–{kd['acc_ci95_high_pct']:.2f})" \
        in rows["tg-oneshot-kd"][0]
    assert kd["acc_ci95_low_pct"] < kd["acc_mean_pct"] < kd["acc_ci95_high_pct"]
    comp = pd.read_csv(three_seeds.out / "comparisons.csv")
    mag = comp[(comp["row"] == "magnitude") & (comp["sparsity"] == 0.9)].iloc[0]
    assert mag["pairs"] == 2 and mag["seeds"] == "0 1" and pd.isna(mag["p"])
    assert set(comp[comp["pairs"] == 3]["test"]) == {"paired t"}
    md = three_seeds.markdown
    assert "Holm" in md and "NO SIGNIFICANCE CLAIMED" not in md
    # three settings: average ranks, but no Friedman test or diagram (stats.MIN_RANK_SETTINGS)
    assert "No Friedman test and no diagram" in md and "at least 10 settings" in md
    assert "Friedman test (scipy" not in md and not (three_seeds.out / "cd_diagram.png").exists()
    html = (three_seeds.out / "index.html").read_text()
    assert "<script" not in html and "http" not in html
    vs = pd.read_csv(three_seeds.out / "reported_vs_ours.csv", dtype=str)
    inside = dict(zip(vs["paper sparsity %"], vs["paper in our 95% CI"]))
    lo, hi = kd["acc_ci95_low_pct"], kd["acc_ci95_high_pct"]
    assert lo < 89.0 < hi and inside["49.9"] == f"yes ({lo:.2f}–{hi:.2f})"
    assert inside["89.82"].startswith("no (")  # 95.0 is far above every 90 % cell
    tex = (three_seeds.out / "accuracy_synthetic.tex").read_text()
    assert r"(n=3; CI" in tex and r"$\downarrow$" in tex and "↓" not in tex


def test_curves_draw_the_interval(three_seeds):
    ax = three_seeds.figures["curves_synthetic"].axes[0]
    bands = [c for c in ax.collections if c.__class__.__name__ == "FillBetweenPolyCollection"
             or c.__class__.__name__ == "PolyCollection"]
    assert len(bands) == 3  # one band per row: every row has n = 3 at two neighbours at least
    cost = three_seeds.figures["cost_synthetic"].axes[0]
    segs = [s for c in cost.collections for s in c.get_segments()]
    assert len(segs) == 8  # 3 rows x 3 sparsities, less magnitude at 0.9 (n = 2)


def test_one_seed_gives_the_caveat_and_no_marks(tmp_path):
    from bench.report.command import build_report

    grid, store = drawn_store(tmp_path / "s", (0,))
    rep = build_report(grid, grid.cells(), store, tmp_path / "out")
    rows = table_rows(rep.out / "accuracy_synthetic.md")
    assert not any(c.endswith((stats.SAME, stats.WORSE, stats.BETTER))
                   for cells in rows.values() for c in cells)
    assert "CI" not in "".join(c for cells in rows.values() for c in cells)
    assert "NO SIGNIFICANCE CLAIMED: at most 1 seed pair(s)" in rep.markdown
    assert f"about {stats.seeds_needed()} seeds" in rep.markdown


def test_off_target_cell_is_marked_and_listed(tmp_path):
    from bench.report.data import load_report_data
    from bench.report.sections import off_target
    from bench.report.tables import pivot

    def miss(cfg, record):  # magnitude's seed 1 at 0.98 stops at 96.1 %
        if (cfg.label, cfg.sparsity, cfg.seed) == ("magnitude", 0.98, 1):
            record["sparsity"]["prunable"] = 0.961
            record["accuracy"]["test"] = 0.612

    grid, store = drawn_store(tmp_path, (0, 1), edit=miss)
    data = load_report_data(grid, grid.cells(), store)
    table = pivot(data.summary, "synthetic", "markdown")
    cell = table.loc["magnitude", "0.98"]
    assert cell.startswith("77.") and "(n=1)" in cell  # seed 0 alone is the accuracy at 98 %
    assert cell.endswith("[off target: 61.20 (reached 96.10 %)]")
    sec = off_target(data)
    listed = sec.blocks[1].frame
    assert listed["reached %"].tolist() == ["96.10"] and listed["target %"].tolist() == ["98"]
    # a group whose only seeds are off target has no number in the column
    data.merged.loc[(data.merged["row"] == "magnitude") & (data.merged["sparsity"] == 0.98),
                    ["sparsity_prunable", "test_acc"]] = [0.961, 0.612]
    from bench.report.tables import summarize

    again = pivot(summarize(data.merged), "synthetic", "markdown")
    assert again.loc["magnitude", "0.98"] == "61.20 ± 0.00 (n=2, reached 96.10 %)"


def test_mixed_precision_is_said_above_the_table_and_on_each_cell(tmp_path):
    from bench.report.data import load_report_data
    from bench.report.sections import accuracy

    def bf16(cfg, record):
        if cfg.label == "magnitude":
            record["precision"] = "bf16"
        elif cfg.label == "random" and cfg.seed == 0:
            record["precision"] = "fp32"  # explicit; the others have no field (= fp32)

    grid, store = drawn_store(tmp_path, (0, 1), edit=bf16)
    data = load_report_data(grid, grid.cells(), store)
    sec = accuracy(data, "synthetic")
    warning = sec.blocks[0].text
    assert warning.startswith("MIXED PRECISION: the ok cells of synthetic ran at bf16 and fp32")
    assert "magnitude: bf16" in warning and "tg-oneshot-kd: fp32" in warning
    table = sec.blocks[1].frame
    assert all(c.endswith("[bf16]") for c in table.loc["magnitude"])
    assert all(c.endswith("[fp32]") for c in table.loc["tg-oneshot-kd"])
    for fig in sec.blocks:
        if hasattr(fig, "figure"):
            import matplotlib.pyplot as plt

            plt.close(fig.figure)
    # one precision throughout: no warning, no tags
    grid, store = drawn_store(tmp_path / "same", (0,))
    data = load_report_data(grid, grid.cells(), store)
    assert "[fp32]" not in "".join(accuracy(data, "synthetic").blocks[0].frame.loc["random"])


def test_against_picks_the_reference_and_rejects_unknown_rows(tmp_path):
    from bench.report.data import load_report_data

    grid, store = drawn_store(tmp_path, (0, 1, 2))
    data = load_report_data(grid, grid.cells(), store, against="magnitude")
    c = data.comparisons
    assert set(c["reference"]) == {"magnitude"} and set(c["mark"]) == {stats.BETTER}
    with pytest.raises(UsageError, match=r"--against 'nosuch' is not a row of this grid; "
                                         r"valid: magnitude, random, tg-oneshot-kd"):
        load_report_data(grid, grid.cells(), store, against="nosuch")


def test_a_row_asked_for_at_one_setting_only_is_left_out_of_the_ranking(tmp_path):
    """A grid's extra point (the dense network at 0 %) must not leave the ranking with no
    complete setting."""
    from bench.report.data import load_report_data

    grid = make_grid(methods=METHODS, seeds=(0, 1, 2), extra_points=(("magnitude", 0.3),))
    store = ResultStore(tmp_path)
    rng = random.Random(3)
    for cfg in grid.cells():
        store.write(make_record(cfg, TRUE_ACC[cfg.label] + rng.gauss(0, 0.003)))
    data = load_report_data(grid, grid.cells(), store)
    assert set(data.ranking.methods) == {"magnitude", "random", "tg-oneshot-kd"}
    assert len(data.ranking.settings) == 3 and "at least 10 settings" in data.ranking.reason
    # the other way round: a row asked for at one setting only
    grid = make_grid(methods=METHODS[:2], seeds=(0, 1, 2),
                     extra_points=(("tg-oneshot:retrain=kd", 0.9),))
    store = ResultStore(tmp_path / "b")
    for cfg in grid.cells():
        store.write(make_record(cfg, TRUE_ACC[cfg.label] + rng.gauss(0, 0.003)))
    data = load_report_data(grid, grid.cells(), store)
    assert set(data.ranking.methods) == {"magnitude", "random"}
    assert len(data.ranking.settings) == 3
