"""bench/report/command.py, bench/report/plots.py, bench/report/tables.py and the paper grids, on a synthetic store.

The store is written by hand with ResultStore.write (no training): two seeds per cell, one failed
cell, one missing cell, one corrupt record file and one cell with an empty layer, so every number
the report prints can be checked against a hand computation.
"""
from __future__ import annotations

import math
import re

import pandas as pd
import pytest

from bench import catalog
from bench.plugins import load_builtins
from bench.plan.estimate import (RELATIVE_MACS_32, RESNET18_MACS_32, cell_phases, count_macs,
                                 estimate_gpu_hours)
from bench.plan.grid import Grid, MethodAwareGrid, load_grid
from bench.plan.grids import COLT_SPARSITY
from bench.registry import UsageError
from bench.store import ResultStore

from conftest import run_cli

load_builtins()

# (label, sparsity) -> accuracy per seed; "failed" / "missing" / "corrupt" are not results
ACC = {
    ("magnitude", 0.5): [0.90, 0.92],  # 91.00 ± 1.41
    ("magnitude", 0.9): [0.80, 0.84],  # 82.00 ± 2.83
    ("magnitude", 0.98): ["failed", "missing"],
    ("tg-oneshot-kd", 0.5): [0.93, 0.95],  # 94.00 ± 1.41, best of its column
    ("tg-oneshot-kd", 0.9): [0.85, "corrupt"],  # 85.00 (n=1), best of its column
    ("tg-oneshot-kd", 0.98): [0.70, 0.72],  # 71.00 ± 1.41, seed 1 with an empty layer
}
ERROR = "RuntimeError: CUDA out of memory | tried 2 GiB\nTraceback (most recent call last): ..."


def make_grid(**over) -> Grid:
    fields = dict(name="synth", methods=("magnitude", "tg-oneshot:retrain=kd"),
                  datasets=("synthetic",), sparsities=(0.5, 0.9, 0.98), seeds=(0, 1),
                  base={"model": "smallcnn", "teacher": "smallcnn"})
    fields.update(over)
    return Grid(**fields)


def make_record(cfg, outcome, empty_layers=()):
    record = {"id": cfg.id, "label": cfg.label, "config": cfg.to_dict(),
              "temperature": cfg.resolved_temperature()}
    shared = 60.0 if cfg.method == "tg-oneshot" else 30.0
    record["phases"] = {
        "teacher" if cfg.method == "tg-oneshot" else "dense":
            {"epochs": 1, "seconds": shared, "shared": True, "cached": True},
        "round1-a": {"epochs": 1, "seconds": 10.0, "shared": False},
        "round1-b": {"epochs": 1, "seconds": 10.0, "shared": False},
        "evaluate": {"epochs": 0, "seconds": 10.0, "shared": False}}
    record["cost"] = {"seconds_cell": 30.0, "seconds_shared": shared,
                      "seconds_total": 30.0 + shared}
    if outcome == "failed":
        record.update(status="failed", error={"type": "RuntimeError", "message": ERROR})
    else:
        first = "teacher" if cfg.method == "tg-oneshot" else "dense"
        record.update(status="ok", accuracy={"test": float(outcome), "val_history": {
                          first: [0.3, 0.5, 0.6], "round1-a": [0.4 + cfg.seed / 10, 0.7]}},
                      sparsity={"prunable": cfg.sparsity, "overall": cfg.sparsity * 0.998,
                                "empty_layers": list(empty_layers)},
                      compute={"compression_ratio": 1.0 / (1.0 - cfg.sparsity) + cfg.seed,
                               "macs_dense": 4e6, "macs_sparse": 4e6 * (1.0 - cfg.sparsity)})
    return record


