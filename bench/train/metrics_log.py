"""Per-epoch metrics while a cell runs: JSON lines in its work folder, and TensorBoard if asked.

`MetricsLog` is a trainer observer (`Trainer(observers=...)`): the trainer adds it to every fit,
so the phases that methods and cached computations train with `trainer.fit` directly are logged
without any method opting in. Each finished epoch appends one line to
`<results>/work/<cell id>/metrics.jsonl` (opened, appended and closed per line, so a reader on
another node of a shared file system sees every finished epoch):

    {"event": "cell", "id", "label", "host", "pid", "slurm_job_id", "time"}   a run of the cell starts
    {"event": "phase", "phase", "epochs", "start_epoch", "shared", "time"}   a fit starts (or resumes)
    {"event": "epoch", "phase", "epoch", "epochs", "train_loss", "lr", "val_acc", "seconds",
     "images", "images_per_s", "shared", "time"[, "sparsity": {"prunable", "overall", "layers"}]}
    {"event": "end", "status", "time"}                                       the cell's record is written

`shared` is the cache kind (e.g. "dense-ce") for a phase computed inside `cached_phase`: such a
phase runs in the cache's scratch folder, but its lines go to the file of the cell computing it,
where `bench.status` looks. A killed and resumed phase appends a new "phase" line with its
`start_epoch`; lines are written after the epoch's checkpoint, so no epoch is logged twice.
`bench/train/progress.py` reads the file (without importing torch). The work folder, and this file
with it, is removed when the cell finishes ok: the record keeps the histories, `--tensorboard`
keeps the curves.
"""
from __future__ import annotations

import contextlib
import contextvars
import errno
import json
import logging
import os
import re
import socket
import time
from pathlib import Path
from typing import Any, Iterator

import torch

from bench.masks import get_mask
from bench.train.progress import METRICS_FILE
from bench.registry import UsageError
from bench.store import StorageFull
from bench.train.trainer import Hook, PhaseResult, TrainState

log = logging.getLogger(__name__)
# TensorBoard events are handed to SummaryWriter's thread at most every TB_FLUSH_S seconds (and
# at a phase's end), not every epoch: each hand-off waits for that thread to be scheduled and
# take the GIL, milliseconds on a busy machine, which is more than a short epoch's 1 %. The JSON
# lines, which bench.status reads, are written every epoch.
TB_FLUSH_S = 10.0
_SHARED: contextvars.ContextVar[str | None] = contextvars.ContextVar("shared_phase", default=None)


@contextlib.contextmanager
def shared_phase(kind: str) -> Iterator[None]:
    """Phases trained inside this block are marked shared (`kind`: the cache entry's kind)."""
    token = _SHARED.set(kind)
    try:
        yield
    finally:
        _SHARED.reset(token)


def require_tensorboard() -> None:
    """`--tensorboard` needs the optional tensorboard package: a one-line error without it."""
    try:
        # deferred: an optional package (the [tb] extra), ~2 s of start-up
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise UsageError("--tensorboard needs the tensorboard package: "
                         "pip install -e '.[tb]' (or pip install tensorboard)") from None


def run_name(config: Any) -> str:
    """A cell's TensorBoard run: its label, dataset, sparsity and seed to read, its id to be
    unique (the same id as its record)."""
    text = f"{config.label}_{config.dataset}_s{config.sparsity:g}_seed{config.seed}_{config.id}"
    return re.sub(r"[^A-Za-z0-9._=+-]", "-", text)


class _Fit:
    """What one fit being observed needs between its hook calls."""

    def __init__(self, state: TrainState, shared: str | None, writer: Any):
        self.shared = shared
        self.writer = writer
        self.t0 = time.perf_counter()
        self.images = 0
        self.layers_logged = False
        self.pending: list[tuple[Any, int]] = []  # TensorBoard summaries not yet handed over
        self.handed = time.perf_counter()
        self.overall: float | None = None
        mask = get_mask(state.model)  # fixed during a fit: counted once, not every epoch
        self.layers = {n: 1.0 - k / max(1, t) for n, (k, t) in mask.layer_counts().items()} \
            if mask is not None else None
        self.prunable = mask.sparsity if mask is not None else None


