"""Section 3: speed, side by side in this one process, through bench.perf's own rows: the
harness's trainer against a bare PyTorch loop (resnet20 and ResNet-18, CIFAR-shaped, with and
without torch.compile), the device loader against torchvision's DataLoader, and the TFLOP/s the
harness reaches against the device's peak where it is known."""
from __future__ import annotations

import re
from typing import Any

from bench.accept.budgets import Budget
from bench.accept.summary import Report, plural, ratio_verdict
from bench.console import first_line
from bench.perf.precision import cpu_peak_gflops, training_gflops
from bench.perf.rows import pipeline, throughput
from bench.train.precision import resolve_precision

MODELS = ("resnet20", "resnet18")
THROUGHPUT_TARGET = 0.95  # harness / bare loop, docs/performance.md
PIPELINE_TARGET = 10.0  # device loader / torchvision DataLoader

# Dense bf16 tensor-core peaks (TFLOP/s, no sparsity) from NVIDIA's data sheets, matched in order
# against torch.cuda.get_device_name(); the first match wins (GH200 before H200 before H100...).
CUDA_BF16_PEAKS: tuple[tuple[str, float], ...] = (
    (r"GH200", 989.0), (r"H200", 989.0), (r"H100.*NVL", 835.0), (r"H100.*PCIe", 756.0),
    (r"H100", 989.0), (r"B200", 2250.0), (r"A100", 312.0), (r"L40S", 362.0), (r"\bL4\b", 121.0),
    (r"\bA10G?\b", 125.0),
)


def cuda_peak_tflops(name: str, precision: str) -> float | None:
    if precision != "bf16":
        return None  # the table is of bf16 peaks; fp32 (or TF32) peaks are not listed
    for pattern, peak in CUDA_BF16_PEAKS:
        if re.search(pattern, name):
            return peak
    return None


def peak_tflops(device: str, device_name: str, precision: str) -> tuple[float | None, str]:
    """(peak, where it comes from) for training at `precision` on `device`."""
    if device == "cuda":
        peak = cuda_peak_tflops(device_name, precision)
        return peak, (f"{precision} dense, data sheet" if peak else
                      f"unknown for {device_name} at {precision}")
    est = cpu_peak_gflops()
    return est[precision] / 1e3, (f"estimate: {est['cores']} threads x {est['mhz']:.0f} MHz x "
                                  f"{est['flops_per_cycle']} fp32 FLOP/cycle"
                                  + (" x 2 (bf16)" if est[precision] > est["fp32"] else ""))


def speed_section(report: Report, device: str, device_name: str, budget: Budget,
                  tiny: bool) -> dict[str, Any]:
    precision = resolve_precision("auto", device)
    peak, source = peak_tflops(device, device_name, precision)
    report.emit(f"Training at {precision} (`auto`), batch {budget.speed_batch}, "
                f"{plural(budget.speed_steps, 'step')} a run, median of "
                f"{plural(budget.speed_repeats, 'interleaved run')}. Peak: "
                f"{f'{peak:.3g} TFLOP/s' if peak else 'unknown'} ({source}).\n")
    report.table(("row", "harness img/s", "bare loop img/s", "harness / bare", "target >= 0.95x",
                  "harness TFLOP/s", "of peak"))
    rows: list[dict[str, Any]] = []
    errors = 0
    for model in MODELS:
        for compiled in ((False, True) if budget.compile else (False,)):
            label = f"{model}{' compiled' if compiled else ''}"
            try:
                ours, bare = throughput(model, device, budget.speed_steps, budget.speed_repeats,
                                        batch=budget.speed_batch, compile=compiled)
            except Exception as exc:  # e.g. torch.compile without its compiler: the next row runs
                errors += 1
                rows.append({"row": label, "error": f"{type(exc).__name__}: {first_line(exc)}"})
                report.row((label, f"error: {rows[-1]['error']}", "", "", "", "", ""))
                continue
            tflops = training_gflops(model, ours) / 1e3
            share = tflops / peak if peak else None
            rows.append({"row": label, "model": model, "compile": compiled, "harness": ours,
                         "bare": bare, "ratio": ours / bare, "tflops": tflops, "of_peak": share})
            report.row((label, f"{ours:,.0f}", f"{bare:,.0f}", f"{ours / bare:.3f}x",
                        ratio_verdict(ours / bare, THROUGHPUT_TARGET, tiny), f"{tflops:.3g}",
                        f"{share:.0%}" if share is not None else "unknown"))
    if not budget.compile:
        report.emit("\ntorch.compile rows: skipped in --tiny (compiling takes minutes on a CPU).")
    report.emit(f"\nData pipeline, {budget.pipeline_images:,} CIFAR-shaped images (random crop, "
                f"flip, normalise), torchvision at its best num_workers of "
                f"{', '.join(map(str, budget.pipeline_workers))}:\n")
    try:
        ours, theirs, workers = pipeline(device, budget.pipeline_images, budget.pipeline_repeats,
                                         workers=budget.pipeline_workers)
        ratio = ours / theirs
        pipe = {"device_loader": ours, "torchvision": theirs, "num_workers": workers,
                "ratio": ratio}
        report.table(("device loader img/s", "torchvision img/s", "ratio", "target >= 10x"),
                     [(f"{ours:,.0f}", f"{theirs:,.0f} (num_workers={workers})", f"{ratio:.1f}x",
                       ratio_verdict(ratio, PIPELINE_TARGET, tiny))])
    except Exception as exc:
        errors += 1
        pipe = {"error": f"{type(exc).__name__}: {first_line(exc)}"}
        report.emit(f"pipeline: error: {pipe['error']}")
    return {"precision": precision, "peak_tflops": peak, "peak_source": source, "rows": rows,
            "pipeline": pipe, "errors": errors}
