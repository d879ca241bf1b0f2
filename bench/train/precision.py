"""Numeric precision and memory format: what `--precision auto|fp32|bf16` resolves to on a device.

Training (teacher forwards inside KD and scoring passes included) runs under autocast at the
resolved precision; master weights, optimizer state, gradients of the parameters, importance
accumulators, state kept across steps (PS-KD's table, EMA scores, soft targets) and every
evaluation stay fp32.

`auto` is bf16 on a CUDA device that computes it natively (the field's usual choice for
training CNNs on Ampere and later GPUs) and fp32 on every CPU. On the CPU the choice used to follow
the host's flags (AVX512-BF16, AMX), so the same command gave different numbers on different
machines, and on 8x8 digits bf16 was even slower (issue 30, docs/performance.md): a benchmark's
numbers must not depend on which CPU ran it. bf16 on the CPU is what a user asks for
(`--precision bf16`); hosts without native bf16 emulate it with the same rounding, only slower.
"""
from __future__ import annotations

import contextlib
from functools import lru_cache
from typing import Iterable, Iterator

import torch

from bench.config import PRECISIONS  # defined where RunConfig checks it
from bench.registry import UsageError
# what a record says it ran at; defined with the records, importable here as before
from bench.store.records import mixed_precisions, record_precision  # noqa: F401
MEMORY_FORMATS = ("contiguous", "channels_last")
CPUINFO = "/proc/cpuinfo"
# x86: AVX512-BF16 (Cooper Lake, Sapphire Rapids, Zen 4+), AMX-BF16 (Sapphire Rapids+);
# Arm (aarch64 /proc/cpuinfo "Features"): bf16 (Armv8.6 BFDOT/BFMMLA, e.g. Graviton 3+).
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


def cpu_flags(path: str | None = None) -> frozenset[str]:
    """The feature flags the kernel reports for the CPU (empty where there is no /proc)."""
    return _cpu_flags(path or CPUINFO)


@lru_cache(maxsize=4)
def _cpu_flags(path: str) -> frozenset[str]:
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip().lower() in ("flags", "features"):
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


def cpu_has_native_bf16(path: str | None = None) -> bool:
    return bool(cpu_flags(path) & BF16_CPU_FLAGS)


def resolve_precision(requested: str, device: str | torch.device) -> str:
    """"fp32" or "bf16" for `requested` (auto, fp32 or bf16) on `device`."""
    if requested not in PRECISIONS:
        raise UsageError(f"precision={requested!r} is invalid; valid: {', '.join(PRECISIONS)}")
    if requested != "auto":
        return requested
    device = torch.device(device)
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp32"
    return "fp32"  # the CPU (whatever its flags) and any other device


# python -m bench.parity (docs/performance.md, "Does bf16 change the answers?"): distilling into a
# network pruned to 98 % was the one kind of cell whose bf16 accuracy left the fp32 interval.
BF16_CAUTION_SPARSITY = 0.95


def bf16_caution(configs: Iterable, device: str | torch.device | None = None) -> str | None:
    """One line for a run that asks bf16 for the regime parity flagged (retraining by distillation
    at >= 95 % sparsity); None otherwise. `device` resolves `auto` (None: only explicit bf16)."""
    def bf16(cfg) -> bool:
        if cfg.precision == "auto":
            return device is not None and resolve_precision("auto", device) == "bf16"
        return cfg.precision == "bf16"

    risky = [c for c in configs if c.sparsity >= BF16_CAUTION_SPARSITY
             and c.option_dict.get("retrain") == "kd" and bf16(c)]
    if not risky:
        return None
    labels = ", ".join(sorted({c.label for c in risky}))
    return (f"note: {len(risky)} cell(s) retrain by distillation at >= "
            f"{BF16_CAUTION_SPARSITY:.0%} sparsity under bf16 ({labels}); fp32/bf16 parity "
            "measured this regime up to about 1-2 points lower under bf16 (docs/performance.md). "
            "For published numbers use --precision fp32.")


# Measured no faster in channels_last on the CPU (docs/performance.md): smallcnn 0.89x,
# timm:resnet18 0.96x (timm's stem and pooling reorder NHWC back); the built-in resnets gained.
CPU_CONTIGUOUS_MODELS = frozenset({"smallcnn"})
CPU_CONTIGUOUS_PREFIXES = ("timm:",)


def resolve_memory_format(device: str | torch.device, model: str | None = None) -> str:
    """channels_last on CUDA; on the CPU channels_last too (oneDNN's NHWC convolutions were
    faster for the built-in resnets) except for the models measured no faster there."""
    kind = torch.device(device).type
    if kind == "cuda":
        return "channels_last"
    # narrowed resnets ("resnet20/w20", small-dense) with stages under 8 channels corrupt the heap
    # in oneDNN's channels_last backward on the CPU (torch 2.14.1; widths 16-24 of resnet20 crash)
    if kind == "cpu" and model not in CPU_CONTIGUOUS_MODELS and "/w" not in (model or "") and \
            not (model or "").startswith(CPU_CONTIGUOUS_PREFIXES):
        return "channels_last"
    return "contiguous"


@contextlib.contextmanager
def fp32_math(device: torch.device) -> Iterator[None]:
    """No autocast and, on CUDA, no TF32 (cuDNN enables it for convolutions by default): the
    arithmetic of evaluation is fp32 whatever the training ran at (issue 16, section 4)."""
    with torch.autocast(device.type, enabled=False):
        if device.type != "cuda":
            yield
            return
        saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        try:
            yield
        finally:
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
