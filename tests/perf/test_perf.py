"""bench/perf/: its command line and its cost rows (their arithmetic, not their timings)."""
import subprocess
import sys

import pytest

from bench.perf.cells import colt_against_oneshot
from bench.perf.command import TARGETS
from conftest import ROOT, TINY, run_cli


@pytest.mark.e2e
def test_unknown_row_is_one_line_and_exit_2():
    res = run_cli("bench.perf", "--only", "colt,nosuch")
    assert res.returncode == 2
    assert res.stderr.strip() == f"error: unknown row(s) ['nosuch']; valid: {', '.join(TARGETS)}"


@pytest.mark.e2e
def test_colt_row_matches_round_budgets_and_splits_tg_oneshot_costs():
    base = {**TINY, "sparse_epochs": 2, "round_epochs": 1}
    t = colt_against_oneshot("cpu", 0.9, base=base)
    assert t["colt_rounds"] >= 2  # 15 % a round cannot reach 90 % in one
    # the three tg-oneshot figures drop the teacher, then the dense student too
    assert 0 < t["tg_cell"] < t["tg_without_teacher"] < t["tg_total"]
    assert t["colt"] > 0
    assert t["round_epochs"] == t["sparse_epochs"] == 2  # matched, whatever the base said


@pytest.mark.e2e
def test_peak_rss_is_the_process_own_not_its_parents():
    """A worker started by a large parent (bench.perf's memory row, local executors) must report
    its own peak: ru_maxrss keeps the parent's across fork and exec, VmHWM does not."""
    parent = (
        "import subprocess, sys\n"
        "big = bytearray(1536 * 2**20)\n"
        "big[::4096] = b'\\x01' * len(big[::4096])  # touch every page\n"
        "child = ('import resource; from bench.exec.provenance import peak_rss_mb; '\n"
        "         'print(peak_rss_mb(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)')\n"
        "print(subprocess.run([sys.executable, '-c', child], capture_output=True, text=True,\n"
        "                     check=True).stdout)\n")
    out = subprocess.run([sys.executable, "-c", parent], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.split()
    own, naive = float(out[0]), float(out[1])
    if sys.platform.startswith("linux"):
        assert naive > 1536  # the inherited figure this guards against
    assert own < 1024, f"peak_rss_mb reported {own:.0f} MB for a child that imports torch"


def test_interleave_runs_contenders_in_turn_and_takes_medians():
    from bench.perf.timing import interleave

    calls = []
    times = {"a": iter([9.0, 3.0, 1.0, 2.0]), "b": iter([9.0, 5.0, 7.0, 6.0])}

    def contender(name):
        def run():
            calls.append(name)
            return next(times[name])
        return run

    medians = interleave({"a": contender("a"), "b": contender("b")}, repeats=3)
    assert calls == ["a", "b"] * 4  # one warm-up each, then a, b in turn
    assert medians == {"a": 2.0, "b": 6.0}  # the warm-up (9.0) is not counted


def test_training_gflops_counts_six_flops_per_dense_mac():
    from bench.train.flops import macs_per_image
    from bench.train.models import build_model
    from bench.perf.precision import training_gflops

    dense, _ = macs_per_image(build_model("resnet20", 10, 3, 32), 3, 32)
    assert 35e6 < dense < 50e6  # He et al.'s resnet20: about 41 M MACs per CIFAR image
    assert training_gflops("resnet20", 1000.0) == pytest.approx(6 * dense * 1000 / 1e9)


@pytest.mark.parametrize("flags,fp32,bf16", [
    ({"avx2", "fma"}, 2 * 2.5 * 32, 2 * 2.5 * 32),           # Zen 3: no native bf16
    ({"avx2", "fma", "avx512f"}, 2 * 2.5 * 64, 2 * 2.5 * 64),
    ({"avx2", "fma", "avx512f", "avx512_bf16"}, 2 * 2.5 * 64, 2 * 2 * 2.5 * 64),
    ({"sse2"}, 2 * 2.5 * 8, 2 * 2.5 * 8),
])
def test_cpu_peak_estimate_from_flags(flags, fp32, bf16):
    from bench.perf.precision import cpu_peak_gflops

    peak = cpu_peak_gflops(frozenset(flags), cores=2, mhz=2500.0)
    assert peak["fp32"] == pytest.approx(fp32) and peak["bf16"] == pytest.approx(bf16)


def test_precision_row_times_every_variant_against_fp32_contiguous(capsys):
    from bench.perf.command import main

    code = main(["--only", "precision", "--models", "smallcnn", "--steps", "1", "--repeats", "1",
                 "--variants", "fp32:channels_last"])
    out = capsys.readouterr().out
    assert code == 0
    rows = [line for line in out.splitlines() if line.startswith("| training at a precision")]
    assert len(rows) == 2
    assert "smallcnn fp32 contiguous" in rows[0] and "| 1.00x |" in rows[0]
    assert "smallcnn fp32 channels_last" in rows[1] and "GFLOP/s" in rows[1]
    assert "Peak estimate:" in out


@pytest.mark.e2e
def test_bad_precision_variant_is_one_line_and_exit_2():
    res = run_cli("bench.perf", "--only", "precision", "--variants", "fp16:contiguous")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().startswith("error: --variants item 'fp16:contiguous' is invalid; "
                                         "valid: fp32:contiguous, fp32:channels_last")
