"""`python -m bench.parity`: one grid at two precisions in this one process (issue 22).

Runs the grid (with `bench.run`'s selections) once per precision, each in its own results store
under --results (so no phase is shared between them through the cache), prints the wall-clock of
each and, for every row and sparsity, the second precision's mean test accuracy against the first's
95 % interval over seeds: parity holds where it lies inside that interval or within 1 point.

    python -m bench.parity --seeds 0,1,2                          # quick grid, fp32 then bf16
    python -m bench.parity --precisions fp32,auto --seeds 0       # the wall-clock target
"""
from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path
from typing import Sequence

from bench import run as bench_run
from bench.cli import OneLineParser, run_command
from bench.cli.arguments import add_common, select_cells
from bench.config import PRECISIONS
from bench.registry import UsageError
from bench.store import ResultStore
from bench.store.records import record_precision

TOLERANCE_POINTS = 1.0


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m bench.parity", description=__doc__.split("\n\n")[0])
    add_common(p)
    p.set_defaults(results="results/parity")
    p.add_argument("--precisions", default="fp32,bf16",
                   help="two precisions, the reference first (default: fp32,bf16)")
    p.add_argument("--data-root", metavar="DIR")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, metavar="N",
                   help="intra-op threads of both runs, as bench.run --threads (one, beside a "
                        "background study, keeps the other core free)")
    return p


def interval95(values: Sequence[float]) -> tuple[float, float]:
    """(mean, half-width) of the two-sided 95 % Student-t interval (bench.report.stats.t_interval, the
    report's); half-width nan for one value."""
    from bench.report.stats import t_interval  # deferred: pandas and scipy; --help needs neither

    low, high = t_interval(values)
    return statistics.fmean(values), (high - low) / 2


def parity_table(ref: dict[tuple[str, float], list[float]], other: dict[tuple[str, float], list[float]],
                 names: tuple[str, str]) -> tuple[str, bool]:
    """Markdown rows (accuracies in %) and whether parity holds for every cell present in both."""
    lines = [f"| row | sparsity | {names[0]} mean ± 95 % CI (n) | {names[1]} mean (n) | "
             f"difference (pt) | holds |", "|---|---|---|---|---|---|"]
    ok = True
    for key in sorted(set(ref) | set(other)):
        a, b = ref.get(key, []), other.get(key, [])
        if not a or not b:
            lines.append(f"| {key[0]} | {key[1]:g} | {len(a)} runs | {len(b)} runs | — | missing |")
            ok = False
            continue
        mean_a, half = interval95(a)
        mean_b = statistics.fmean(b)
        diff = mean_b - mean_a
        holds = abs(diff) <= TOLERANCE_POINTS or (not math.isnan(half) and abs(diff) <= half)
        ok &= holds
        lines.append(f"| {key[0]} | {key[1]:g} | {mean_a:.2f} ± {half:.2f} ({len(a)}) | "
                     f"{mean_b:.2f} ({len(b)}) | {diff:+.2f} | {'yes' if holds else 'NO'} |")
    return "\n".join(lines), ok


def accuracies(store_dir: Path, ids: Sequence[str]) -> dict[tuple[str, float], list[float]]:
    frame = ResultStore(store_dir).frame(ids)
    out: dict[tuple[str, float], list[float]] = {}
    for _, r in frame[frame["status"] == "ok"].iterrows():
        out.setdefault((r["label"], float(r["sparsity"])), []).append(100.0 * r["test_acc"])
    return out


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(_main, build_parser().parse_args(argv))


def _main(args: argparse.Namespace) -> int:
    precisions = [p.strip() for p in args.precisions.split(",")]
    if len(precisions) != 2 or not set(precisions) <= set(PRECISIONS) or \
            precisions[0] == precisions[1]:
        raise UsageError(f"--precisions {args.precisions!r} is invalid; give two different of "
                         f"{', '.join(PRECISIONS)}, the reference first")
    passthrough: list[str] = ["--grid", args.grid, "--no-progress", "--no-checkpoints",
                              "--device", args.device]
    for flag in ("methods", "datasets", "sparsities", "seeds", "temperatures", "data_root"):
        value = getattr(args, flag)
        if value is not None:
            passthrough += [f"--{flag.replace('_', '-')}", value]
    if args.threads is not None:
        passthrough += ["--threads", str(args.threads)]
    for item in args.set:
        passthrough += ["--set", item]
    for plugin in args.plugin:
        passthrough += ["--plugin", plugin]
    seconds, tables, resolved = {}, {}, {}
    for prec in precisions:
        out = Path(args.results) / prec
        cmd = [*passthrough, "--precision", prec, "--results", str(out)]
        print(f"# python -m bench.run {' '.join(cmd)}", flush=True)
        t0 = time.perf_counter()
        code = bench_run.main(cmd)
        seconds[prec] = time.perf_counter() - t0
        if code not in (0, 1):
            return code
        ns = bench_run.build_parser().parse_args(cmd)
        _, cells = select_cells(ns)
        tables[prec] = accuracies(out, [c.id for c in cells])
        records, _ = ResultStore(out).load_all([c.id for c in cells])
        resolved[prec] = sorted({record_precision(r) for r in records})
    a, b = precisions
    print(f"\n## Wall-clock: {a} {seconds[a]:.1f} s (resolved: {', '.join(resolved[a])}), "
          f"{b} {seconds[b]:.1f} s (resolved: {', '.join(resolved[b])}); "
          f"{a} / {b} = {seconds[a] / seconds[b]:.2f}x\n")
    text, ok = parity_table(tables[a], tables[b], (a, b))
    print(f"## Accuracy parity ({b} against {a}; holds: inside the 95 % interval or within "
          f"{TOLERANCE_POINTS:g} pt)\n\n{text}\n\nparity {'holds' if ok else 'does NOT hold'} "
          f"for every cell", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
