"""Round-by-round resumable state for iterative methods (COLT, EGP, ...).

An iterative method is a loop of rounds; each round prunes and trains. After every finished round
the method's state (weights, masks, whatever it needs to go on) is written atomically to
`ctx.work_dir / "rounds.pt"` together with the round's record and the `ctx.phases` entries the round
produced. A job killed or preempted between rounds starts again at the first unfinished round, and
the seconds of the rounds it does not redo come from the saved phases, so the record's cost is the
sum of the rounds actually spent (a round cut short by the kill resumes at epoch granularity through
the trainer's own checkpoint; the epoch in flight at the kill is lost and not counted).

    rounds = resume(ctx)
    model.load_state_dict(rounds.payload["model"]) if rounds.payload else ...
    for rnd in rounds:                       # rnd.index: 1, 2, ... (continues after a resume)
        if done(model):
            break
        with ctx.clock(rnd.phase("prune")):
            ...
        ctx.train(model, ctx.phase(rnd.phase("train"), epochs))
        rnd.save({"model": model.state_dict()}, sparsity=..., accuracy=...)

Every phase a round records must be named through `rnd.phase(...)` (or start with `rnd.name`) so
that the round's seconds are its own; `ctx.extra["rounds"]` holds the per-round records and
`ctx.extra["rounds_total"]` their sums.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping

import torch

from bench.store import DamagedFile, atomic_torch_save, safe_torch_load

if TYPE_CHECKING:
    from bench.method import MethodContext

STATE_VERSION = 1
STATE_FILE = "rounds.pt"


@dataclass
class RoundState:
    """What is on disk after each finished round."""

    cell_id: str
    done: int = 0  # rounds finished; the next round has index done + 1
    payload: dict[str, Any] = field(default_factory=dict)  # the method's state (state_dicts, masks)
    records: list[dict[str, Any]] = field(default_factory=list)  # one per finished round
    phases: dict[str, dict[str, Any]] = field(default_factory=dict)  # ctx.phases of those rounds
    torch_rng: torch.Tensor | None = None

    def to_blob(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, "cell_id": self.cell_id, "done": self.done,
                "payload": self.payload, "records": self.records, "phases": self.phases,
                "torch_rng": self.torch_rng}

    @classmethod
    def load(cls, path: Path, cell_id: str) -> "RoundState | None":
        """The saved state (tensors on the CPU; load_state_dict and attach_mask move them), or
        None when there is none or it belongs to another cell or format."""
        if not path.is_file():
            return None
        try:
            blob = safe_torch_load(path)
        except DamagedFile as exc:  # planted or cut: start the rounds again rather than trust it
            logging.getLogger(__name__).warning("%s; the rounds start again", exc)
            return None
        if not isinstance(blob, dict) or blob.get("version") != STATE_VERSION or blob.get("cell_id") != cell_id:
            return None
        return cls(cell_id, blob["done"], blob["payload"], blob["records"], blob["phases"],
                   blob.get("torch_rng"))

    def save(self, path: Path) -> None:
        atomic_torch_save(self.to_blob(), path)


class Round:
    """One round in progress: its index, the phase names it owns, and `save` to finish it."""

    def __init__(self, rounds: "Rounds", index: int):
        self.rounds = rounds
        self.index = index
        self.saved = False
        self._phases_before = set(rounds.ctx.phases)
        self._t0 = time.perf_counter()

    @property
    def name(self) -> str:
        return f"round{self.index}"

    def phase(self, part: str = "") -> str:
        """A phase name owned by this round: 'round3' or 'round3-prune'."""
        return f"{self.name}-{part}" if part else self.name

    def save(self, payload: dict[str, Any], **record: Any) -> dict[str, Any]:
        """Finish the round: write the state atomically; returns the round's record."""
        ctx = self.rounds.ctx
        new = {n: p for n, p in ctx.phases.items()
               if n not in self._phases_before or n == self.name or n.startswith(self.name + "-")}
        rec = {"round": self.index, **record,
               "seconds": sum(p.get("seconds", 0.0) for p in new.values()),
               "seconds_wall": time.perf_counter() - self._t0,
               "phases": sorted(new), "resumed": False}
        state = self.rounds.state
        state.done = self.index
        state.payload = _to_cpu(payload)
        state.records.append(rec)
        state.phases.update({n: dict(p) for n, p in new.items()})
        state.torch_rng = torch.get_rng_state()
        state.save(self.rounds.path)
        self.saved = True
        # The trainer's epoch checkpoints of this round are superseded by the round state.
        # (round_checkpoint names a shared round's by its start: `<phase>-<digest>.pt`)
        for name in new:
            for path in (ctx.work_dir / f"{name}.pt", *ctx.work_dir.glob(f"{name}-*.pt")):
                path.unlink(missing_ok=True)
        self.rounds.publish()
        return rec


