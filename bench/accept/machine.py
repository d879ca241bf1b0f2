"""Section 1: the machine, and what the harness chose to run on it: precision and memory format
through the harness's own resolution (bench.train.precision), not a copy of its rules."""
from __future__ import annotations

import os
import platform
import re
from typing import Any

import torch

from bench.train.precision import (BF16_CPU_FLAGS, cpu_flags, cpu_has_native_bf16,
                                   resolve_memory_format, resolve_precision)

# the flags that decide the CPU's speed and its bf16 arithmetic (bench/perf/precision.py)
CPU_FLAGS_SHOWN = ("avx2", "fma", "avx512f", *sorted(BF16_CPU_FLAGS))
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "SLURM_CPUS_PER_TASK")


def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    return f"CPU {cpu_model()}"


def slug(text: str) -> str:
    """"NVIDIA H200" -> "nvidia-h200": the default output folder's name."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "device"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def facts(device: str, models: tuple[str, ...]) -> dict[str, Any]:
    """What the summary says about the machine; `models`: those the run trains (their memory
    format is resolved per model on the CPU)."""
    out: dict[str, Any] = {
        "device": device, "device_name": device_name(device), "torch": torch.__version__,
        "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
        "python": platform.python_version(), "host": platform.node(),
        "precision_auto": resolve_precision("auto", device),
        "memory_format": {m: resolve_memory_format(device, m) for m in models},
        "threads": {"torch": torch.get_num_threads(),
                    "interop": torch.get_num_interop_threads(),
                    "cpus": os.cpu_count(), "affinity": len(os.sched_getaffinity(0))
                    if hasattr(os, "sched_getaffinity") else None,
                    **{v: os.environ.get(v) for v in THREAD_VARIABLES}},
    }
    if device == "cuda":
        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        out.update(gpu_memory_gib=round(props.total_memory / 2 ** 30, 1),
                   capability=f"{props.major}.{props.minor}",
                   gpus_visible=torch.cuda.device_count(),
                   bf16_native=torch.cuda.is_bf16_supported(including_emulation=False),
                   cudnn_benchmark="on in the trainer", tf32={
                       "matmul": torch.backends.cuda.matmul.allow_tf32,
                       "cudnn": torch.backends.cudnn.allow_tf32})
    else:
        flags = cpu_flags()
        out.update(cpu_model=cpu_model(), cpu_capability=torch.backends.cpu.get_cpu_capability(),
                   cpu_flags=[f for f in CPU_FLAGS_SHOWN if f in flags],
                   bf16_native=cpu_has_native_bf16())
    return out


def lines(f: dict[str, Any]) -> list[str]:
    """The section's markdown table."""
    threads = f["threads"]
    env = ", ".join(f"{v}={threads[v]}" for v in THREAD_VARIABLES if threads.get(v))
    rows = [("device", f"{f['device_name']} ({f['device']})"),
            ("torch / CUDA / cuDNN", f"{f['torch']} / {f['cuda'] or '-'} / {f['cudnn'] or '-'}"),
            ("python, host", f"{f['python']}, {f['host']}")]
    if f["device"] == "cuda":
        rows += [("GPU memory", f"{f['gpu_memory_gib']} GiB (compute capability "
                                f"{f['capability']}, {f['gpus_visible']} visible)"),
                 ("bf16 native", str(f["bf16_native"])),
                 ("TF32 default (training)", f"matmul {f['tf32']['matmul']}, cuDNN "
                                             f"{f['tf32']['cudnn']}; evaluation turns both off")]
    else:
        rows += [("CPU", f"{f['cpu_model']}; torch kernels {f['cpu_capability']}"),
                 ("CPU flags", ", ".join(f["cpu_flags"])
                  or "none of " + ", ".join(CPU_FLAGS_SHOWN)),
                 ("bf16 native", str(f["bf16_native"]))]
    fmt = ", ".join(f"{m}: {v}" for m, v in f["memory_format"].items())
    rows += [("precision `auto` resolves to", f["precision_auto"]),
             ("memory format", fmt),
             ("threads", f"torch {threads['torch']} (inter-op {threads['interop']}), "
                         f"{threads['cpus']} CPUs, {threads['affinity']} usable"
                         + (f"; {env}" if env else ""))]
    return ["| what | value |", "| --- | --- |"] + [f"| {k} | {v} |" for k, v in rows]
