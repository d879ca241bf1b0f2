import os
import sys
import textwrap

import pytest
import yaml

from bench.store import ResultStore
from conftest import ROOT, TINY, run_cli

PLUGIN = textwrap.dedent('''
    import torch
    from bench.masks import magnitude_scores, prunable_weights
    from bench.method import register_method

    @register_method("layerwise-magnitude")
    def layerwise(ctx):
        """Magnitude pruning with the same sparsity in every layer."""
        model = ctx.dense_model()
        with ctx.clock("prune"):
            # normalise each layer so that one global threshold keeps the same share per layer
            ranks = {n: s.flatten().argsort().argsort().float().view_as(s) / s.numel()
                     for n, s in magnitude_scores(model).items()}
            ctx.prune(model, ranks)
        ctx.train(model, ctx.phase("finetune", ctx.config.sparse_epochs))
        return model
''')


def grid_file(tmp_path, methods, **extra):
    data = {"name": "plug", "methods": methods, "datasets": ["synthetic"], "sparsities": [0.8],
            "base": {k: v for k, v in TINY.items() if k != "dataset"}, **extra}
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.e2e
def test_a_plugin_file_registers_a_method_that_runs_end_to_end(tmp_path):
    plugin = tmp_path / "my_method.py"
    plugin.write_text(PLUGIN)
    grid = grid_file(tmp_path, ["layerwise-magnitude", "magnitude"])
    res = run_cli("bench.run", "--plugin", plugin, "--grid", grid, "--results", tmp_path / "r",
                  "--no-progress")
    assert res.returncode == 0, res.stderr
    assert "| layerwise-magnitude |" in res.stdout
    records, _ = ResultStore(tmp_path / "r").load_all()
    rec = {r["label"]: r for r in records}["layerwise-magnitude"]
    assert rec["status"] == "ok" and str(plugin) in rec["provenance"]["plugins"]
    layers = rec["sparsity"]["layers"]
    # the same share in every layer: the plugin's own logic really ran
    assert all(abs(kept / total - 0.2) < 0.02 for kept, total in layers.values() if total > 100)
    # ... and the report shows it next to the built-in, from the same plugin
    report = run_cli("bench.report", "--plugin", plugin, "--grid", grid, "--results",
                     tmp_path / "r", "--out", tmp_path / "report")
    assert report.returncode == 0, report.stderr
    text = (tmp_path / "report" / "report.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| layerwise-magnitude |")
            or line.startswith("| magnitude |")]
    assert len(rows) >= 2 and "missing" not in rows[0] + rows[1]


@pytest.mark.e2e
def test_the_documented_snip_example_runs(tmp_path):
    grid = grid_file(tmp_path, ["snip"])
    res = run_cli("bench.run", "--plugin", ROOT / "docs/examples/snip.py", "--grid", grid,
                  "--results", tmp_path / "r", "--no-progress")
    assert res.returncode == 0, res.stderr
    (rec,), _ = ResultStore(tmp_path / "r").load_all()
    assert rec["status"] == "ok" and {"score", "prune", "train"} <= set(rec["phases"])


@pytest.mark.e2e
def test_a_name_clash_with_a_builtin_is_a_clear_error(tmp_path):
    plugin = tmp_path / "clash.py"
    plugin.write_text(PLUGIN.replace('"layerwise-magnitude"', '"magnitude"'))
    res = run_cli("bench.run", "--plugin", plugin, "--dry-run", "--results", tmp_path)
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0
    assert "method 'magnitude' is already registered" in res.stderr


@pytest.mark.e2e
def test_plugin_errors_are_one_line(tmp_path):
    res = run_cli("bench.run", "--plugin", tmp_path / "missing.py", "--dry-run")
    assert res.returncode == 2 and "plugin file" in res.stderr and "does not exist" in res.stderr
    broken = tmp_path / "broken.py"
    broken.write_text("import nonexistent_module_xyz\n")
    res = run_cli("bench.run", "--plugin", broken, "--dry-run")
    assert res.returncode == 2 and "failed to import: ModuleNotFoundError" in res.stderr
    res = run_cli("bench.run", "--plugin", "no.such.module", "--dry-run")
    assert res.returncode == 2 and "neither a .py file nor an importable module" in res.stderr


def test_a_malformed_grid_file_names_the_bad_key(tmp_path, capsys):
    from bench.run import main  # in this process: a subprocess per case cost seconds of imports

    def run(*args):
        capsys.readouterr()
        code = main([str(a) for a in args])
        return code, capsys.readouterr().err

    cases = [({"sparsity": [0.5]}, "unknown key 'sparsity'"),
             ({"sparsities": "0.5"}, "key 'sparsities' must be a non-empty list"),
             ({"sparsities": [1.5]}, "sparsity=1.5 is invalid"),
             ({"base": {"epochs": 3}}, "unknown config field(s) 'epochs'"),
             ({"methods": ["nosuch"]}, "unknown method 'nosuch'")]
    for override, needle in cases:
        data = {"methods": ["magnitude"], "datasets": ["synthetic"], "sparsities": [0.5]}
        data.update(override)
        path = tmp_path / "g.yaml"
        path.write_text(yaml.safe_dump(data))
        code, err = run("--grid", path, "--dry-run")
        assert code == 2 and needle in err and "g.yaml" in err, (override, err)
    (tmp_path / "bad.yaml").write_text("methods: [a\n")
    code, err = run("--grid", tmp_path / "bad.yaml", "--dry-run")
    assert code == 2 and "not valid YAML" in err


@pytest.mark.e2e
def test_an_installed_package_adds_methods_through_entry_points(tmp_path):
    site = tmp_path / "site"
    (site / "acme_pruning").mkdir(parents=True)
    (site / "acme_pruning" / "__init__.py").write_text(PLUGIN.replace("layerwise-magnitude",
                                                                      "acme-layerwise"))
    dist = site / "acme_pruning-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-pruning\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[prunebench.methods]\nacme = acme_pruning\n")
    env = dict(os.environ, PYTHONPATH=str(site))
    import subprocess

    res = subprocess.run([sys.executable, "-m", "bench.run", "--methods", "acme-layerwise",
                          "--dry-run", "--results", str(tmp_path)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "acme-layerwise" in res.stdout
