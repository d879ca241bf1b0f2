import os
import sys
from pathlib import Path

import pytest

from bench.plugins import load_builtins

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("PYTHONUNBUFFERED", "1")
load_builtins()  # as every command line does (a registry's first lookup would do it, too)

# Tiny budgets for end-to-end cells: the synthetic dataset and the plain CNN run in ~1 s a cell.
TINY = dict(dataset="synthetic", model="smallcnn", teacher="smallcnn", teacher_epochs=1,
            dense_epochs=1, sparse_epochs=1, round_epochs=1, batch_size=32)


# Behaviour whose numbers depend on the arithmetic (state kept across steps, masks, checkpoints,
# resume, evaluation) runs under both; where the host has no bf16 units torch emulates bf16
# autocast with the same rounding, only slower, so these tests stay small (issue 30).
PRECISIONS = ("fp32", "bf16")


@pytest.fixture(params=PRECISIONS)
def precision(request):
    return request.param


@pytest.fixture
def tiny():
    return dict(TINY)


def run_cli(module, *args, cwd=None, timeout=600):
    import subprocess

    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=cwd or ROOT,
                          capture_output=True, text=True, timeout=timeout)
