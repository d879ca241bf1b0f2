"""Where a record comes from and what it cost the host: the process's peak memory and the
provenance every record carries (git commit, torch, device, CPU, host, Slurm job, plugins)."""
from __future__ import annotations

import os
import platform
import resource
import socket
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from bench.plugins import loaded_plugins


def peak_rss_mb() -> float:
    """This process's peak resident memory. On Linux, ru_maxrss survives fork and exec, so a worker
    started by a large parent (bench.perf, a local executor) would report the parent's peak; the
    memory map's own high-water mark (VmHWM) starts afresh at exec."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux, not macOS


def peak_memory(device: torch.device) -> dict[str, float]:
    out = {"peak_rss_mb": peak_rss_mb()}
    if device.type == "cuda":
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / 2 ** 20
    return out


@lru_cache(maxsize=1)
def _git_commit() -> str | None:
    here = Path(__file__).resolve().parents[2]  # the repository holding bench/
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                                text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (commit + ("-dirty" if dirty else "")) or None


@lru_cache(maxsize=1)
def cpu_name() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo); platform.processor() is often empty or just
    the architecture there, which cannot tell two hosts apart."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance(device: torch.device) -> dict[str, Any]:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    # The vector instructions torch's CPU kernels use (AVX2, AVX512, ...): fp32 results agree
    # only to rounding between them, so a study run on several hosts can say which ran what.
    return {"git_commit": _git_commit(), "torch": torch.__version__,
            "python": platform.python_version(), "device": str(device), "device_name": name,
            "cpu": cpu_name(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "host": socket.gethostname(), "threads": torch.get_num_threads(),
            "slurm_job_id": os.environ.get("SLURM_JOB_ID"), "plugins": loaded_plugins()}
