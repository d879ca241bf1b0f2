"""Names from before the packages (issue 31) still work: every old module name imports as the
new module itself, and a plugin written against the old names loads and runs."""
import subprocess
import sys
import textwrap

import pytest

import bench
from bench.store import ResultStore
from conftest import ROOT, run_cli


def test_every_old_name_imports_as_the_same_module_object():
    """In a fresh process, old names first (nothing imported yet), then the new ones."""
    code = textwrap.dedent("""
        import importlib, sys
        import bench
        old = {name: importlib.import_module(name) for name in bench.MOVED}
        for name, module in old.items():
            new = bench.MOVED[name]
            assert module is importlib.import_module(new) is sys.modules[name], name
            assert module.__name__ == module.__spec__.name == new, (name, module.__spec__)
            parent, _, child = name.rpartition(".")
            assert getattr(sys.modules[parent], child) is module, name
        from bench import losses
        import bench.train.losses
        assert losses is bench.train.losses
        print(len(old))
    """)
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    assert int(res.stdout) == len(bench.MOVED) > 30


def test_every_new_home_exists_and_no_old_name_is_a_file():
    for old, new in bench.MOVED.items():
        assert not (ROOT / (old.replace(".", "/") + ".py")).exists(), old
        assert (ROOT / (new.replace(".", "/") + ".py")).is_file(), new


def test_modules_that_became_packages_keep_their_names():
    from bench.cli import OneLineParser, run_command  # noqa: F401
    from bench.data import DataBundle, DatasetSpec, Split, load_dataset, register_dataset  # noqa: F401
    from bench.method import MethodContext, Option, register_method  # noqa: F401
    from bench.store import (CorruptRecord, DamagedFile, ResultStore, StorageFull,  # noqa: F401
                             atomic_torch_save, atomic_write_bytes, flatten_record,
                             safe_torch_load, seal, sha256_file, validate_record)


# A plugin written as docs/adding-a-method.md's examples were before the packages: its SNIP method
# (docs/examples/snip.py with each module imported by its old name), a hook, a cost, and the
# section "Models, datasets, grids", every name imported from where it was then.
def old_plugin() -> str:
    snip = (ROOT / "docs" / "examples" / "snip.py").read_text()
    for old, new in bench.MOVED.items():
        snip = snip.replace(f"from {new} import", f"from {old} import")
    assert "from bench.losses import cross_entropy" in snip  # the example's own moved import
    snip = snip.replace('@register_method("snip",', '@register_method("snip-old-api", cost=snip_cost,')
    snip = snip.replace("ctx.train(model, ctx.phase(\"train\", ctx.config.sparse_epochs))",
                        "ctx.train(model, ctx.phase(\"train\", ctx.config.sparse_epochs), "
                        "hooks=[CountSteps()])\n    ctx.extra[\"steps\"] = CountSteps.steps")
    assert "snip-old-api" in snip and "CountSteps()" in snip
    return OLD_EXTRAS + snip + OLD_REGISTRATIONS


OLD_EXTRAS = '''
from torch import nn

from bench.catalog import MODELS
from bench.data import DatasetSpec, Split, register_dataset
from bench.estimate import PhaseCost, dense_phase, relative_cost, train_images
from bench.grids import Grid, register_grid
from bench.trainer import Hook


class CountSteps(Hook):
    steps = 0

    def after_step(self, state):
        CountSteps.steps += 1


def snip_cost(cfg):
    work = train_images(cfg) * cfg.sparse_epochs * relative_cost(cfg.model, cfg.dataset)
    return [dense_phase(cfg), PhaseCost(None, "train", work)]
'''

OLD_REGISTRATIONS = '''

@MODELS.register("old-api-net")
def build(num_classes, in_channels, image_size):
    return nn.Sequential(nn.Conv2d(in_channels, 8, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes))


def load(root, download):
    g = torch.Generator().manual_seed(0)

    def split(n):
        return Split(torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=g),
                     torch.arange(n) % 4)
    return split(96), split(32)


register_dataset(DatasetSpec("old-api-data", num_classes=4, channels=3, image_size=8, load=load))
register_grid(Grid(name="old-api-grid", methods=("snip-old-api",), datasets=("old-api-data",),
                   sparsities=(0.5,), base={"model": "old-api-net", "dense_epochs": 1,
                                            "sparse_epochs": 1, "batch_size": 32}))
'''


@pytest.mark.e2e
def test_a_plugin_written_against_the_old_names_loads_and_runs(tmp_path):
    plugin = tmp_path / "old_plugin.py"
    plugin.write_text(old_plugin())
    res = run_cli("bench.run", "--plugin", plugin, "--grid", "old-api-grid", "--results",
                  tmp_path / "r", "--no-progress", "--dry-run")
    assert res.returncode == 0, res.stderr
    assert "snip-old-api" in res.stdout and "GPU-hours" in res.stdout
    res = run_cli("bench.run", "--plugin", plugin, "--grid", "old-api-grid", "--results",
                  tmp_path / "r", "--no-progress")
    assert res.returncode == 0, res.stderr
    (record,) = ResultStore(tmp_path / "r").load_all()[0]
    assert record["status"] == "ok" and record["label"] == "snip-old-api"
    assert record["extra"]["steps"] > 0 and abs(record["sparsity"]["prunable"] - 0.5) < 0.01