class MetricsLog(Hook):
    def __init__(self, path: Path, cell: dict[str, Any] | None = None,
                 tensorboard: Path | None = None):
        """`path`: the JSON-lines file; `cell`: fields of the "cell" line (id, label);
        `tensorboard`: the folder of this cell's event files (one subfolder per phase)."""
        self.path = Path(path)
        self.cell = dict(cell or {})
        self.tensorboard = Path(tensorboard) if tensorboard is not None else None
        self._fits: dict[int, _Fit] = {}
        self._writers: list[Any] = []
        self._checked_tail = False
        self._broken = False

    # -- the cell's own lines -------------------------------------------------------------------
    def cell_started(self) -> None:
        self.write({"event": "cell", **self.cell, "host": socket.gethostname(),
                    "pid": os.getpid(), "slurm_job_id": os.environ.get("SLURM_JOB_ID")})

    def cell_ended(self, status: str) -> None:
        if self._checked_tail:  # only after a start: a cell that failed its precheck has none
            self.write({"event": "end", "status": status})
        self.close()

    def close(self) -> None:
        for fit in self._fits.values():  # a phase that ended early (the cell failed)
            self._hand_over(fit)
        for writer in list(self._writers):
            self._close_writer(writer)
        self._fits.clear()

    def _close_writer(self, writer: Any) -> None:
        with contextlib.suppress(Exception):
            writer.close()
        if writer in self._writers:
            self._writers.remove(writer)

    # -- hooks ----------------------------------------------------------------------------------
    def on_phase_start(self, state: TrainState) -> None:
        shared = _SHARED.get()
        phase = state.phase
        writer = self._writer(phase.name, state.epoch)
        self._fits[id(state)] = _Fit(state, shared, writer)
        self.write({"event": "phase", "phase": phase.name, "epochs": phase.epochs,
                    "start_epoch": state.epoch, "shared": shared})

    def on_epoch_start(self, state: TrainState) -> None:
        fit = self._fits.get(id(state))
        if fit is not None:
            fit.t0, fit.images = time.perf_counter(), 0

    def after_step(self, state: TrainState) -> None:
        fit = self._fits.get(id(state))
        if fit is not None and state.batch is not None:
            fit.images += state.batch.y.shape[0]

    def on_epoch_done(self, state: TrainState, result: PhaseResult) -> None:
        fit = self._fits.get(id(state))
        if fit is None:
            return
        seconds = time.perf_counter() - fit.t0  # training, validation and the checkpoint
        epoch, phase = state.epoch + 1, state.phase
        line: dict[str, Any] = {
            "event": "epoch", "phase": phase.name, "epoch": epoch, "epochs": phase.epochs,
            "train_loss": result.train_loss[-1] if result.train_loss else None,
            "lr": state.optimizer.param_groups[0]["lr"],
            "val_acc": result.val_acc[-1] if result.val_acc else None,
            "seconds": seconds, "images": fit.images,
            "images_per_s": fit.images / seconds if seconds > 0 else None, "shared": fit.shared}
        if fit.layers is not None:
            if fit.overall is None:  # after the first epoch the mask is enforced; it is fixed
                fit.overall = _overall(state.model)
            line["sparsity"] = {"prunable": fit.prunable, "overall": fit.overall,
                                "layers": fit.layers}
        self.write(line)
        if fit.writer is not None:
            fit.pending.append((self._summary(fit, line), epoch))
            if epoch >= phase.epochs or time.perf_counter() - fit.handed >= TB_FLUSH_S:
                self._hand_over(fit)
        if epoch >= phase.epochs:  # the phase is over: its writer's thread need not wait
            self._fits.pop(id(state), None)
            if fit.writer is not None:
                self._close_writer(fit.writer)

    # -- output ---------------------------------------------------------------------------------
    def write(self, line: dict[str, Any]) -> None:
        """Append one line and close the file (a reader elsewhere sees whole epochs). A full
        disk stops the run as everywhere else; any other failure is logged once and the cell
        goes on unobserved rather than failing."""
        if self._broken:
            return
        text = json.dumps({**line, "time": time.time()}, default=str) + "\n"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a+b") as fh:
                if not self._checked_tail:  # a run killed mid-line: start on a fresh line
                    self._checked_tail = True
                    if fh.seek(0, os.SEEK_END) > 0:
                        fh.seek(-1, os.SEEK_END)
                        if fh.read(1) != b"\n":
                            text = "\n" + text
                fh.write(text.encode())
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise StorageFull(self.path, exc) from None
            self._broken = True
            log.warning("cannot write %s (%s); the cell runs on without its metrics file",
                        self.path, exc)

    def _writer(self, phase: str, start_epoch: int) -> Any:
        if self.tensorboard is None:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter  # deferred: optional ([tb])
        except ImportError as exc:  # checked by the command line; a node may still lack it
            log.warning("--tensorboard: %s; this cell writes no event files", exc)
            self.tensorboard = None
            return None
        # purge_step: a resumed phase drops the events of epochs it trains again
        writer = SummaryWriter(str(self.tensorboard / phase),
                               purge_step=start_epoch + 1 if start_epoch else None)
        self._writers.append(writer)
        return writer

    @staticmethod
    def _summary(fit: _Fit, line: dict[str, Any]) -> Any:
        """The epoch's scalars as one event (not one per scalar, as add_scalar would)."""
        from torch.utils.tensorboard.summary import scalar  # deferred: optional ([tb])

        tags = [(tag, line[key]) for tag, key in (
            ("train/loss", "train_loss"), ("train/lr", "lr"), ("val/acc", "val_acc"),
            ("speed/images_per_s", "images_per_s"), ("speed/epoch_seconds", "seconds"))
            if line.get(key) is not None]
        sparsity = line.get("sparsity")
        if sparsity:
            tags += [("sparsity/prunable", sparsity["prunable"]),
                     ("sparsity/overall", sparsity["overall"])]
            if not fit.layers_logged:  # the mask is fixed during a fit: once per phase
                fit.layers_logged = True
                tags += [(f"sparsity_layer/{n}", v) for n, v in sparsity["layers"].items()]
        summary = scalar(tags[0][0], tags[0][1])
        for tag, value in tags[1:]:
            summary.value.extend(scalar(tag, value).value)
        return summary

    @staticmethod
    def _hand_over(fit: _Fit) -> None:
        if fit.writer is None or not fit.pending:
            return
        events = fit.writer._get_file_writer()  # SummaryWriter's own add_scalar path
        for summary, step in fit.pending:
            events.add_summary(summary, step)
        fit.pending.clear()
        fit.writer.flush()
        fit.handed = time.perf_counter()


@torch.no_grad()
def _overall(model: torch.nn.Module) -> float:
    """Zeros over all parameters (biases and norms included): one reduction, one sync."""
    params = list(model.parameters())
    nonzero = torch.stack([torch.count_nonzero(p) for p in params]).sum().item()
    return 1.0 - nonzero / max(1, sum(p.numel() for p in params))


def for_cell(config: Any, work_dir: Path, tensorboard: str | None) -> MetricsLog:
    """The observer of one cell's run: its work folder's file, and its TensorBoard run."""
    tb = Path(tensorboard) / run_name(config) if tensorboard else None
    return MetricsLog(Path(work_dir) / METRICS_FILE,
                      {"id": config.id, "label": config.label}, tb)
