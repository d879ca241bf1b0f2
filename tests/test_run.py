import pytest
import torch
import yaml

from bench.data import load_dataset
from bench.masks import keep_count
from bench.store import ResultStore
from conftest import TINY, run_cli


def tiny_grid(tmp_path, **over):
    grid = {"name": "tiny", "methods": ["magnitude", "random", "tg-oneshot:retrain=ft"],
            "datasets": ["synthetic"], "sparsities": [0.5, 0.9], "seeds": [0],
            "base": {k: v for k, v in TINY.items() if k != "dataset"}}
    grid.update(over)
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    return path


@pytest.mark.e2e
@pytest.mark.parametrize("args,needle", [
    (["--methods", "nosuch"], "unknown method 'nosuch'; valid: "),
    (["--sparsities", "1.5"], "sparsity=1.5 is invalid; must be a number in [0, 1)"),
    (["--sparsities", "abc"], "sparsity 'abc' is not a number"),
    (["--datasets", "mnist"], "unknown dataset 'mnist'; valid: "),
    (["--grid", "nosuch"], "unknown grid 'nosuch'; valid: "),
    (["--set", "dense_epochs=-1"], "dense_epochs=-1 is invalid"),
    (["--set", "temperature=0"], "temperature=0.0 is invalid"),
    (["--set", "alpha=2"], "alpha=2.0 is invalid"),
    (["--set", "batch_size=-3"], "batch_size=-3 is invalid"),
    (["--device", "tpu"], "--device 'tpu' is invalid"),
    (["--datasets", "cifar10", "--data-root", "/nonexistent/x"], "does not exist"),
    (["--bogus"], "unrecognized arguments: --bogus"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, needle):
    res = run_cli("bench.run", "--results", tmp_path / "r", *args)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "r" / "records").exists()  # nothing written


@pytest.mark.e2e
def test_dry_run_lists_cells_and_ids(tmp_path):
    res = run_cli("bench.run", "--dry-run", "--results", tmp_path)
    assert res.returncode == 0
    assert "grid quick: 12 cells" in res.stdout and "44136fa355b3" in res.stdout
    assert not (tmp_path / "records").exists()


@pytest.mark.e2e
def test_grid_runs_records_tables_checkpoints_then_skips(tmp_path):
    grid = tiny_grid(tmp_path)
    res = run_cli("bench.run", "--grid", grid, "--results", tmp_path / "r", "--no-progress")
    assert res.returncode == 0, res.stderr
    assert "6 ran, 0 already done, 0 failed" in res.stdout
    assert "| magnitude |" in res.stdout and "tg-oneshot-ft" in res.stdout
    store = ResultStore(tmp_path / "r")
    records, problems = store.load_all()
    assert len(records) == 6 and not problems
    for r in records:
        assert r["status"] == "ok"
        sp = r["sparsity"]
        assert sp["prunable_kept"] == keep_count(sp["prunable_total"], r["config"]["sparsity"])
        assert sp["overall"] < sp["prunable"]
        blob = torch.load(store.checkpoint_path(r["id"]), weights_only=False)
        for key, mask in blob["state_dict"].items():
            if key.endswith("weight_mask"):
                weight = blob["state_dict"][key[: -len("_mask")]]
                assert torch.all(weight[~mask] == 0)
        assert r["provenance"]["torch"] == torch.__version__
        assert r["cost"]["seconds_total"] >= r["cost"]["seconds_cell"] > 0
    assert (tmp_path / "r" / "tables" / "tiny.md").is_file()
    assert (tmp_path / "r" / "tables" / "tiny.csv").read_text().count("\n") == 7
    work = tmp_path / "r" / "work"  # each cell trained there, then removed its checkpoints
    assert work.is_dir() and not any(work.iterdir())
    again = run_cli("bench.run", "--grid", grid, "--results", tmp_path / "r", "--no-progress",
                    "--profile")
    assert again.returncode == 0 and "0 ran, 6 already done" in again.stdout
    # --profile reads the records: one table per cell, training phases with their image counts
    assert again.stdout.count("| phase | epochs | images |") == 6
    n_train = load_dataset("synthetic").train.labels.numel()
    per_epoch = (n_train // 32) * 32  # batch_size 32, ragged last batch dropped
    for r in records:
        assert sorted(r["phase_order"]) == sorted(r["phases"]) and r["phase_order"][-1] == "evaluate"
        for name, phase in r["phases"].items():
            if phase["epochs"]:
                assert phase["images"] == phase["epochs"] * per_epoch, name
    assert f"| finetune | 1 | {per_epoch:,} |" in again.stdout
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "r" / "records").iterdir()}
    forced = run_cli("bench.run", "--grid", grid, "--results", tmp_path / "r", "--no-progress",
                     "--methods", "random", "--sparsities", "0.5", "--force")
    assert forced.returncode == 0, forced.stderr
    assert "1 ran" in forced.stdout
    changed = [p for p in mtimes if p.stat().st_mtime_ns != mtimes[p]]
    assert len(changed) == 1


