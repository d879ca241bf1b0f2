"""`python -m bench.accept`: prove the GPU path in one command (at most about 8 minutes on one
modern GPU) and write summary.md and summary.json. Sections: 1 machine, 2 every registered method
(one cell each, checked, interrupted and resumed), 3 speed against a bare loop and torchvision,
4 packing several training processes on the device, 5 host memory of a CIFAR cell, 6 (with
--reference) the resnet20 row of the renda2020 grid. Exit code 0 when every method passed and every
section ran, 1 otherwise, 2 for bad input. docs/gpu-acceptance.md says how to read the output."""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from bench import catalog
from bench.accept import machine
from bench.accept.budgets import FULL, TINY, Budget
from bench.accept.data import cifar_folder, prepare
from bench.accept.memory import memory_section
from bench.accept.method_checks import run_methods
from bench.accept.packing import packing_section
from bench.accept.reference import reference_section
from bench.accept.speed import MODELS as SPEED_MODELS, speed_section
from bench.accept.summary import Report, plural, write_summary
from bench.cli import OneLineParser, guards, run_command
from bench.cli.arguments import split_list
from bench.exec.cell import RunOptions
from bench.exec.provenance import provenance
from bench.plugins import load_builtins
from bench.registry import UsageError

SECTIONS = ("machine", "methods", "speed", "packing", "memory", "reference")
TITLES = {"machine": "Machine", "methods": "Methods", "speed": "Speed", "packing": "Packing",
          "memory": "Host memory", "reference": "Reference (--reference)"}


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m bench.accept", description=__doc__)
    p.add_argument("--device", choices=("cpu", "cuda"),
                   help="where to run (default: cuda if available, else cpu)")
    p.add_argument("--tiny", action="store_true",
                   help="a smoke run of a few seconds a method (the test suite's, on a CPU)")
    p.add_argument("--out", metavar="DIR",
                   help="where summary.md and summary.json go (default: "
                        "results/accept/<device-name>/)")
    p.add_argument("--data-root", metavar="DIR",
                   help="a folder holding CIFAR-10's official python release "
                        "(cifar-10-batches-py/); without it, files in that layout are generated")
    p.add_argument("--only", metavar="SECTIONS",
                   help=f"comma list of sections to run: {', '.join(SECTIONS)} (default: all; "
                        "reference only with --reference or when named here)")
    p.add_argument("--methods", metavar="NAMES",
                   help="section 2: only these registered methods (default: every one)")
    p.add_argument("--reference", action="store_true",
                   help="also run the resnet20 row of the renda2020 grid (needs --data-root)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


@dataclass(frozen=True)
class Plan:
    device: str
    device_name: str
    budget: Budget
    tiny: bool
    out: Path
    cifar: Path | None  # the official files under --data-root, when it has them
    data_note: str
    sections: tuple[str, ...]
    methods: tuple[str, ...]
    progress: bool
    data_root: str | None


def make_plan(args: argparse.Namespace) -> Plan:
    """Every input checked before anything runs: a bad value is one line and exit code 2."""
    load_builtins()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: CUDA is not available on this machine; valid here: cpu")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    sections = tuple(split_list(args.only) or SECTIONS)
    for name in sections:
        if name not in SECTIONS:
            raise UsageError(f"--only {name!r} is invalid; valid: {', '.join(SECTIONS)}")
    if not args.reference and args.only is None:
        sections = tuple(s for s in sections if s != "reference")
    wanted = split_list(args.methods) or []
    for method in wanted:
        catalog.METHODS.get(method)  # an unknown name: one line listing the valid ones
    methods = tuple(dict.fromkeys(catalog.METHODS.canonical(m) for m in wanted)) or \
        tuple(catalog.METHODS)
    name = machine.device_name(device)
    out = Path(args.out).expanduser() if args.out else Path("results/accept") / machine.slug(name)
    guards.check_results_dir(out)
    cifar = cifar_folder(args.data_root)
    note = "" if args.data_root is None or cifar else \
        f"--data-root {args.data_root} holds no CIFAR-10 (cifar-10-batches-py/): images generated"
    return Plan(device, name, TINY if args.tiny else FULL, args.tiny, out, cifar, note, sections,
                methods, not args.no_progress, args.data_root)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for the summary
    return guards.run_guarded(run_command, _main, args)


def _main(args: argparse.Namespace) -> int:
    plan = make_plan(args)
    if plan.device == "cuda":  # before cuBLAS starts: its deterministic workspace (section 2)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    report, t0 = Report(), time.perf_counter()
    data: dict[str, Any] = {"device": plan.device, "device_name": plan.device_name,
                            "tiny": plan.tiny,
                            "command": ["python", "-m", "bench.accept", *args.argv],
                            "git_commit": provenance(torch.device(plan.device))["git_commit"],
                            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    report.emit(f"# prunebench acceptance on {plan.device_name} ({plan.device}"
                f"{', --tiny' if plan.tiny else ''}), {data['started']}, commit "
                f"{data['git_commit']}")
    interrupted = False
    with tempfile.TemporaryDirectory(prefix="bench-accept-") as tmp:
        try:
            for number, key in enumerate(SECTIONS, start=1):
                report.heading(number, TITLES[key])
                if key not in plan.sections:
                    why = "not requested (--reference)" if key == "reference" else "--only"
                    report.emit(f"skipped: {why}")
                    data[key] = {"skipped": why}
                    continue
                started = time.perf_counter()
                data[key] = {}  # filled as the section goes: an interrupted one keeps its part
                data[key].update(run_section(key, plan, report, Path(tmp), data[key]))
                data[key]["seconds"] = round(time.perf_counter() - started, 1)
        except KeyboardInterrupt:
            interrupted = True
            report.emit("\ninterrupted: the summary holds the sections that finished")
        failed = [k for k in SECTIONS if isinstance(data.get(k), dict)
                  and (data[k].get("errors") or data[k].get("failed"))]
        data.update(seconds=round(time.perf_counter() - t0, 1), failed_sections=failed,
                    interrupted=interrupted, passed=not failed and not interrupted)
        verdict = "PASS" if data["passed"] else \
            "FAIL (" + ", ".join(failed + (["interrupted"] if interrupted else [])) + ")"
        report.emit(f"\n**{verdict}** in {data['seconds']:.0f} s")
        write_summary(plan.out, report, data)
    print(f"summary: {plan.out / 'summary.md'}, {plan.out / 'summary.json'}")
    return 130 if interrupted else 0 if data["passed"] else 1


def run_section(key: str, plan: Plan, report: Report, tmp: Path,
                partial: dict[str, Any]) -> dict[str, Any]:
    budget = plan.budget
    if key == "machine":
        models = dict.fromkeys([m for pair in budget.models for m in pair] + list(SPEED_MODELS))
        facts = machine.facts(plan.device, tuple(models))
        for line in machine.lines(facts):
            report.emit(line)
        source = f"the first images of {plan.cifar}" if plan.cifar else "generated"
        report.emit(f"\nData: CIFAR-10 in the official layout, {source}"
                    + (f" ({plan.data_note})" if plan.data_note else "") + ".")
        return {**facts, "data_note": plan.data_note}
    if key == "methods":
        root = tmp / "cifar-small"
        source = prepare(root, budget.train_images, budget.test_images, plan.cifar)
        report.emit(f"One cell each on CIFAR-10 in the official layout ({budget.train_images} "
                    f"training, {budget.test_images} test images; {source}), batch "
                    f"{budget.batch_size}, {', '.join(f'{k} {v}' for k, v in budget.epochs)}, "
                    "precision auto.\n")
        options = RunOptions(device=plan.device, data_root=str(root), progress=False)
        partial.update(data=source, rows=[])

        def done(result) -> None:
            report.emit(result.line())
            partial["rows"].append(result.row())

        results = run_methods(plan.methods, budget, tmp / "methods", options, done,
                              plan.progress, partial)
        failed = [r.method for r in results if not r.passed]
        report.emit(f"\n{plural(len(results), 'method')}: {len(results) - len(failed)} PASS, "
                    f"{len(failed)} FAIL" + (f" ({', '.join(failed)})" if failed else ""))
        return {"failed": failed}
    if key == "speed":
        return speed_section(report, plan.device, plan.device_name, budget, plan.tiny)
    if key == "packing":
        return packing_section(report, plan.device, budget)
    if key == "memory":
        if plan.cifar:
            root, source = plan.data_root, f"the release under {plan.data_root}"
        else:
            root = str(tmp / "cifar-full")
            source = prepare(Path(root), budget.memory_train_images, budget.memory_test_images,
                             None)
        return memory_section(report, plan.device, budget, Path(root), source, tmp / "memory")
    return reference_section(report, plan.device, plan.data_root if plan.cifar else None,
                             plan.out, plan.progress)