def fill_store(root, grid):
    store = ResultStore(root)
    for cfg in grid.cells():
        outcome = ACC[(cfg.label, cfg.sparsity)][cfg.seed]
        if outcome == "missing":
            continue
        if outcome == "corrupt":
            store.write(make_record(cfg, 0.5))
            path = store.record_path(cfg.id)
            path.write_text(path.read_text()[:40])  # truncated mid-write
            continue
        empty = ["layers.3"] if (cfg.label, cfg.sparsity, cfg.seed) == ("tg-oneshot-kd", 0.98, 1) \
            else ()
        store.write(make_record(cfg, outcome, empty))
    return store


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    from bench.report.command import build_report

    tmp_path = tmp_path_factory.mktemp("report")
    grid = make_grid()
    store = fill_store(tmp_path / "store", grid)
    reported = tmp_path / "reported.csv"
    reported.write_text(
        "source,dataset,method,sparsity_overall_pct,metric,value,note\n"
        "test,synthetic,tg-oneshot,49.95,accuracy_pct,95.5,ResNet-18; low\n"
        "test,synthetic,tg-oneshot,80.0,accuracy_pct,88.0,no cell near\n"
        "test,cifar10,tg-oneshot,50.46,accuracy_pct,96.08,other dataset\n")
    return build_report(grid, grid.cells(), store, tmp_path / "out", reported)


def test_accuracy_table_values_best_and_not_ok_cells(report):
    text = (report.out / "accuracy_synthetic.md").read_text()
    split = [re.split(r"(?<!\\)\|", line) for line in text.splitlines()[2:]]  # not at "\|"
    rows = {cells[1].strip(): [c.strip() for c in cells[2:-1]] for cells in split}
    assert rows["magnitude"] == ["91.00 ± 1.41 (n=2)", "82.00 ± 2.83 (n=2)",
                                 "1 failed: RuntimeError: CUDA out of memory \\| tried 2 GiB; "
                                 "1 missing"]
    assert rows["tg-oneshot-kd"] == ["**94.00 ± 1.41** (n=2)", "**85.00** (n=1) [1 corrupt]",
                                     "**71.00 ± 1.41** (n=2) [empty layer in 1/2 seeds]"]
    assert "Traceback" not in text and " 0.00" not in text
    csv = pd.read_csv(report.out / "accuracy_synthetic.csv")
    mag = csv[(csv["method"] == "magnitude") & (csv["sparsity"] == 0.9)].iloc[0]
    assert mag["acc_mean_pct"] == pytest.approx(82.0)
    assert mag["acc_std_pct"] == pytest.approx(math.sqrt(8.0))
    failed = csv[(csv["method"] == "magnitude") & (csv["sparsity"] == 0.98)].iloc[0]
    assert failed["n"] == 0 and math.isnan(failed["acc_mean_pct"])
    assert failed["failed"] == 1 and failed["missing"] == 1
    tex = (report.out / "accuracy_synthetic.tex").read_text()
    assert r"\textbf{94.00 $\pm$ 1.41} (n=2)" in tex and r"\begin{tabular}{lccc}" in tex


def test_run_tables_keep_their_compact_form(tmp_path):
    from bench.report.command import load_report_data
    from bench.report.tables import accuracy_table

    grid = make_grid()
    data = load_report_data(grid, grid.cells(), fill_store(tmp_path, grid))
    table = accuracy_table(data.merged, "synthetic")
    assert table.loc["magnitude", "0.98"] == "[1 failed, 1 missing]"
    assert table.loc["tg-oneshot-kd", "0.9"] == "85.00 (n=1) [1 corrupt]"


def test_plots_have_one_line_per_method(report):
    curves = report.figures["curves_synthetic"]
    ax = curves.axes[0]
    assert [line.get_label() for line in ax.get_lines()] == ["magnitude", "tg-oneshot-kd"]
    magnitude = ax.get_lines()[0].get_ydata()
    assert list(magnitude[:2]) == pytest.approx([91.0, 82.0]) and math.isnan(magnitude[2])
    radar = report.figures["radar_synthetic"]
    assert len(radar.axes[0].get_lines()) == 2
    assert [t.get_text() for t in radar.axes[0].get_xticklabels()] == ["50%", "90%", "98%"]


