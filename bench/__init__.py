"""prunebench: a benchmark harness for neural-network pruning methods.

The packages follow the data flow: plan/ (grids, cost, phase identity) -> exec/ and slurm/
(dispatch, the cell) -> method/, train/, data/, masks/ (what a cell runs) -> store/ (records,
cache) -> report/. The command lines are run, status, parity, report/ and perf/.

Before issue 31 the modules lay side by side in bench/; their old names still import, for plugins
and scripts written against them: `MOVED` maps each old name to its new home, and a finder on
sys.meta_path hands out the new module itself, so `bench.losses is bench.train.losses`.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys

MOVED = {
    "bench.arguments": "bench.cli.arguments",
    "bench.guards": "bench.cli.guards",
    "bench.cache": "bench.store.cache",
    "bench.cell": "bench.exec.cell",
    "bench.checkpoints": "bench.exec.checkpoints",
    "bench.dispatch": "bench.exec.dispatch",
    "bench.locked": "bench.exec.locked",
    "bench.provenance": "bench.exec.provenance",
    "bench.decoded": "bench.data.decoded",
    "bench.folders": "bench.data.folders",
    "bench.loader": "bench.data.loader",
    "bench.estimate": "bench.plan.estimate",
    "bench.grids": "bench.plan.grids",
    "bench.phase_keys": "bench.plan.phase_keys",
    "bench.flops": "bench.train.flops",
    "bench.importance": "bench.train.importance",
    "bench.losses": "bench.train.losses",
    "bench.metrics": "bench.train.metrics",
    "bench.metrics_log": "bench.train.metrics_log",
    "bench.models": "bench.train.models",
    "bench.precision": "bench.train.precision",
    "bench.progress": "bench.train.progress",
    "bench.saliency": "bench.train.saliency",
    "bench.trainer": "bench.train.trainer",
    "bench.rounds": "bench.method.rounds",
    "bench.claims": "bench.report.claims",
    "bench.plots": "bench.report.plots",
    "bench.profile": "bench.report.phase_times",
    "bench.report_controls": "bench.report.controls",
    "bench.report_data": "bench.report.data",
    "bench.report_sections": "bench.report.sections",
    "bench.report_writer": "bench.report.writer",
    "bench.stats": "bench.report.stats",
    "bench.tables": "bench.report.tables",
    "bench.perf_observe": "bench.perf.observe",
    "bench.perf_precision": "bench.perf.precision",
    "bench.perf_sharing": "bench.perf.sharing",
    "bench.perf_timing": "bench.perf.timing",
    "bench.thresholds": "bench.plan.thresholds",
    "bench.gates": "bench.report.gates",
    "bench.ledger": "bench.report.ledger",
    "bench.claims_report": "bench.report.claims_section",
    "bench.published": "bench.report.published",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports an old name as the module at its new name (one object under both names)."""

    def __init__(self) -> None:
        self._specs: dict[str, importlib.machinery.ModuleSpec] = {}

    def find_spec(self, fullname: str, path=None, target=None):
        if fullname not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec):
        module = importlib.import_module(MOVED[spec.name])
        self._specs[spec.name] = module.__spec__  # the import system sets the old name's next
        return module

    def exec_module(self, module) -> None:
        # module.__spec__ is the old name's now: give the module back its own name and file
        module.__spec__ = self._specs.pop(module.__spec__.name)


if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
    sys.meta_path.insert(0, _MovedModules())
