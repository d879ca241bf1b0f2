"""Section 5: host memory. A magnitude cell on CIFAR-10 (the real release under --data-root, else
generated files of the same size) runs on the device in a fresh spawned process, so its peak is
its own; the peak resident memory beyond the training split's bytes is compared with the target.

The peak is VmHWM from /proc/self/status (bench.exec.provenance.peak_rss_mb, what records hold):
Linux keeps ru_maxrss across fork and exec, so a child of a large parent would report the
parent's peak (docs/performance.md). getrusage's figure is reported beside it."""
from __future__ import annotations

import multiprocessing as mp
import queue as queue_module
import resource
import time
from pathlib import Path
from typing import Any

import torch

from bench.accept.budgets import Budget
from bench.accept.summary import Report
from bench.config import RunConfig
from bench.console import first_line
from bench.exec.cell import RunOptions, cached_dataset, run_cell
from bench.exec.provenance import peak_rss_mb
from bench.plugins import load_builtins
from bench.store import ResultStore

TARGET_BEYOND_SPLIT_GIB = 2.0
TIMEOUT_S = 600


def memory_config(budget: Budget) -> RunConfig:
    return RunConfig(method="magnitude", dataset="cifar10", model=budget.memory_model,
                     teacher=budget.memory_model, sparsity=0.5, dense_epochs=1, sparse_epochs=1,
                     batch_size=budget.memory_batch)


def cell_worker(config: dict, data_root: str, store: str, device: str, results) -> None:
    try:
        load_builtins()
        cfg = RunConfig.from_dict(config)
        t0 = time.perf_counter()
        record = run_cell(cfg, ResultStore(store), RunOptions(device=device, data_root=data_root,
                                                              progress=False,
                                                              save_checkpoints=False))
        train = cached_dataset(cfg.dataset, data_root, False, cfg.train_fraction).train
        results.put({
            "status": record["status"], "seconds": time.perf_counter() - t0,
            "error": first_line((record.get("error") or {}).get("message"), empty=""),
            "train_images": len(train),
            "split_bytes": train.images.numel() * train.images.element_size()
            + train.labels.numel() * train.labels.element_size(),
            "peak_rss_mb": peak_rss_mb(),
            "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
            "peak_cuda_mb": torch.cuda.max_memory_allocated() / 2 ** 20
            if device == "cuda" else None})
    except BaseException as exc:
        results.put({"status": "error", "error": f"{type(exc).__name__}: {first_line(exc)}"})


def memory_section(report: Report, device: str, budget: Budget, data_root: Path, source: str,
                   store: Path) -> dict[str, Any]:
    cfg = memory_config(budget)
    report.emit(f"One magnitude cell ({cfg.model}, dense and fine-tuning 1 epoch each, batch "
                f"{cfg.batch_size}) on {device}, in a fresh process; CIFAR-10: {source}.\n")
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    proc = ctx.Process(target=cell_worker, args=(cfg.to_dict(), str(data_root), str(store),
                                                 device, results), daemon=True)
    proc.start()
    try:
        got = results.get(timeout=TIMEOUT_S)
    except queue_module.Empty:
        got = {"status": "error", "error": f"no answer within {TIMEOUT_S} s"}
    except BaseException:  # Ctrl-C or the time limit's SIGTERM: stop the cell now
        proc.terminate()
        raise
    proc.join(timeout=30)
    if proc.is_alive():
        proc.terminate()
        proc.join(5)
    if got["status"] != "ok":
        report.emit(f"error: the cell {got['status']}: {got.get('error')}")
        return {**got, "errors": 1}
    split_mb = got["split_bytes"] / 2 ** 20
    beyond = (got["peak_rss_mb"] - split_mb) / 1024.0
    verdict = "met" if beyond <= TARGET_BEYOND_SPLIT_GIB else "NOT met"
    report.table(("training split", "peak RSS (VmHWM)", "beyond the split",
                  f"target <= {TARGET_BEYOND_SPLIT_GIB:g} GiB", "ru_maxrss", "peak GPU"),
                 [(f"{got['train_images']:,} images, {split_mb:,.0f} MiB",
                   f"{got['peak_rss_mb']:,.0f} MiB", f"{beyond:.2f} GiB", verdict,
                   f"{got['ru_maxrss_mb']:,.0f} MiB",
                   f"{got['peak_cuda_mb']:,.0f} MiB" if got["peak_cuda_mb"] is not None else "-")])
    return {**got, "beyond_split_gib": beyond, "target_gib": TARGET_BEYOND_SPLIT_GIB,
            "met": beyond <= TARGET_BEYOND_SPLIT_GIB, "errors": 0}