def test_accuracy_against_compression_and_macs(report):
    fig = report.figures["cost_synthetic"]
    compression, macs = fig.axes[:2]
    assert [line.get_label() for line in compression.get_lines()] == ["magnitude",
                                                                      "tg-oneshot-kd"]
    magnitude = compression.get_lines()[0]
    # mean over the two ok seeds (1/(1-s) + seed); 98% has no ok seed, so no point
    assert list(magnitude.get_xdata()) == pytest.approx([2.5, 10.5])
    assert list(magnitude.get_ydata()) == pytest.approx([91.0, 82.0])
    assert list(macs.get_lines()[0].get_xdata()) == pytest.approx([2.0, 0.4])  # millions
    assert compression.get_xscale() == "log" and macs.get_xscale() == "log"
    csv = pd.read_csv(report.out / "accuracy_synthetic.csv")
    kd = csv[(csv["method"] == "tg-oneshot-kd") & (csv["sparsity"] == 0.9)].iloc[0]
    assert kd["compression_ratio"] == pytest.approx(10.0)  # the corrupt seed is not counted
    assert kd["macs_sparse"] == pytest.approx(4e5)


def test_no_cost_plot_for_records_without_cost_accounting():
    from bench.report.plots import cost_curves

    summary = pd.DataFrame({"dataset": ["d"], "row": ["m"], "sparsity": [0.5], "n": [1],
                            "mean": [90.0], "compression_ratio": [math.nan],
                            "macs_dense": [math.nan], "macs_sparse": [math.nan]})
    assert cost_curves(summary, "d") is None


def test_files_and_report_pages(report):
    names = {p.name for p in report.out.iterdir()}
    assert {"report.md", "index.html", "accuracy_synthetic.md", "accuracy_synthetic.csv",
            "accuracy_synthetic.tex", "curves_synthetic.png", "radar_synthetic.png",
            "cost_synthetic.png", "wallclock.csv", "phases.csv", "reported_vs_ours.csv"} <= names
    for png in ("curves_synthetic.png", "radar_synthetic.png", "cost_synthetic.png"):
        assert (report.out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (report.out / "report.md").read_text()
    html = (report.out / "index.html").read_text()
    for page in (md, html):
        assert "curves_synthetic.png" in page and "radar_synthetic.png" in page
        assert "cost_synthetic.png" in page
        assert "failed: RuntimeError: CUDA out of memory" in page
        assert "missing" in page
    corrupt = [c for c in make_grid().cells()
               if (c.label, c.sparsity, c.seed) == ("tg-oneshot-kd", 0.9, 1)][0]
    assert f"{corrupt.id}.json: not valid JSON" in md
    assert "<b>94.00 ± 1.41</b> (n=2)" in html and "<script" not in html


def test_wallclock_and_reported_comparison(report):
    md = report.markdown
    # 2 ok seeds x 3 sparsities of tg-oneshot-kd minus the corrupt one: 5 cells, 90 s each
    assert "| tg-oneshot-kd | 5 | 1.50 | 1.00 | 0.50 | teacher* 67%, rounds 22%, evaluate 11% |" \
        in md
    assert "| magnitude | 4 | 1.00 | 0.50 | 0.50 | dense* 50%, rounds 33%, evaluate 17% |" in md
    vs = pd.read_csv(report.out / "reported_vs_ours.csv", dtype=str)
    assert set(vs["dataset"]) == {"synthetic"}  # other datasets are not in the grid
    low = vs[vs["paper sparsity %"] == "49.95"].iloc[0]
    assert low["our row"] == "tg-oneshot-kd" and low["our sparsity"] == "0.5"
    assert low["our overall %"] == "49.90" and low["ours − paper"] == "-1.50"
    far = vs[vs["paper sparsity %"] == "80"].iloc[0]
    assert far["ours"] == "no cell within 1 pp" and far["ours − paper"] == "—"
    # the printed row names its network, which is not ours; the other names none
    assert low["setup differences"] == "network: ResNet-18 (ours: smallcnn)"
    assert pd.isna(far["setup differences"])
    assert "this grid has no COLT cells" in md


def test_temperature_table_rows_are_temperatures(tmp_path):
    from bench.report.command import build_report

    grid = make_grid(methods=("tg-oneshot:retrain=kd",), sparsities=(0.5, 0.9), seeds=(0,),
                     temperatures=(2.0, 4.0))
    store = ResultStore(tmp_path / "s")
    for cfg in grid.cells():
        store.write(make_record(cfg, 0.5 + cfg.temperature / 10 + cfg.sparsity / 100))
    rep = build_report(grid, grid.cells(), store, tmp_path / "out")
    text = (rep.out / "temperature_synthetic_tg-oneshot-kd.md").read_text()
    assert text.splitlines()[0] == "| T | 0.5 | 0.9 |"
    assert "| T=2 | 70.50 (n=1) | 70.90 (n=1) |" in text
    assert "| T=4 | **90.50** (n=1) | **90.90** (n=1) |" in text
    # the accuracy table keeps temperatures apart instead of averaging over them
    assert "tg-oneshot-kd (T=2)" in (rep.out / "accuracy_synthetic.md").read_text()


def test_colt_ratio_and_reported_minutes(tmp_path):
    from bench.report.command import build_report

    grid = make_grid(methods=("tg-oneshot:retrain=kd", "colt"), sparsities=(0.9, COLT_SPARSITY),
                     seeds=(0,))
    store = ResultStore(tmp_path / "s")
    for cfg in grid.cells():
        record = make_record(cfg, 0.8)
        if cfg.method == "colt":
            record["phases"] = {"round1-a": {"epochs": 1, "seconds": 600.0}}
            record["cost"] = {"seconds_cell": 600.0, "seconds_shared": 0.0, "seconds_total": 600.0}
        else:  # teacher 30 s and student 18 s, shared; the cell's own phases 12 s
            record["phases"] = {
                "teacher": {"epochs": 1, "seconds": 30.0, "shared": True, "cached": True},
                "student": {"epochs": 1, "seconds": 18.0, "shared": True, "cached": True},
                "retrain": {"epochs": 1, "seconds": 12.0}}
            record["cost"] = {"seconds_cell": 12.0, "seconds_shared": 48.0, "seconds_total": 60.0}
        store.write(record)
    reported = tmp_path / "reported.csv"
    reported.write_text("source,dataset,method,sparsity_overall_pct,metric,value,note\n"
                        "t,synthetic,tg-oneshot,97.7,minutes,1.5,\n"
                        "t,synthetic,colt,97.7,minutes,12,\n")
    md = build_report(grid, grid.cells(), store, tmp_path / "out", reported).markdown
    assert "One-shot vs COLT: at sparsity 0.977; the paper prints 1.5 vs 12 min, " \
           "colt / one-shot = 8.0×." in md
    # colt 10 min; tg-oneshot 1 min in total, 0.5 without its teacher, 0.2 of its own
    assert "| tg-oneshot-kd | 0.977 | 10.00 | 1.00 | 0.50 | 0.20 | 10.0× | 20.0× | 50.0× |" in md
    vs = pd.read_csv(tmp_path / "out" / "reported_vs_ours.csv", dtype=str)
    assert vs[vs["paper method"] == "tg-oneshot"]["ours − paper"].tolist() == ["-0.50"]
    assert vs[vs["paper method"] == "colt"]["ours"].tolist() == ["10.00 (n=1)"]
    assert vs["setup differences"].str.contains("mixes machine, budget and method").all()


@pytest.mark.e2e
def test_cli_report_and_bad_input(tmp_path, capsys):
    from bench.report.command import main

    grid = make_grid()
    fill_store(tmp_path / "store", grid)
    path = tmp_path / "grid.yaml"
    path.write_text("name: synth\nmethods: [magnitude, 'tg-oneshot:retrain=kd']\n"
                    "datasets: [synthetic]\nsparsities: [0.5, 0.9, 0.98]\nseeds: [0, 1]\n"
                    "base: {model: smallcnn, teacher: smallcnn}\n")
    assert main(["--grid", str(path), "--results", str(tmp_path / "store")]) == 0
    assert (tmp_path / "store" / "report" / "synth" / "index.html").is_file()
    assert main(["--grid", str(path), "--results", str(tmp_path / "nosuch")]) == 2
    assert main(["--grid", "nosuch", "--results", str(tmp_path / "store")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("error: results directory") and "does not exist" in err[0]
    assert err[1].startswith("error: unknown grid 'nosuch'; valid: ")
    res = run_cli("bench.report", "--results", tmp_path / "nosuch")
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1


@pytest.mark.e2e
def test_a_report_names_no_absolute_path_and_its_command_remakes_it(tmp_path):
    import shlex

    grid = make_grid()
    fill_store(tmp_path / "store", grid)
    (tmp_path / "grid.yaml").write_text(
        "name: synth\nmethods: [magnitude, 'tg-oneshot:retrain=kd']\ndatasets: [synthetic]\n"
        "sparsities: [0.5, 0.9, 0.98]\nseeds: [0, 1]\nbase: {model: smallcnn, teacher: smallcnn}\n")
    out = tmp_path / "shared" / "report"
    res = run_cli("bench.report", "--grid", tmp_path / "grid.yaml", "--results",
                  tmp_path / "store", "--out", out, "--seeds", "0,1", "--against", "magnitude")
    assert res.returncode == 0, res.stderr[-2000:]
    # the hint for the missing cell keeps the selection and drops the report's own options
    assert ("run `python -m bench.run --grid ../../grid.yaml --results ../../store --seeds 0,1` "
            in (out / "report.md").read_text())
    for f in out.iterdir():
        if f.suffix in (".md", ".html", ".csv", ".tex"):
            assert str(tmp_path) not in f.read_text(), f.name
    text = (out / "report.md").read_text()
    assert "Results store: ../../store (relative to this report)" in text
    command = text.split("Made with `", 1)[1].split("`", 1)[0]
    assert command.startswith("python -m bench.report ") and "--out ." in command
    first = text
    (out / "report.md").unlink()
    res = run_cli(*shlex.split(command)[2:], cwd=out)  # as a reader runs it, from the folder
    assert res.returncode == 0, res.stderr[-2000:]
    assert (out / "report.md").read_text() == first


def test_each_cell_row_says_what_hardware_ran_it(tmp_path):
    """A study spread over hosts (seeds on an AVX512 machine, another seed on an AVX2 one)
    shows in the cell rows (records.csv) which cell ran where; older records read empty."""
    from bench.report.data import load_report_data

    grid = make_grid()
    store = fill_store(tmp_path / "store", grid)
    hosts = {0: {"device_name": "Intel Xeon", "cpu_capability": "AVX512"},
             1: {"device_name": "AMD EPYC", "cpu_capability": "AVX2"}}
    ok = [r for r in store.load_all()[0] if r["status"] == "ok"]
    old = ok[0]["id"]  # one record written before provenance named the CPU
    for record in ok[1:]:
        store.write({**record, "provenance": {"device": "cpu",
                                              **hosts[record["config"]["seed"]]}})
    merged = load_report_data(grid, grid.cells(), store).merged.set_index("id")
    for record in ok[1:]:
        seed = record["config"]["seed"]
        assert merged.loc[record["id"], "cpu_capability"] == hosts[seed]["cpu_capability"]
        assert merged.loc[record["id"], "device_name"] == hosts[seed]["device_name"]
    assert len(ok) > 2 and pd.isna(merged.loc[old, "cpu_capability"])


def test_training_curves_shared_phases_once_and_the_rest_per_sparsity(report, tmp_path):
    from bench.report import plots
    from bench.report.data import load_report_data

    assert (report.out / "training_synthetic.png").is_file()
    grid = make_grid()
    data = load_report_data(grid, grid.cells(), fill_store(tmp_path / "store", grid))
    assert set(data.curves["phase"]) == {"dense", "teacher", "round1-a"}
    shared = set(data.phases.loc[data.phases["shared"], "phase"])
    assert shared == {"dense", "teacher"}
    fig = plots.training_curves(data.curves, "synthetic", shared=shared, window=1,
                                judged=lambda phase: phase != "teacher")
    panels = {ax.get_title(): ax for ax in fig.axes if ax.get_visible()}
    assert set(panels) == {"dense (shared by every sparsity)", "teacher (shared by every sparsity)",
                           "round1-a (sparsity 50 %)", "round1-a (sparsity 90 %)",
                           "round1-a (sparsity 98 %)"}
    # tg-oneshot-kd at 98 %: both seeds ok; epoch 1 is 40 % (seed 0) and 50 % (seed 1)
    (line,) = [ln for ln in panels["round1-a (sparsity 98 %)"].lines
               if ln.get_label() == "tg-oneshot-kd"]
    assert list(line.get_ydata()) == pytest.approx([45.0, 70.0])
    # the gate's window shaded where the gate judges the phase, and only there
    assert len(panels["round1-a (sparsity 90 %)"].patches) == 2
    assert len(panels["dense (shared by every sparsity)"].patches) == 2
    assert len(panels["teacher (shared by every sparsity)"].patches) == 0


def test_training_curves_merge_rows_that_share_a_curve():
    import pandas as pd

    from bench.report import plots

    def curve(row, sparsity, values, phase="dense"):
        return [{"row": row, "dataset": "d", "sparsity": sparsity, "seed": 0, "phase": phase,
                 "epoch": e + 1, "val_acc": v} for e, v in enumerate(values)]

    curves = pd.DataFrame(curve("magnitude", 0.9, [30, 50, 60]) + curve("magnitude", 0.98, [30, 50, 60])
                          + curve("dense", 0.0, [30, 50, 60]) + curve("random", 0.9, [31, 50, 60])
                          + curve("magnitude", 0.9, [10, 20, 30], "finetune"))
    fig = plots.training_curves(curves, "d", shared={"dense"})
    panels = {ax.get_title(): ax for ax in fig.axes if ax.get_visible()}
    assert set(panels) == {"dense (shared by every sparsity)", "finetune (sparsity 90 %)"}
    labels = sorted(ln.get_label() for ln in panels["dense (shared by every sparsity)"].lines)
    assert labels == ["magnitude = dense", "random"]  # the dense row at 0 % is in the panel
    assert not panels["finetune (sparsity 90 %)"].patches  # no window given, nothing shaded


def test_training_curves_legend_of_many_merged_rows_stays_inside_its_panel():
    import pandas as pd

    from bench.report import plots

    rows = ["magnitude", "magnitude-kd", "random[match=tg-oneshot]", "dense"]
    curves = pd.DataFrame([{"row": r, "dataset": "d", "sparsity": 0.0 if r == "dense" else 0.9,
                            "seed": 0, "phase": "dense", "epoch": e + 1, "val_acc": v}
                           for r in rows for e, v in enumerate([30, 50, 60])])
    fig = plots.training_curves(curves, "d", shared={"dense"})
    ax = next(a for a in fig.axes if a.get_visible() and a.get_legend())
    assert [ln.get_label() for ln in ax.lines] == [" = ".join(rows)]  # one merged line
    renderer = fig.canvas.get_renderer()
    legend, panel = ax.get_legend().get_window_extent(renderer), ax.get_window_extent(renderer)
    assert panel.x0 <= legend.x0 and legend.x1 <= panel.x1


def test_training_curves_rounds_do_not_push_other_phases_out():
    import pandas as pd

    from bench.report import plots

    rows = [{"row": "colt", "dataset": "d", "sparsity": 0.9, "seed": 0, "phase": f"round{r}-{h}",
             "epoch": e, "val_acc": 50.0 + e} for r in range(1, 13) for h in "ab" for e in (1, 2)]
    rows += [{"row": "magnitude", "dataset": "d", "sparsity": 0.9, "seed": 0, "phase": phase,
              "epoch": e, "val_acc": 60.0 + e} for phase in ("dense", "finetune") for e in (1, 2)]
    # the phases frame folds round phases by phase_group: COLT's shared rounds are "rounds"
    fig = plots.training_curves(pd.DataFrame(rows), "d", shared={"rounds", "dense"})
    titles = {ax.get_title() for ax in fig.axes if ax.get_visible()}
    assert titles == {"dense (shared by every sparsity)", "finetune (sparsity 90 %)"} | {
        f"round{r}-{h} (shared by every sparsity)" for r in (1, 2) for h in "ab"}


def test_training_curve_levels_keep_lowest_middle_highest():
    from bench.report.plots import _curve_levels

    assert _curve_levels([0.9, 0.5, 0.9]) == [0.5, 0.9]
    assert _curve_levels([0.5, 0.75, 0.9, 0.94, 0.98]) == [0.5, 0.9, 0.98]


# --- the grids ------------------------------------------------------------------------------------


def test_paper_grid_cells():
    grid = load_grid("paper")
    cells = grid.cells()
    # the paper's twelve method rows, the claims' two controls and the dense CE row, written out
    # (not derived from the grid's own list)
    assert sorted({c.label for c in cells}) == sorted([
        "tg-oneshot-ft", "tg-oneshot-kd", "magnitude", "random",
        "cskd-simple", "cskd-epsd", "pskd-simple", "pskd-epsd", "dlb-simple", "dlb-epsd",
        "colt", "egp", "magnitude-kd", "random[match=tg-oneshot]", "dense"])
    assert {c.sparsity for c in cells if c.label == "dense"} == {0.0}
    assert {c.dataset for c in cells} == {"cifar10", "cifar100", "tinyimagenet"}
    assert {c.seed for c in cells} == {0, 1, 2}
    assert all(c.model == "resnet18" and c.teacher == "resnet50" for c in cells)
    colt_point = {(c.label, c.dataset, c.seed) for c in cells if c.sparsity == COLT_SPARSITY}
    assert ("tg-oneshot-kd", "tinyimagenet", 2) in colt_point
    if "colt" in catalog.METHODS:
        assert ("colt", "cifar10", 0) in colt_point
        assert {c.round_epochs for c in cells if c.method == "colt"} == {50}
    assert len(cells) == len({c.id for c in cells})
    assert len(load_grid("cifar-small").cells()) == 12
    temps = load_grid("paper-temperature").cells()
    assert {c.temperature for c in temps} == {2.0, 3.0, 4.0, 5.0} and len(temps) == 4 * 3 * 3 * 3


def test_method_aware_grid_skips_unregistered_and_takes_per_method_budgets():
    grid = MethodAwareGrid(name="g", methods=("magnitude", "not-yet-written"),
                           datasets=("synthetic",), sparsities=(0.5,), seeds=(0, 1),
                           per_method={"magnitude": {"sparse_epochs": 7}},
                           extra_points=(("not-yet-written", 0.977), ("magnitude", 0.977)))
    cells = grid.cells()
    assert grid.unregistered_methods() == ["not-yet-written"]
    assert [(c.sparsity, c.seed) for c in cells] == [(0.5, 0), (0.977, 0), (0.5, 1), (0.977, 1)]
    assert {c.sparse_epochs for c in cells} == {7}
    # the base (where --set overrides go) wins over per-method budgets
    import dataclasses

    assert {c.sparse_epochs for c in dataclasses.replace(grid, base={"sparse_epochs": 3})
            .cells()} == {3}


def test_gpu_hours_cost_model():
    from bench.config import RunConfig

    cfg = RunConfig(method="magnitude", dataset="cifar10", model="resnet18", dense_epochs=10,
                    sparse_epochs=5)
    # 45,000 images x 15 epochs x ResNet-18 cost at 3,800 images/s
    assert estimate_gpu_hours([cfg]) == pytest.approx(45000 * 15 / 3800 / 3600)
    other = cfg.replace(sparsity=0.5)  # shares the dense network: only 5 more epochs
    assert estimate_gpu_hours([cfg, other]) == pytest.approx(45000 * 20 / 3800 / 3600)
    tg = RunConfig(method="tg-oneshot", dataset="cifar10", model="resnet18", teacher="resnet18",
                   teacher_epochs=1, dense_epochs=1, sparse_epochs=1, options=(("retrain", "ft"),))
    assert [p.name for p in cell_phases(tg)] == ["teacher", "student", "retrain"]
    assert estimate_gpu_hours([tg]) == pytest.approx(45000 * (1 + 4 / 3 + 1) / 3800 / 3600)
    assert RELATIVE_MACS_32["resnet20"] * RESNET18_MACS_32 == pytest.approx(
        count_macs("resnet20"), rel=2e-3)


def test_print_dry_run_shows_gpu_hours(tmp_path, capsys):
    from bench.run import print_dry_run

    grid = load_grid("quick")
    print_dry_run(grid, grid.cells(), ResultStore(tmp_path))
    out = capsys.readouterr().out
    assert out.startswith("grid quick: 12 cells") and "GPU-hours" in out.splitlines()[0]
    assert out.splitlines()[1] == f"  {grid.description}"  # what the grid is for, then its cells
    rows = out.splitlines()[2:]
    assert len(rows) == 12
    # only the teacher-guided rows carry a temperature (digits default T=3)
    assert {"tg-oneshot" in r for r in rows if "T=3" in r} == {True}
    assert sum("T=" in r for r in rows) == sum("tg-oneshot" in r for r in rows) == 6


def test_unknown_grid_is_a_usage_error():
    with pytest.raises(UsageError, match=r"unknown grid 'no-such-grid'; valid: .*quick"):
        load_grid("no-such-grid")


def test_the_remake_command_rewrites_a_loaded_checkpoint_relative_to_the_report(tmp_path):
    from bench.report.command import portable_command

    ckpt = tmp_path / "runs" / "checkpoints" / "abc.pt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"w")
    out = tmp_path / "results" / "study"
    command = portable_command(["--results", str(tmp_path / "runs"), "--set",
                                f"teacher_checkpoint={ckpt}", "--set", "dense_epochs=6"], out)
    assert "--set teacher_checkpoint=../../runs/checkpoints/abc.pt" in command
    assert "--set dense_epochs=6" in command and str(tmp_path) not in command


def test_the_paper_numbers_are_found_where_the_repository_keeps_them():
    """The default --reported is results/paper/reported.csv of the repository (found from the
    module's own path, which moved into bench/report/ in issue 31)."""
    from bench.report.data import REPORTED_CSV, load_reported

    assert REPORTED_CSV.is_file(), REPORTED_CSV
    frame, note = load_reported(None, REPORTED_CSV.parent)
    assert frame is not None and len(frame)
    assert note == "Paper numbers from results/paper/reported.csv"


def test_report_only_flags_are_the_report_options_bench_run_lacks():
    """The missing-cells hint drops exactly these; an option added to the report alone must
    join the list, or the hint hands bench.run a flag it rejects."""
    from bench import run
    from bench.report import command
    from bench.report.sections import REPORT_ONLY_FLAGS

    def longs(parser):
        return {o for a in parser._actions for o in a.option_strings if o.startswith("--")}

    assert set(REPORT_ONLY_FLAGS) == longs(command.build_parser()) - longs(run.build_parser())
