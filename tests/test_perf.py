"""bench/perf.py's command line and its cost rows (their arithmetic, not their timings)."""
import subprocess
import sys

from bench.perf import TARGETS, colt_against_oneshot
from conftest import ROOT, TINY, run_cli


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


def test_peak_rss_is_the_process_own_not_its_parents():
    """A worker started by a large parent (bench.perf's memory row, local executors) must report
    its own peak: ru_maxrss keeps the parent's across fork and exec, VmHWM does not."""
    parent = (
        "import subprocess, sys\n"
        "big = bytearray(1536 * 2**20)\n"
        "big[::4096] = b'\\x01' * len(big[::4096])  # touch every page\n"
        "child = ('import resource; from bench.cell import peak_rss_mb; '\n"
        "         'print(peak_rss_mb(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)')\n"
        "print(subprocess.run([sys.executable, '-c', child], capture_output=True, text=True,\n"
        "                     check=True).stdout)\n")
    out = subprocess.run([sys.executable, "-c", parent], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.split()
    own, naive = float(out[0]), float(out[1])
    if sys.platform.startswith("linux"):
        assert naive > 1536  # the inherited figure this guards against
    assert own < 1024, f"peak_rss_mb reported {own:.0f} MB for a child that imports torch"
