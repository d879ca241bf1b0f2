"""`python -m bench.report`: the paper's tables and figures from a results store.

Writes, under --out (default <results>/report/<grid>): per dataset an accuracy table (Markdown,
CSV, LaTeX; best mean per column in bold; 95 % intervals and marks against a reference row from
three seeds on), accuracy-vs-sparsity curves, accuracy against compression and
multiply-accumulates, and a radar plot (PNG); top-5 accuracy, calibration error and test NLL; the
per-layer sparsity of every row at one sparsity (--layer-sparsity); paired comparisons against the reference
(--against, default tg-oneshot-kd); average ranks, a Friedman test and a critical-difference
diagram; off-target cells; a wall-clock table with each phase's share; the one-shot vs COLT time
ratio; the temperature ablation; our numbers beside the paper's printed ones
(results/paper/reported.csv); and all of it in report.md and index.html. Missing, failed and
corrupt cells are shown as such, never as numbers.

Modules (bench/report/): data (loading and numbers), derived (the frames derived from them),
sections (one function per section), controls and claims (their sections), writer (Markdown and
HTML from the same sections), tables, plots, stats.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Sequence

from bench.cli import OneLineParser, run_command
from bench.cli.arguments import add_common, select_cells
from bench.config import CHECKPOINT_FIELDS
from bench.registry import UsageError
from bench.report import controls, sections
from bench.report.claims_section import claims_section
from bench.report.data import REFERENCE, REPORTED_CSV, ReportData, from_report, load_report_data
from bench.report.references import references_section
from bench.report.sections import safe_name
from bench.report.writer import Report, Section, write_report
from bench.store import ResultStore


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m bench.report", description=__doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common(p)
    p.add_argument("--out", metavar="DIR", help="report folder (default: <results>/report/<grid>)")
    p.add_argument("--reported", metavar="CSV", default=None,
                   help=f"the paper's printed numbers (default: {REPORTED_CSV})")
    p.add_argument("--against", metavar="LABEL", default=None,
                   help=f"the row every other row is paired against (default: {REFERENCE})")
    p.add_argument("--records", metavar="CSV", default=None,
                   help="make the report from a study's published records.csv (with phases.csv "
                        "and curves.csv beside it) instead of a results store")
    p.add_argument("--layer-sparsity", metavar="S", type=float, default=None,
                   help="sparsity of the per-layer figure (default: the grid's nearest 0.9)")
    return p


def report_sections(data: ReportData, layer_sparsity: float | None = None) -> list[Section]:
    """The report, in reading order."""
    out = [sections.header(data, data.store_root)]
    for dataset in data.datasets:
        out += [sections.accuracy(data, dataset), controls.metrics_section(data, dataset),
                controls.layer_section(data, dataset, layer_sparsity)]
    out += [claims_section(data), sections.comparisons(data), sections.ranking(data),
            sections.off_target(data),
            sections.failures(data), *sections.wallclock(data), *sections.temperature(data),
            sections.against_paper(data), references_section(data)]
    return out


def build_report(grid, cells, store, out: str | Path, reported_path: str | Path | None = None,
                 against: str | None = None, layer_sparsity: float | None = None,
                 command: str = "") -> Report:
    data = load_report_data(grid, cells, store, reported_path, against, report_dir=out)
    data.command = command
    return write_report(report_sections(data, layer_sparsity), Path(out),
                        f"Report: grid {grid.name}")


# --- command line ---------------------------------------------------------------------------------


PATH_FLAGS = ("--results", "--out", "--reported", "--data-root", "--plugin", "--grid",
              "--records")  # when a file


def portable_command(argv: Sequence[str], report_dir: str | Path) -> str:
    """This command as it runs from the report folder: path arguments relative to it, so a
    shared report names no absolute path of this machine."""
    out, i, argv = [], 0, list(argv)
    if "--out" not in argv and not any(a.startswith("--out=") for a in argv):
        argv += ["--out", str(report_dir)]
    while i < len(argv):
        arg = argv[i]
        flag, eq, value = arg.partition("=")
        if flag in PATH_FLAGS and eq and Path(value).exists():
            out.append(f"{flag}={from_report(value, report_dir)}")
        elif arg in PATH_FLAGS and i + 1 < len(argv) and (arg == "--out" or Path(argv[i + 1]).exists()):
            out += [arg, from_report(argv[i + 1], report_dir)]
            i += 1
        elif arg == "--set" and i + 1 < len(argv):  # a loaded checkpoint is a path too
            field, eq, value = argv[i + 1].partition("=")
            if field.strip() in CHECKPOINT_FIELDS and eq and Path(value).exists():
                value = from_report(value, report_dir)
            out += [arg, f"{field}{eq}{value}"]
            i += 1
        else:
            out.append(arg)
        i += 1
    return "python -m bench.report " + shlex.join(out)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return run_command(_main, args)


def _main(args: argparse.Namespace) -> int:
    if args.records:
        return _published(args)
    results = Path(args.results)
    if not results.is_dir():
        raise UsageError(f"results directory {str(results)!r} does not exist; run "
                         f"`python -m bench.run --results {results}` first")
    grid, cells = select_cells(args)
    out = Path(args.out) if args.out else results / "report" / safe_name(grid.name)
    command = portable_command(getattr(args, "argv", []), out)
    report = build_report(grid, cells, ResultStore(results), out, args.reported, args.against,
                          args.layer_sparsity, command)
    print(report.markdown)
    print(f"report: {out / 'report.md'} and {out / 'index.html'} ({len(report.files)} files)")
    return 0


def _published(args: argparse.Namespace) -> int:
    from bench.report.published import load_published

    grid, _ = select_cells(args)  # the grid's name and declared gates
    out = Path(args.out) if args.out else Path(args.records).parent
    data = load_published(args.records, grid, args.reported, args.against, report_dir=out)
    data.command = portable_command(getattr(args, "argv", []), out)
    report = write_report(report_sections(data, args.layer_sparsity), out,
                          f"Report: grid {grid.name}")
    print(f"report: {out / 'report.md'} and {out / 'index.html'} ({len(report.files)} files)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
