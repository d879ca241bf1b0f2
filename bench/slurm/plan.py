"""A Slurm sweep as a graph of jobs: shared phases first, as jobs of their own, then the cells,
each depending on the phases it needs (`--dependency=afterok:...`), so no allocation idles on a
phase lock while another job trains the teacher.

The graph is a pure function of the cells and of what the cache already holds (`make_plan`); it
reads each method's declared phases (register_method(cost=...), bench/plan/estimate.py), whose keys are
the cache's own (bench/plan/phase_keys.py), so the plan cannot drift from what the cells will compute.

- A shared phase (teacher, teacher-guided student, dense network) not in the cache is one job,
  run by the first cell that needs it, stopped right after that phase (`bench.exec.cell.prefetch`).
  It depends on the phases before it in that cell (the student on the teacher).
- The round prefixes of one COLT or EGP trajectory (same seed and budgets, any target) are one
  job: the trajectory's deepest cell computes every shared round, and stops there.
- A cell depends on every phase job of its own chain; cells whose phases are all cached have no
  dependency and start at once.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable, Sequence

from bench.config import RunConfig
from bench.plan.estimate import PhaseCost, cell_phases


@dataclass(frozen=True)
class PhaseJob:
    """One shared phase (or one trajectory of rounds) to compute before the cells that need it."""

    id: str  # short, stable: names the job and its status file
    name: str  # "teacher", "student", "dense", "colt rounds 1-25", ...
    cell: RunConfig  # the cell that computes it (stopped after `stop`)
    stop: tuple  # the cache key after which that cell stops
    after: tuple[str, ...]  # ids of the phase jobs it needs first
    work: float  # ResNet-18-CIFAR image equivalents (bench/plan/estimate.py)


@dataclass(frozen=True)
class Plan:
    phases: list[PhaseJob]  # in an order where every job comes after those it needs
    cells: list[tuple[RunConfig, tuple[str, ...]]]  # each cell and the phase jobs it waits for
    cell_work: dict[str, float] = field(default_factory=dict)  # cell id -> its own work

    def levels(self) -> list[list[PhaseJob]]:
        """Phase jobs by depth: level 0 needs nothing, level 1 needs level 0, ..."""
        depth: dict[str, int] = {}
        for job in self.phases:
            depth[job.id] = 1 + max((depth[a] for a in job.after), default=-1)
        out: list[list[PhaseJob]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
        for job in self.phases:
            out[depth[job.id]].append(job)
        return out

    def cell_groups(self) -> dict[tuple[str, ...], list[RunConfig]]:
        """Cells by the phase jobs they wait for: one job array per group."""
        groups: dict[tuple[str, ...], list[RunConfig]] = {}
        for cell, after in self.cells:
            groups.setdefault(after, []).append(cell)
        return groups


def job_id(key: tuple) -> str:
    return hashlib.sha256(repr(key).encode()).hexdigest()[:10]


def _own(phase: PhaseCost, share: bool) -> bool:
    """Work the cell's own job does: its own phases, a matched cell's (it runs that cell
    itself), and without `share` (--no-share) its rounds."""
    return phase.key is None or phase.key[0] == "cell" or bool(phase.prefix and not share)


def _chain(phases: list[PhaseCost], share: bool) -> list[tuple[tuple, list[PhaseCost]]]:
    """A cell's shared phases in the order it runs them, a trajectory's rounds folded into one
    node: [(node key, [phases])]."""
    out: list[tuple[tuple, list[PhaseCost]]] = []
    seen: set[tuple] = set()
    for phase in phases:
        # a matched cell's shared phases are the cell's own too (random:match=... lists both)
        if _own(phase, share) or phase.key in seen:
            continue
        seen.add(phase.key)
        node = ("trajectory", phase.prefix) if phase.prefix else phase.key
        if out and out[-1][0] == node:
            out[-1][1].append(phase)
        else:
            out.append((node, [phase]))
    return out


def _without_match(cell: RunConfig) -> RunConfig:
    """A cell that copies another's mask (random:match=...) would run that whole cell inside a
    phase job; without the option it computes the same shared phases and nothing else."""
    options = dict(cell.options)
    if "match" not in options:
        return cell
    options.pop("match")
    return cell.replace(options=options)


def make_plan(cells: Sequence[RunConfig], is_cached: Callable[[tuple], bool],
              share: bool = True, is_done: Callable[[str], bool] = lambda cell_id: False) -> Plan:
    """`is_cached(key)`: whether the cache holds the phase with that estimate key
    (bench.plan.estimate.shared). A trajectory counts as cached when its deepest round is.
    `is_done(cell id)`: whether a matched cell (random:match=...) has its record already, so
    the cell that copies its mask does not run it: its work is then not the cell's own."""
    phases_of = {c.id: cell_phases(c) for c in cells}
    chains = {c.id: _chain(phases_of[c.id], share) for c in cells}
    # A trajectory node is computed by its deepest cell: the one with the most shared rounds.
    deepest: dict[tuple, tuple[RunConfig, list[PhaseCost]]] = {}
    for cell in cells:
        for node, phases in chains[cell.id]:
            if node[0] == "trajectory" and len(phases) > len(deepest.get(node, (None, []))[1]):
                deepest[node] = (cell, phases)
    jobs: dict[tuple, PhaseJob] = {}
    order: list[PhaseJob] = []
    needs: dict[str, tuple[str, ...]] = {}
    # cells that copy another's mask come last: the others own the phase jobs where they can
    for cell in sorted(cells, key=lambda c: bool(c.option_dict.get("match"))):
        needed: list[str] = []
        before: list[str] = []
        for node, phases in chains[cell.id]:
            if node[0] == "trajectory":
                owner, phases = deepest[node]
            else:
                owner = _without_match(cell)
            last = phases[-1].key
            if is_cached(last):
                continue
            if node not in jobs:
                name = phases[0].name if len(phases) == 1 else \
                    f"{owner.method} rounds {phases[0].name[5:]}-{phases[-1].name[5:]}"
                after = () if phases[0].after == () else tuple(before)
                job = PhaseJob(job_id(node), name, owner, last, after,
                               sum(p.work for p in phases))
                jobs[node] = job
                order.append(job)
            needed.append(jobs[node].id)
            before = [jobs[node].id]
        needs[cell.id] = tuple(dict.fromkeys(needed))
    cell_after = [(cell, needs[cell.id]) for cell in cells]
    cell_work = {cell.id: sum(p.work for p in phases_of[cell.id] if _own(p, share) and not (
        p.key and p.key[0] == "cell" and is_done(p.key[1]))) for cell in cells}
    return Plan(order, cell_after, cell_work)