@pytest.mark.e2e
def test_filters_select_grid_variants(tmp_path):
    res = run_cli("bench.run", "--dry-run", "--methods", "tg-oneshot", "--sparsities", "0.7",
                  "--seeds", "1,2", "--results", tmp_path)
    assert "grid quick: 4 cells" in res.stdout
    assert res.stdout.count("tg-oneshot-ft") == 2 and res.stdout.count("tg-oneshot-kd") == 2


@pytest.mark.e2e
def test_the_default_quick_grid_end_to_end(tmp_path):
    """The README's main job: no arguments, real digits data, every quick-grid method. The
    default selection by a dry run with no arguments; its cells then at about a third of the
    quick budgets (the full grid was the suite's longest test by far; a full run's numbers are
    results/quick-3seed)."""
    import re

    default = run_cli("bench.run", "--dry-run")
    assert default.returncode == 0, default.stderr
    listed = re.findall(r"^  [0-9a-f]{12}  \w+ +\S+ +(\S+) ", default.stdout, re.M)
    assert "grid quick: 12 cells" in default.stdout and listed == ["digits"] * 12, default.stdout
    res = run_cli("bench.run", "--results", tmp_path, "--no-progress", "--set", "teacher_epochs=5",
                  "--set", "dense_epochs=5", "--set", "sparse_epochs=4")
    assert res.returncode == 0, res.stderr
    assert "12 ran, 0 already done, 0 failed" in res.stdout
    records, _ = ResultStore(tmp_path).load_all()
    assert len(records) == 12 and all(r["status"] == "ok" for r in records)
    acc = {(r["label"], r["config"].get("sparsity", 0.9)): r["accuracy"]["test"] for r in records}
    assert acc[("magnitude", 0.5)] > 0.9  # real data, learnt (96.9 % when measured)
    assert acc[("tg-oneshot-ft", 0.98)] > acc[("random", 0.98)] + 0.2  # 66.9 against 9.5


def test_methods_take_several_options_each():
    from bench.cli.arguments import split_methods

    assert split_methods("tg-oneshot:retrain=ft,score=grad,magnitude,random:match=tg-oneshot") == \
        ["tg-oneshot:retrain=ft,score=grad", "magnitude", "random:match=tg-oneshot"]
    assert split_methods("magnitude,dense") == ["magnitude", "dense"]


@pytest.mark.parametrize("args, message", [
    (["--set", "dataset=synthetic"], "--set dataset=... is a grid axis, not a field to set; use --datasets synthetic"),
    (["--set", "seed=3"], "--set seed=... is a grid axis, not a field to set; use --seeds 3"),
    (["--set", "options=x"], "use --methods NAME:key=value"),
])
def test_set_refuses_a_grid_axis_in_one_line(args, message, capsys):
    """--set dataset=... used to end in make_config's TypeError traceback."""
    from bench.run import main

    assert main([*args, "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_a_grid_file_refuses_a_grid_axis_in_its_base(tmp_path, capsys):
    from bench.run import main

    grid = tmp_path / "g.yaml"
    grid.write_text("methods: [magnitude]\ndatasets: [digits]\nsparsities: [0.5]\n"
                    "base: {seed: 3}\n")
    assert main(["--grid", str(grid), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'seed' is a grid axis" in err[0] and "'seeds'" in err[0]
