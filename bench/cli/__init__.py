"""What the command lines share: one-line errors with exit code 2 (the parser and the run of a
command's body). The shared arguments and the selection of cells are in `arguments`, the input
checks and clean stops of bench.run in `guards`."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Callable

from bench.registry import UsageError


class OneLineParser(argparse.ArgumentParser):
    """Bad arguments: one line naming the problem, exit code 2 (argparse prints the usage too)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def run_command(body: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a command's body: a UsageError is one line and exit 2, never a traceback."""
    try:
        return body(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished cells are saved, run again to continue", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`bench.run --dry-run | head`): stop quietly, as Unix tools do;
        # stdout goes to /dev/null so that the interpreter's final flush does not fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a tool stopped by a closed pipe
