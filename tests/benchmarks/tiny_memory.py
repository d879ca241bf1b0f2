"""Where a TinyImageNet cell's host memory goes, stage by stage, on the CPU.

    python tests/benchmarks/tiny_memory.py DATA_ROOT [BATCHES (20)]

DATA_ROOT holds tiny-imagenet-200/ (the real release, or tests/benchmarks/make_tiny_folder.py's
copy in the same layout). The first run decodes the JPEGs and writes the decoded cache; later runs
read the cache. Loads the data with the harness's own loader, then trains BATCHES batches of
smallcnn at batch 128 and evaluates it on the test split as the trainer does. Prints,
per stage, the resident memory (VmRSS) at its end and the highest resident memory seen during it
(a 5 ms sampler), against the uint8 training split's size. The peak over the whole run is VmHWM,
what a record's `memory.peak_rss_mb` holds."""
import sys
import threading
import time
from pathlib import Path

import torch

import bench.data.datasets as datasets
import bench.data.decoded as decoded
import bench.data.folders as folders
from bench.data import load_dataset
from bench.data.loader import DeviceLoader
from bench.exec.provenance import peak_rss_mb
from bench.console import show_progress
from bench.plugins import load_builtins
from bench.train.models import build_model
from bench.train.trainer import eval_batch_size


def rss() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise KeyError("VmRSS")


class Sampler(threading.Thread):
    """The highest VmRSS since the last mark(), sampled every 5 ms."""
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.high = 0.0

    def run(self) -> None:
        while True:
            self.high = max(self.high, rss())
            time.sleep(0.005)

    def mark(self, stage: str, t0: float) -> None:
        now = rss()
        print(f"{stage:<44} {time.perf_counter() - t0:7.1f} s  rss {now:7.0f} MiB  "
              f"stage high {max(self.high, now):7.0f} MiB", flush=True)
        self.high = 0.0


def staged(module, name: str, sampler: Sampler, label: str) -> None:
    """Wrap module.name so that its end is a stage of the table."""
    inner = getattr(module, name)

    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        out = inner(*args, **kwargs)
        sampler.mark(label, t0)
        return out
    setattr(module, name, wrapper)


def main() -> None:
    root, batches = Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 20
    load_builtins()
    show_progress(False)  # the decoding bar would overwrite the table's lines
    sampler = Sampler()
    sampler.start()
    t0 = time.perf_counter()
    sampler.mark("interpreter, torch, the harness", t0)
    staged(folders, "_tiny_files", sampler, "list the folder (110,000 paths)")
    staged(decoded, "fingerprint", sampler, "fingerprint (stat every file)")
    staged(decoded, "decode_images", sampler, "decode a split (first run only)")
    staged(decoded, "atomic_torch_save", sampler, "write the decoded cache (first run only)")
    staged(decoded, "safe_torch_load", sampler, "read the decoded cache (later runs)")
    staged(datasets, "carve_validation", sampler, "carve the validation split")
    staged(datasets, "channel_stats", sampler, "mean and std")
    b = load_dataset("tinyimagenet", root)
    split_mb = b.train.images.untyped_storage().nbytes() / 2**20
    held = sum(s.images.untyped_storage().nbytes() for s in (b.train, b.val, b.test)) / 2**20
    t0 = time.perf_counter()
    model = build_model("smallcnn", 200, 3, 64)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loader = DeviceLoader(b.train, b, 128, train=True, seed=0)
    for i, bt in enumerate(loader):
        loss = torch.nn.functional.cross_entropy(model(bt.x), bt.y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i + 1 >= batches:
            break
    sampler.mark(f"train {batches} batches of 128 (smallcnn, 64x64)", t0)
    t0 = time.perf_counter()
    model.eval()
    with torch.no_grad():
        correct = sum(int((model(bt.x).argmax(1) == bt.y).sum())
                      for bt in DeviceLoader(b.test, b, eval_batch_size(b.test), train=False,
                                             seed=0))
    sampler.mark(f"evaluate the test split at batch {eval_batch_size(b.test)}", t0)
    peak = peak_rss_mb()
    print(f"\nuint8 splits held: {held:.0f} MiB (training storage {split_mb:.0f} MiB, the "
          f"validation rows carved from it included); peak (VmHWM) {peak:.0f} MiB = "
          f"{peak / split_mb:.2f}x the training storage; test accuracy {correct / len(b.test):.3f}")


if __name__ == "__main__":
    main()
