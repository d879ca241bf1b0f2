"""`python -m bench.perf --only precision`: training throughput at each precision and memory
format against the fp32 contiguous loop (the CPU trainer before issue 22), and the GFLOP/s that
reaches against an estimate of the CPU's peak. See docs/performance.md for the numbers."""
from __future__ import annotations

import argparse
from typing import Callable, Sequence

import torch

from bench.perf.timing import cifar_like, interleave, timed
from bench.train import precision as train_precision
from bench.train.flops import macs_per_image
from bench.train.models import build_model
from bench.train.precision import (BF16_CPU_FLAGS, cpu_flags, resolve_memory_format,
                                   resolve_precision)
from bench.train.trainer import Phase, Trainer

TARGET_RATIO = {"resnet20": 1.8, "resnet18": 2.0}  # issue 22, auto against fp32 contiguous
VARIANTS = (("fp32", "contiguous"), ("fp32", "channels_last"), ("bf16", "contiguous"),
            ("bf16", "channels_last"))


def precision_throughput(model_name: str, device: str, steps: int, repeats: int, batch: int = 128,
                         variants: Sequence[tuple[str, str]] = VARIANTS
                         ) -> dict[tuple[str, str], float]:
    """Images/s of Trainer.fit at each (precision, memory format), interleaved in this process;
    ("fp32", "contiguous") is the CPU loop before precision settings existed. Each variant
    trains its own copy of the same initial model on the same CIFAR-shaped data."""
    data = cifar_like(batch * steps)
    phase = Phase("bench", 1, batch_size=batch)
    runs = {}
    for prec, fmt in variants:
        trainer = Trainer(data, device, progress=False, precision=prec, memory_format=fmt)
        torch.manual_seed(0)
        model = trainer.prepare(build_model(model_name, 10, 3, 32))
        runs[(prec, fmt)] = timed(lambda t=trainer, m=model: t.fit(m, phase), trainer.sync)
    return {k: batch * steps / t for k, t in interleave(runs, repeats).items()}


def training_gflops(model_name: str, images_per_second: float, image_size: int = 32) -> float:
    """Achieved GFLOP/s of training: 2 FLOPs per multiply-accumulate, and a backward pass costs
    two forwards (gradients of inputs and of weights), so 6 x bench.train.flops' dense MACs per image."""
    dense, _ = macs_per_image(build_model(model_name, 10, 3, image_size), 3, image_size)
    return 6 * dense * images_per_second / 1e9


def cpu_peak_gflops(flags: frozenset[str] | None = None, cores: int | None = None,
                    mhz: float | None = None) -> dict[str, float]:
    """An estimate of this CPU's peak GFLOP/s: cores x clock x FLOPs per cycle, assuming two
    FMA pipes per core of the widest vector unit the flags list (AVX-512: 2 x 16 fp32 lanes x 2;
    AVX2+FMA: 2 x 8 x 2), and twice the fp32 rate for bf16 dot products where the CPU has
    AVX512-BF16 (AMX is far higher still and is not estimated). The clock is the one
    /proc/cpuinfo reports (nominal; turbo can run higher). Cores: the threads torch uses."""
    flags = cpu_flags() if flags is None else flags
    cores = torch.get_num_threads() if cores is None else cores
    mhz = _cpu_mhz() if mhz is None else mhz
    per_cycle = 64 if "avx512f" in flags else 32 if {"avx2", "fma"} <= flags else 8
    fp32 = cores * mhz / 1e3 * per_cycle
    native = bool(flags & BF16_CPU_FLAGS)
    return {"fp32": fp32, "bf16": 2 * fp32 if native else fp32, "mhz": mhz, "cores": cores,
            "flops_per_cycle": per_cycle}


def _cpu_mhz() -> float:
    try:
        with open(train_precision.CPUINFO) as f:
            for line in f:
                if line.lower().startswith("cpu mhz"):
                    return float(line.split(":")[1])
    except (OSError, ValueError):
        pass
    return float("nan")


def parse_variants(text: str | None) -> list[tuple[str, str]]:
    """"fp32:channels_last,bf16:contiguous" -> the base variant plus those; None -> all four."""
    if not text:
        return list(VARIANTS)
    out = [("fp32", "contiguous")]
    for item in text.split(","):
        prec, _, fmt = item.strip().partition(":")
        if (prec, fmt) not in VARIANTS:
            valid = ", ".join(f"{p}:{f}" for p, f in VARIANTS)
            raise ValueError(f"--variants item {item!r} is invalid; valid: {valid}")
        if (prec, fmt) not in out:
            out.append((prec, fmt))
    return out


def precision_rows(args: argparse.Namespace, row: Callable[[str, str, str, str], None]) -> None:
    models = args.models.split(",") if args.models else ["resnet20", "resnet18"]
    variants = parse_variants(args.variants)
    cpu = not args.device.startswith("cuda")
    peak = cpu_peak_gflops() if cpu else None
    for model in models:
        auto = (resolve_precision("auto", args.device), resolve_memory_format(args.device, model))
        ips = precision_throughput(model, args.device, args.steps, args.repeats, variants=variants)
        base = ips[("fp32", "contiguous")]
        for (prec, fmt), value in ips.items():
            gflops = training_gflops(model, value)
            share = f", {gflops / peak[prec]:.0%} of peak" if peak else ""
            tag = " (auto here)" if (prec, fmt) == auto else ""
            row("precision", f"{model} {prec} {fmt}{tag}: {value:,.1f} img/s, "
                f"{gflops:,.1f} GFLOP/s{share}", f"{base:,.1f} img/s", f"{value / base:.2f}x")
        if auto in ips and model in TARGET_RATIO:
            met = ips[auto] / base >= TARGET_RATIO.get(model, 0.0)
            print(f"<!-- {model}: auto = {auto[0]} {auto[1]}, {ips[auto] / base:.2f}x, target "
                  f"{TARGET_RATIO.get(model, 0):g}x {'met' if met else 'NOT met'} -->", flush=True)
    if peak:
        print(f"\nPeak estimate: {peak['cores']} cores x {peak['mhz']:.0f} MHz x "
              f"{peak['flops_per_cycle']} fp32 FLOP/cycle = {peak['fp32']:.0f} GFLOP/s fp32, "
              f"{peak['bf16']:.0f} GFLOP/s bf16 (bench.perf.cpu_peak_gflops)", flush=True)