class Rounds:
    """The resumable loop: iterating yields Round objects from the first unfinished round on."""

    def __init__(self, ctx: "MethodContext", name: str = STATE_FILE):
        self.ctx = ctx
        self.path = ctx.work_dir / name
        loaded = RoundState.load(self.path, ctx.config.id)
        self.resumed_rounds = loaded.done if loaded else 0
        self.state = loaded or RoundState(ctx.config.id)
        if loaded:
            for rec in self.state.records:
                rec["resumed"] = True
            for phase_name, phase in self.state.phases.items():
                ctx.phases[phase_name] = {**phase, "resumed": True}
            if loaded.torch_rng is not None:
                torch.set_rng_state(loaded.torch_rng)
        self.publish()

    @property
    def payload(self) -> dict[str, Any]:
        """The state saved by the last finished round ({} before the first)."""
        return self.state.payload

    @property
    def done(self) -> int:
        return self.state.done

    def __iter__(self) -> Iterator[Round]:
        index = self.state.done + 1
        while True:
            rnd = Round(self, index)
            yield rnd
            if not rnd.saved:
                raise RuntimeError(f"{rnd.name} ended without Round.save(); a round that does "
                                   f"nothing must break out of the loop instead")
            index += 1

    def publish(self) -> None:
        """Per-round records and their sums into the cell's record (ctx.extra)."""
        records = self.state.records
        self.ctx.extra["rounds"] = records
        self.ctx.extra["rounds_total"] = {
            "count": len(records),
            "seconds": sum(r["seconds"] for r in records),
            "resumed_rounds": self.resumed_rounds,
            "seconds_resumed": sum(r["seconds"] for r in records[:self.resumed_rounds]),
        }


def shared_round(ctx: "MethodContext", kind: str, key: Mapping[str, Any], index: int,
                 compute: Callable[[Path], tuple[dict[str, Any], dict[str, Any]]],
                 share: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
    """Round `index` of a trajectory that every cell with the same `key` follows whatever its
    target (the key holds everything that determines the round but the target sparsity).

    `compute(folder)` runs the round, puts its trainer checkpoints in `folder` (so a killed round
    resumes there) and returns (payload of tensors, meta with meta["phases"] the records of the
    phases it ran). With sharing (ctx.share and `share`) it runs once per key and round across
    cells and processes (bench/store/cache.py: lock, atomic publish), and the phases enter the record
    marked shared, and cached where another cell computed them. Without, it runs in the cell's
    work folder and the phases are the cell's own. Either way the global RNG continues from the
    state after the round, so sharing never changes a result."""
    def run(folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
        payload, meta = compute(folder)
        return {**payload, "torch_rng": torch.get_rng_state()}, meta

    if share and getattr(ctx, "share", True):
        entry = ctx.cached_phase(kind, {**key, "round": index}, run)
        payload, meta = entry.payload, entry.meta
    else:
        payload, meta = run(ctx.work_dir)
        for name, rec in meta.get("phases", {}).items():
            ctx.phases[name] = {**rec, "cached": False, "shared": False}
    torch.set_rng_state(payload["torch_rng"])
    return payload, meta


def round_checkpoint(folder: Path, phase: str, start: str) -> Path:
    """Where a shared round keeps a phase's epoch checkpoints: named by the state the round
    starts from, so a cell resumes only a killed run that started where it starts, never
    another cell's partial round under a key that missed a field."""
    return folder / f"{phase}-{start}.pt"


def state_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """A short content hash of a mask or state: a shared round checks that the state it starts
    from is the one the cell holds (a mismatch is a bug, never silently another trajectory)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        h.update(name.encode())
        h.update(tensors[name].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def check_start(meta: Mapping[str, Any], digest: str, what: str) -> None:
    if meta.get("start") != digest:
        raise RuntimeError(f"{what}: the shared round starts from state {meta.get('start')}, "
                           f"this cell holds {digest}; its cache key misses a field")


def timed(phases: dict[str, dict[str, Any]], name: str, sync: Callable[[], None]):
    """A context manager that records a non-training step's seconds in `phases[name]` (what
    CellContext.clock does for ctx.phases, for a round computed in a shared entry)."""
    @contextlib.contextmanager
    def clock():
        sync()
        t0 = time.perf_counter()
        yield
        sync()
        phases[name] = {"epochs": 0, "seconds": time.perf_counter() - t0}
    return clock()


def resume(ctx: "MethodContext", name: str = STATE_FILE) -> Rounds:
    """The cell's round loop, continuing from `ctx.work_dir/name` when a finished round is saved."""
    ctx.work_dir.mkdir(parents=True, exist_ok=True)
    return Rounds(ctx, name)


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().clone()
    if isinstance(obj, Mapping):  # a bench.masks.Mask too: saved as a plain dict of tensors
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj
