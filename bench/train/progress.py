"""Reading a running cell's progress from its metrics file (written by bench/train/metrics_log.py).

Used by `bench.status`, which must start quickly and may run on a login node while the cell runs
on another node: plain JSON, no torch. A damaged line (a run killed mid-write) is skipped.
"""
from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.jsonl"  # bench/train/metrics_log.py writes it (that module imports torch)
RECENT_EPOCHS = 5  # the time left is estimated from this many latest epochs of the phase


@dataclass(frozen=True)
class Progress:
    phase: str | None  # the phase running (or last run); None before the first phase started
    epoch: int  # epochs finished in that phase
    epochs: int
    val_acc: float | None  # the latest epoch's validation accuracy
    epoch_seconds: float | None  # mean of the phase's latest epochs (this run of it)
    last_time: float  # when the latest line was written (unix time)
    shared: str | None  # the cache kind of a shared phase (teacher, dense student, ...)
    host: str | None  # where the latest run of the cell runs, and its process
    pid: int | None
    ended: bool  # that run wrote the cell's record

    def seconds_left(self, now: float | None = None) -> float | None:
        """Time left in the current phase: its remaining epochs at the measured epoch time,
        less the time the epoch in progress has already run. None before one epoch finished."""
        if self.epoch_seconds is None or self.phase is None:
            return None
        now = time.time() if now is None else now
        left = (self.epochs - self.epoch) * self.epoch_seconds
        if self.epoch < self.epochs:
            left -= min(max(0.0, now - self.last_time), self.epoch_seconds)
        return max(0.0, left)

    def runs_here(self) -> bool:
        """The run that wrote the file is a live process on this machine (what a local or
        in-process run offers instead of Slurm's job state)."""
        if self.ended or self.pid is None or self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # another user's process: alive
            return True
        return True


def metrics_path(work_dir: Path) -> Path:
    return Path(work_dir) / METRICS_FILE


def read_progress(work_dir: Path) -> Progress | None:
    """The cell's progress from `<work_dir>/metrics.jsonl`; None when there is no such file."""
    try:
        text = metrics_path(work_dir).read_text(errors="replace")
    except OSError:
        return None
    return progress_from_lines(text.splitlines())


def progress_from_lines(lines: list[str]) -> Progress | None:
    events: list[dict[str, Any]] = []
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and "event" in event:
            events.append(event)
    if not events:
        return None
    host = pid = None
    ended = False
    phase: dict[str, Any] | None = None
    epochs: list[dict[str, Any]] = []
    for event in events:
        kind = event["event"]
        if kind == "cell":
            host, pid, ended = event.get("host"), event.get("pid"), False
        elif kind == "end":
            ended = True
        elif kind == "phase":
            phase, epochs = event, []
        elif kind == "epoch":
            if phase is None or event.get("phase") != phase.get("phase"):
                phase, epochs = {"phase": event.get("phase"), "epochs": event.get("epochs"),
                                 "shared": event.get("shared")}, []
            epochs.append(event)
    if phase is None:
        return Progress(None, 0, 0, None, None, float(events[-1].get("time", 0.0)), None, host,
                        pid, ended)
    recent = [e["seconds"] for e in epochs[-RECENT_EPOCHS:]
              if isinstance(e.get("seconds"), (int, float))]
    last = epochs[-1] if epochs else {}
    return Progress(
        phase=phase.get("phase"),
        epoch=int(last.get("epoch", phase.get("start_epoch") or 0)),
        epochs=int(phase.get("epochs") or last.get("epochs") or 0),
        val_acc=last.get("val_acc"),
        epoch_seconds=sum(recent) / len(recent) if recent else None,
        last_time=float(events[-1].get("time", 0.0)),
        shared=phase.get("shared"), host=host, pid=pid, ended=ended)


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def describe(progress: Progress, now: float | None = None) -> str:
    """One phrase for bench.status: 'finetune 3/10, val acc 0.8125, ≈1m20s left in finetune'."""
    if progress.phase is None:
        return "started, no phase yet"
    name = progress.phase + (f" (shared {progress.shared})" if progress.shared else "")
    parts = [f"{name} {progress.epoch}/{progress.epochs}"]
    if isinstance(progress.val_acc, (int, float)) and progress.val_acc == progress.val_acc:
        parts.append(f"val acc {progress.val_acc:.4f}")
    left = progress.seconds_left(now)
    if left is not None:
        parts.append(f"≈{format_duration(left)} left in {progress.phase}")
    elif progress.epoch < progress.epochs:
        parts.append("first epoch running")
    return ", ".join(parts)
