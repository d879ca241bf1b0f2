import json
import os
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from bench.plugins import load_builtins
from bench.store import validate_record

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("PYTHONUNBUFFERED", "1")
load_builtins()  # once, as every command line does: the registries never load anything themselves

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


# --- files in the official dataset layouts, made small -------------------------------------


def write_cifar10(root, n_per_batch=20, n_test=30, columns=3072):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(1, 6):
        entry = {"data": rng.integers(0, 256, (n_per_batch, columns), dtype=np.uint8),
                 "labels": list(rng.integers(0, 10, n_per_batch)), "batch_label": f"batch {i}"}
        with open(folder / f"data_batch_{i}", "wb") as fh:
            pickle.dump(entry, fh)
    test = {"data": rng.integers(0, 256, (n_test, 3072), dtype=np.uint8),
            "labels": list(rng.integers(0, 10, n_test))}
    with open(folder / "test_batch", "wb") as fh:
        pickle.dump(test, fh)
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, fh)
    return folder


def write_cifar100(root, n_train=40, n_test=20):
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name, n in (("train", n_train), ("test", n_test)):
        entry = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 b"fine_labels": list(rng.integers(0, 100, n)),
                 b"coarse_labels": list(rng.integers(0, 20, n))}
        # The official files are py2 pickles with bytes keys; encoding="latin1" turns them to str.
        with open(folder / name, "wb") as fh:
            pickle.dump({k.decode(): v for k, v in entry.items()}, fh, protocol=2)
    return folder


def write_tinyimagenet(root, per_class=1, n_val=5, extra=()):
    """The official layout with all 200 classes (tiny 64x64 noise images); `extra` adds wnids."""
    from PIL import Image

    from bench.data.folders import TINY_WNIDS

    folder = root / "tiny-imagenet-200"
    wnids = list(TINY_WNIDS) + list(extra)
    classes = len(wnids)
    (folder).mkdir(parents=True)
    (folder / "wnids.txt").write_text("\n".join(wnids) + "\n")
    rng = np.random.default_rng(2)
    for w in wnids:
        d = folder / "train" / w / "images"
        d.mkdir(parents=True)
        for j in range(per_class):
            Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(
                d / f"{w}_{j}.JPEG", format="JPEG")
    (folder / "val" / "images").mkdir(parents=True)
    lines = []
    for j in range(n_val):
        name = f"val_{j}.JPEG"
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(
            folder / "val" / "images" / name, format="JPEG")
        lines.append(f"{name}\t{wnids[j % classes]}\t0\t0\t63\t63")
    (folder / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return folder


# --- grids and records of end-to-end runs ---------------------------------------------------


def write_grid(tmp_path, methods=("magnitude", "random"), sparsities=(0.5, 0.7, 0.9), **base):
    data = {"name": "rel", "methods": list(methods), "datasets": ["synthetic"],
            "sparsities": list(sparsities),
            "base": {**{k: v for k, v in TINY.items() if k != "dataset"}, **base}}
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def all_records_valid(results):
    folder = results / "records"
    paths = sorted(folder.glob("*.json")) if folder.exists() else []
    for p in paths:
        validate_record(json.loads(p.read_text()), str(p))
    leftovers = [p for p in folder.glob(".*")] if folder.exists() else []
    return paths, leftovers


# --- Slurm's commands as scripts on PATH (the process boundary) -----------------------------


def fake_slurm_bin(tmp_path, max_array_size=1001):
    """sbatch, srun, scontrol, sinfo, squeue and sacct as scripts: sbatch keeps each script and
    answers with increasing job ids; squeue/sacct print tmp_path/squeue.out and sacct.out."""
    bin_dir = tmp_path / "fakebin"
    if bin_dir.is_dir():
        return bin_dir
    calls = tmp_path / "sbatch-calls"
    bin_dir.mkdir()
    calls.mkdir()
    scripts = {
        "sbatch": f'n=$(ls "{calls}" | wc -l)\ncp "$1" "{calls}/$n.sh"\n'
                  f'echo "Submitted batch job $((1000 + n))"\n',
        "srun": "exit 0\n",
        "scontrol": f'echo "MaxArraySize            = {max_array_size}"\n',
        "sinfo": "echo debug\n",
        "squeue": f'cat "{tmp_path}/squeue.out" 2>/dev/null; exit 0\n',
        "sacct": f'cat "{tmp_path}/sacct.out" 2>/dev/null; exit 0\n',
    }
    for name, body in scripts.items():
        path = bin_dir / name
        path.write_text("#!/bin/bash\n" + body)
        path.chmod(0o755)
    return bin_dir
