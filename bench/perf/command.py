"""`python -m bench.perf`: speed and cost ratios, each measured side by side in this one process.

Every row compares the harness with a baseline on the same data, model and device, alternating
the two and taking the median of several repeats, so the ratio survives a noisy machine better
than either number alone. Use `--device cuda` (and `--compile`) to read the same table on a GPU.
The rows are functions in bench/perf/rows.py (synthetic tensors), cells.py (whole cells),
precision.py, observe.py and sharing.py; the shared timers are in timing.py.
"""
from __future__ import annotations

import argparse
import sys

import torch

from bench.perf.cells import cache_saving, colt_against_oneshot, quick_grid_memory
from bench.perf.observe import observer_cost
from bench.perf.precision import parse_variants, precision_rows
from bench.perf.rows import importance_cost, lean_loader, mask_cost, pipeline, throughput
from bench.perf.sharing import sharing_rows
from bench.plugins import load_builtins

TARGETS = {
    "throughput": ("harness / bare loop (images/s)", ">= 0.95x"),
    "pipeline": ("device pipeline / torchvision DataLoader (images/s)", ">= 10x"),
    "mask": ("step with mask / without (seconds)", "<= 1.03x"),
    "importance": ("epoch with scoring / without (seconds)", "<= 1.15x"),
    "cache": ("5-sparsity tg-oneshot grid, paper budget proportions: recompute / cached", ">= 3x"),
    "colt": ("tg-oneshot vs COLT to 0.977, matched per-round budgets: colt / tg-oneshot (s)",
             ">= 10x"),
    "memory": ("peak RSS of the quick grid (GiB)", "< 2 GiB"),
    "precision": ("training at a precision / memory format vs fp32 contiguous (images/s)",
                  "auto: resnet20 >= 1.8x, resnet18 >= 2x"),
    "lean-loader": ("training, per-batch crops / whole-split crop windows (images/s)", ">= 0.95x"),
    "sharing": ("COLT / EGP on digits, 5 sparsities: --no-share / shared round prefixes (s)",
                "colt >= 2x, egp >= 1.4x; estimate within 25 %"),
    "observe": ("epoch with the metrics file and TensorBoard / without (seconds; the observer's "
                "own share)", "< 1 % of an epoch"),
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.perf", description=__doc__)
    p.add_argument("--device", default="cpu")
    p.add_argument("--compile", action="store_true", help="torch.compile in the throughput rows")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=4, help="training steps per timed run")
    p.add_argument("--only", help=f"comma list of rows: {', '.join(TARGETS)}")
    p.add_argument("--models", help="precision row: comma list of models (default: resnet20,"
                   "resnet18; e.g. smallcnn,timm:resnet18)")
    p.add_argument("--variants", help="precision row: comma list of precision:format (default: "
                   "all four of fp32|bf16 x contiguous|channels_last; fp32:contiguous is the base)")
    args = p.parse_args(argv)
    load_builtins()
    rows = set(args.only.split(",")) if args.only else set(TARGETS)
    unknown = rows - set(TARGETS)
    if unknown:
        print(f"error: unknown row(s) {sorted(unknown)}; valid: {', '.join(TARGETS)}",
              file=sys.stderr)
        return 2
    if "precision" in rows:
        try:
            parse_variants(args.variants)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    print(f"# bench.perf on {name}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"median of {args.repeats}\n")
    print("| what | harness | baseline | ratio | target |\n|---|---|---|---|---|")

    def row(key: str, ours: str, base: str, ratio: str) -> None:
        print(f"| {TARGETS[key][0]} | {ours} | {base} | {ratio} | {TARGETS[key][1]} |", flush=True)

    if "throughput" in rows:
        for model in ("resnet20", "resnet18"):
            h, b = throughput(model, args.device, args.steps, args.repeats, compile=args.compile)
            row("throughput", f"{model}: {h:,.0f} img/s", f"{b:,.0f} img/s", f"{h / b:.3f}x")
    if "pipeline" in rows:
        ours, tv, workers = pipeline(args.device, 10_000, args.repeats)
        row("pipeline", f"{ours:,.0f} img/s", f"{tv:,.0f} img/s (num_workers={workers})",
            f"{ours / tv:.1f}x")
    if "mask" in rows:
        m, d = mask_cost(args.device, args.steps, args.repeats)
        row("mask", f"{m:.3f} s", f"{d:.3f} s", f"{m / d:.3f}x")
    if "importance" in rows:
        s, n = importance_cost(args.device, args.steps * 4, args.repeats)
        row("importance", f"{s:.3f} s", f"{n:.3f} s", f"{s / n:.3f}x")
    if "cache" in rows:
        # The grid `bench.run --methods tg-oneshot:retrain=kd` runs, then the paper grid's two
        # retraining rows (ft and kd: 10 cells sharing one teacher and one dense student).
        for retrains in (("kd",), ("ft", "kd")):
            r, c = cache_saving(args.device, retrains)
            label = f"{'+'.join(retrains)}, {5 * len(retrains)} cells"
            row("cache", f"{label}: {c:.1f} s cached", f"{r:.1f} s recomputed", f"{r / c:.2f}x")
    if "colt" in rows:
        t = colt_against_oneshot(args.device)
        for what, key in (("total", "tg_total"), ("without the teacher", "tg_without_teacher"),
                          ("per cell, teacher and student shared", "tg_cell")):
            row("colt", f"tg-oneshot {what}: {t[key]:.1f} s",
                f"colt: {t['colt']:.1f} s ({t['colt_rounds']} rounds of {t['round_epochs']} "
                f"epochs)", f"{t['colt'] / t[key]:.1f}x")
    if "lean-loader" in rows:
        for size, model in ((64, "smallcnn"), (32, "resnet20")):
            lean, windowed = lean_loader(args.device, args.repeats, size=size, model_name=model)
            row("lean-loader", f"{size}x{size} {model}: {lean:,.0f} img/s",
                f"{windowed:,.0f} img/s", f"{lean / windowed:.3f}x")
    if "observe" in rows:
        for model in ("smallcnn", "resnet20"):
            c = observer_cost(args.device, args.repeats, model)
            tb = "" if c["tensorboard"] else " (no tensorboard installed: file only)"
            row("observe", f"digits {model}: {c['with']:.3f} s/epoch{tb}",
                f"{c['without']:.3f} s/epoch",
                f"{c['with'] / c['without']:.3f}x; hooks {c['hooks'] * 1e3:.2f} ms = "
                f"{100 * c['hooks'] / c['without']:.2f} % of an epoch, + "
                f"{c['phase_start'] * 1e3:.1f} ms a phase")
    if "memory" in rows:
        gib = quick_grid_memory()
        row("memory", f"{gib:.2f} GiB", "—", "—")
    if "precision" in rows:
        precision_rows(args, row)
    if "sharing" in rows:
        sharing_rows(args, row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
