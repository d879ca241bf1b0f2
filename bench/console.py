"""What the harness shows on a terminal, written once: an error's first line and progress bars."""
from __future__ import annotations

from typing import Any, Iterable


def first_line(text: object, empty: str = "(no message)") -> str:
    """The first line of an error message (tracebacks and sbatch's chatter follow it); `empty`
    when there is none."""
    lines = str(text or "").strip().splitlines()
    return lines[0] if lines else empty


def progress_bar(items: Iterable[Any] | None = None, **kwargs: Any):
    """A tqdm bar that fits the terminal (tqdm is imported only when a bar is shown)."""
    from tqdm.auto import tqdm  # deferred: most runs show no bar (--no-progress, jobs, tests)

    return tqdm(items, dynamic_ncols=True, **kwargs)
