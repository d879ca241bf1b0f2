"""What the harness shows on a terminal, written once: an error's first line and progress bars."""
from __future__ import annotations

from typing import Any, Iterable


def first_line(text: object, empty: str = "(no message)") -> str:
    """The first line of an error message (tracebacks and sbatch's chatter follow it); `empty`
    when there is none."""
    lines = str(text or "").strip().splitlines()
    return lines[0] if lines else empty


# A command's --no-progress turns off every bar of the process, also those deep in the data
# pipeline (decoding an image folder) that no RunOptions reaches.
_bars = {"enabled": True}


def show_progress(enabled: bool) -> None:
    _bars["enabled"] = enabled


def progress_bar(items: Iterable[Any] | None = None, **kwargs: Any):
    """A tqdm bar that fits the terminal (tqdm is imported only when a bar is shown); a silent
    pass-through after show_progress(False)."""
    from tqdm.auto import tqdm  # deferred: most runs show no bar (--no-progress, jobs, tests)

    kwargs.setdefault("disable", not _bars["enabled"])
    return tqdm(items, dynamic_ncols=True, **kwargs)
