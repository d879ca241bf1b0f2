"""`python -m bench.accept` (issue 35): the CPU smoke run passes and prints every section, its
summary has a passing row per registered method, and a pruned weight left nonzero is caught as a
failure of that method naming the phase. The run is in this process (main(argv)); its packing and
memory sections start processes of their own, hence the e2e marker."""
import dataclasses
import json
from unittest import mock

import pytest
import torch

import bench.train.trainer as trainer_module
from bench import catalog
from bench.accept.budgets import TINY
from bench.accept.command import SECTIONS, TITLES, main
from bench.accept.method_checks import choose_config
from bench.accept.probes import CellProbe
from bench.accept.speed import cuda_peak_tflops
from bench.masks import MASK_BUFFER, apply_mask, prunable_modules
from bench.plan.grid import Grid
from bench.train.trainer import Trainer


@pytest.mark.e2e
def test_the_tiny_cpu_run_passes_and_prints_every_section(tmp_path, capsys):
    code = main(["--device", "cpu", "--tiny", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    for number, key in enumerate(SECTIONS, start=1):
        assert f"## {number}. {TITLES[key]}" in out
    assert "skipped: not requested (--reference)" in out
    assert (tmp_path / "summary.md").read_text().strip() in out  # what was printed, kept
    summary = json.loads((tmp_path / "summary.json").read_text())
    rows = {r["method"]: r for r in summary["methods"]["rows"]}
    assert sorted(rows) == sorted(catalog.METHODS)  # built-ins, controls, dense, small-dense
    assert all(r["pass"] and not r["failures"] for r in rows.values()), rows
    assert all(f"PASS {m}: " in out for m in rows)
    assert all(r["interrupted_at"] for r in rows.values())  # every resume was exercised
    assert summary["machine"]["precision_auto"] == "fp32"  # auto is fp32 on every CPU
    assert {r["row"] for r in summary["speed"]["rows"]} == {"resnet20", "resnet18"}
    assert all(r["harness"] > 0 and r["bare"] > 0 for r in summary["speed"]["rows"])
    assert summary["speed"]["pipeline"]["ratio"] > 0
    packing = summary["packing"]["rows"]
    assert [r["processes"] for r in packing] == list(TINY.pack_counts)
    assert [len(r["each"]) for r in packing] == list(TINY.pack_counts)
    assert summary["memory"]["status"] == "ok" and summary["memory"]["split_bytes"] > 0
    assert summary["passed"] is True and summary["failed_sections"] == []


def leaky_apply_mask(model):
    """The trainer's mask enforcement, broken: one pruned weight is set back to 0.5."""
    apply_mask(model)
    for module in prunable_modules(model).values():
        mask = getattr(module, MASK_BUFFER, None)
        if mask is not None and not bool(mask.all()):
            with torch.no_grad():
                module.weight[tuple((~mask).nonzero()[0])] = 0.5
            return


@pytest.mark.e2e
def test_a_pruned_weight_left_nonzero_fails_that_method_naming_the_phase(tmp_path, capsys):
    original = catalog.METHODS.get("magnitude")

    def run_leaking(ctx):
        with mock.patch.object(trainer_module, "apply_mask", leaky_apply_mask):
            return original.run(ctx)

    catalog.METHODS.register("magnitude", replace=True)(
        dataclasses.replace(original, run=run_leaking))
    try:
        code = main(["--device", "cpu", "--tiny", "--out", str(tmp_path), "--no-progress",
                     "--only", "methods", "--methods", "magnitude,random"])
    finally:
        catalog.METHODS.register("magnitude", replace=True)(original)
    out = capsys.readouterr().out
    assert code == 1
    lines = [line for line in out.splitlines() if line.startswith("FAIL magnitude ")]
    assert lines[0].startswith("FAIL magnitude [finetune] mask: 1 pruned weight(s) nonzero "
                               "after epoch 1/2"), out
    assert "PASS random: " in out  # the run went on to the next method, which passed
    rows = {r["method"]: r for r in json.loads((tmp_path / "summary.json").read_text())
            ["methods"]["rows"]}
    assert rows["magnitude"]["pass"] is False and rows["random"]["pass"] is True
    assert rows["magnitude"]["failures"][0] == lines[0]


@pytest.mark.e2e
def test_a_resume_that_loses_the_optimizer_state_is_caught(tmp_path, capsys):
    resume = Trainer._resume

    def forgetful(self, *args):
        epoch = resume(self, *args)
        args[1].optimizer.state.clear()  # the momentum buffers, gone
        return epoch

    with mock.patch.object(Trainer, "_resume", forgetful):
        code = main(["--device", "cpu", "--tiny", "--out", str(tmp_path), "--no-progress",
                     "--only", "methods", "--methods", "magnitude"])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL magnitude [finetune] resume: the weights differ from the uninterrupted run's " \
           "in " in out, out


BAD_INPUT = [(["--only", "machine,gpu"], "--only 'gpu' is invalid; valid: machine, methods, "),
             (["--methods", "nosuch"], "unknown method 'nosuch'; valid: colt, ")]
if not torch.cuda.is_available():
    BAD_INPUT.append((["--device", "cuda"], "--device cuda: CUDA is not available on this "
                                            "machine; valid here: cpu"))


@pytest.mark.parametrize("argv,says", BAD_INPUT)
def test_bad_input_is_one_line_naming_the_value_and_exit_2(argv, says, tmp_path, capsys):
    assert main([*argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and len(err.splitlines()) == 1
    assert not (tmp_path / "summary.json").exists()  # nothing ran


def test_each_method_gets_a_cell_its_precheck_accepts():
    assert choose_config("magnitude", TINY).model == "smallcnn"
    assert choose_config("dense", TINY).sparsity == 0.0  # dense refuses any other target
    assert choose_config("small-dense", TINY).model == "resnet20"  # needs a built-in resnet


def test_the_interruption_lands_mid_phase_where_one_exists():
    probe = CellProbe(torch.device("cpu"), False)
    probe.epochs = [("dense", 0, 2), ("dense", 1, 2), ("finetune", 0, 1)]
    assert probe.kill_point() == ("dense", 1, 2)
    probe.epochs = [("train", 0, 1)]
    assert probe.kill_point() == ("train", 0, 1)
    probe.epochs = []
    assert probe.kill_point() is None


def test_known_gpu_peaks_by_name():
    assert cuda_peak_tflops("NVIDIA H200", "bf16") == 989.0
    assert cuda_peak_tflops("NVIDIA H100 PCIe", "bf16") == 756.0
    assert cuda_peak_tflops("NVIDIA H100 80GB HBM3", "bf16") == 989.0
    assert cuda_peak_tflops("NVIDIA A100-SXM4-80GB", "bf16") == 312.0
    assert cuda_peak_tflops("NVIDIA L40S", "bf16") == 362.0
    assert cuda_peak_tflops("NVIDIA L4", "bf16") == 121.0
    assert cuda_peak_tflops("Tesla V100-SXM2-16GB", "bf16") is None
    assert cuda_peak_tflops("NVIDIA H200", "fp32") is None


def test_reference_says_in_one_line_that_renda2020_is_not_registered(tmp_path, capsys,
                                                                     monkeypatch):
    monkeypatch.delitem(catalog.GRIDS._items, "renda2020")  # e.g. a build without it
    assert main(["--only", "reference", "--out", str(tmp_path), "--no-progress"]) == 0
    assert "\nskipped: grid renda2020 not registered\n" in capsys.readouterr().out


@pytest.mark.e2e
def test_reference_runs_only_the_resnet20_row_of_renda2020(tmp_path, capsys, monkeypatch):
    grid = Grid("renda2020", methods=("magnitude",), datasets=("synthetic", "digits"),
                sparsities=(0.5,), per_dataset={"digits": {"model": "smallcnn"}},
                base={"model": "resnet20", "dense_epochs": 1, "sparse_epochs": 1,
                      "batch_size": 64})
    monkeypatch.setitem(catalog.GRIDS._items, "renda2020", grid)
    assert main(["--reference", "--only", "reference", "--out", str(tmp_path),
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "1 cell of renda2020 (resnet20)" in out and "| magnitude | 0.5 | ok |" in out
    rows = json.loads((tmp_path / "summary.json").read_text())["reference"]["rows"]
    assert [(r["label"], r["status"]) for r in rows] == [("magnitude", "ok")]
    assert len(list((tmp_path / "reference" / "records").glob("*.json"))) == 1


def test_reference_picks_the_dense_row_and_lr_rewinding_at_the_shortest_budget():
    from bench.accept.reference import reference_cells

    picked = reference_cells(catalog.GRIDS.get("renda2020").cells())
    assert {(c.label, c.sparse_epochs if c.sparsity else 0) for c in picked} == \
        {("dense", 0), ("magnitude-lr-rewind", 10)}
    assert {c.model for c in picked} == {"resnet20"} and {c.seed for c in picked} == {0}
