"""Section 4: packing. 1, 2, 4, 8 resnet20 training processes (spawned, each a harness trainer on
CIFAR-shaped tensors) share the one device; started and warmed up once, a round's processes
start together at a barrier and each trains for the same wall-clock time. Reported: images/s of
each and in total, the total against one process alone, and each process's peak GPU memory
(torch.cuda.max_memory_allocated) or, on the CPU, its peak resident memory."""
from __future__ import annotations

import multiprocessing as mp
import os
import queue as queue_module
import time
from typing import Any

import torch

from bench.accept.budgets import Budget
from bench.accept.summary import Report, plural
from bench.console import first_line
from bench.exec.provenance import peak_rss_mb
from bench.perf.timing import cifar_like
from bench.plugins import load_builtins
from bench.train.models import build_model
from bench.train.trainer import Phase, Trainer

MODEL = "resnet20"
START_TIMEOUT_S = 300  # start-up, imports and warm-up of the processes
ROUND_TIMEOUT_S = 300  # beyond the round's own seconds


def train_worker(rank: int, device: str, threads: int, batch: int, steps: int, seconds: float,
                 barriers: dict, inbox, results) -> None:
    """One process of the pool: warm up and say so, then for each round it is given (a process
    count n), wait at that round's barrier for the others and train for `seconds` (at least one
    fit); None ends it."""
    try:
        torch.set_num_threads(threads)
        load_builtins()  # an entry point of its own: the model registry is filled here
        trainer = Trainer(cifar_like(batch * steps, seed=rank), device, progress=False)
        torch.manual_seed(rank)
        model = trainer.prepare(build_model(MODEL, 10, 3, 32))
        phase = Phase("pack", 1, batch_size=batch)
        trainer.fit(model, phase)  # kernels chosen, memory allocated
        results.put({"rank": rank, "ready": True})
        while (n := inbox.get()) is not None:
            if trainer.cuda:
                torch.cuda.reset_peak_memory_stats(trainer.device)
            barriers[n].wait(timeout=ROUND_TIMEOUT_S)
            trainer.sync()
            t0, images = time.perf_counter(), 0
            while True:
                trainer.fit(model, phase)  # ends with a host sync (the epoch's loss)
                images += batch * steps
                if time.perf_counter() - t0 >= seconds:
                    break
            trainer.sync()
            elapsed = time.perf_counter() - t0
            results.put({"rank": rank, "images_per_s": images / elapsed, "images": images,
                         "seconds": elapsed, "peak_rss_mb": peak_rss_mb(),
                         "peak_cuda_mb": torch.cuda.max_memory_allocated(trainer.device) / 2 ** 20
                         if trainer.cuda else None})
    except BaseException as exc:  # the parent reports it; broken barriers free the others
        for barrier in barriers.values():
            barrier.abort()
        results.put({"rank": rank, "error": f"{type(exc).__name__}: {first_line(exc)}"})


class Pool:
    """max(counts) spawned processes (CUDA cannot be forked), started and warmed up once, so a
    round of n pays no start-up; the processes not in a round wait, idle, on their inboxes."""

    def __init__(self, device: str, budget: Budget):
        ctx = mp.get_context("spawn")
        size = max(budget.pack_counts)
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
            os.cpu_count()
        self.budget, self.results = budget, ctx.Queue()
        self.barriers = {n: ctx.Barrier(n) for n in budget.pack_counts}
        self.inboxes = [ctx.Queue() for _ in range(size)]
        # the cores shared out for the largest round (a process's threads are set once)
        self.threads = budget.pack_threads or max(1, (cores or 1) // size)
        self.procs = [ctx.Process(target=train_worker, daemon=True, args=(
            rank, device, self.threads, budget.pack_batch, budget.pack_steps,
            budget.pack_seconds, self.barriers, self.inboxes[rank], self.results))
            for rank in range(size)]
        for p in self.procs:
            p.start()
        ready = self._collect(size, START_TIMEOUT_S)
        self.errors = [g["error"] for g in ready if "error" in g]

    def _collect(self, n: int, timeout: float) -> list[dict[str, Any]]:
        got, deadline = [], time.monotonic() + timeout
        while len(got) < n:
            try:
                got.append(self.results.get(timeout=max(0.1, deadline - time.monotonic())))
            except queue_module.Empty:
                got.append({"rank": -1, "error": f"{n - len(got)} process(es) did not answer "
                                                 f"within {timeout:.0f} s (exit codes "
                                                 f"{[p.exitcode for p in self.procs]})"})
                break
        return got

    def round(self, n: int) -> dict[str, Any]:
        if self.errors:
            return {"processes": n, "errors": self.errors}
        for inbox in self.inboxes[:n]:
            inbox.put(n)
        got = self._collect(n, ROUND_TIMEOUT_S + self.budget.pack_seconds)
        self.errors = [g["error"] for g in got if "error" in g]
        ok = sorted((g for g in got if "error" not in g), key=lambda g: g["rank"])
        return {"processes": n, "threads_each": self.threads, "each": ok,
                "errors": self.errors,
                "total_images_per_s": sum(g["images_per_s"] for g in ok) if ok else None}

    def close(self, wait: bool = True) -> None:
        """End the processes: let them finish (`wait`) or, when interrupted, stop them now."""
        for inbox in self.inboxes:
            inbox.put(None)
        for p in self.procs:
            p.join(timeout=30 if wait else 0)
            if p.is_alive():
                p.terminate()
                p.join(5)


def packing_section(report: Report, device: str, budget: Budget) -> dict[str, Any]:
    fit = f"fit{'s' if budget.pack_seconds else ''} of {plural(budget.pack_steps, 'step')}"
    length = f"for {budget.pack_seconds:g} s ({fit})" if budget.pack_seconds else f"one {fit}"
    report.emit(f"{MODEL}, batch {budget.pack_batch}; after a warm-up, the processes of a round "
                f"start together and each trains {length}.\n")
    memory = "peak GPU MB each" if device == "cuda" else "peak RSS MB each"
    report.table(("processes", "threads each", "images/s each", "total images/s",
                  "total / one process", memory))
    rows, errors, one = [], 0, None
    pool = Pool(device, budget)
    try:
        rounds = [pool.round(n) for n in budget.pack_counts]
    except BaseException:  # Ctrl-C or the time limit's SIGTERM: the summary is written next
        pool.close(wait=False)
        raise
    pool.close()
    for n, row in zip(budget.pack_counts, rounds):
        rows.append(row)
        if row["errors"]:
            errors += 1
            report.row((n, row.get("threads_each", ""), f"error: {'; '.join(row['errors'])}", "",
                        "", ""))
            continue
        total = row["total_images_per_s"]
        one = total if n == 1 else one
        row["scaling"] = total / one if one else None
        peaks = [g["peak_cuda_mb"] if device == "cuda" else g["peak_rss_mb"] for g in row["each"]]
        report.row((n, row["threads_each"],
                    ", ".join(f"{g['images_per_s']:,.0f}" for g in row["each"]), f"{total:,.0f}",
                    f"{row['scaling']:.2f}x" if row["scaling"] else "-",
                    ", ".join(f"{p:,.0f}" for p in peaks)))
    return {"model": MODEL, "rows": rows, "errors": errors}
