"""Safe file I/O for everything the harness writes and reads back: atomic writes (a reader sees the
old file or the new one, never half of one), a full disk reported as one error naming the file,
tensor files loaded without running code, checksums, and YAML files read with one-line errors."""
from __future__ import annotations

import errno
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable

import yaml

from bench.registry import UsageError

_UMASK = os.umask(0)
os.umask(_UMASK)


class DamagedFile(ValueError):
    """A checkpoint, cache entry or work state that cannot be read as plain tensors and values
    (truncated, edited, or holding objects that only a full unpickler would build)."""


class StorageFull(OSError):
    """The results file system is full (or over quota) while writing `path`; nothing partial was
    left behind. Raised through every layer so that the run stops instead of failing cell after
    cell."""

    def __init__(self, path: Path, cause: OSError):
        super().__init__(cause.errno, f"no space left on the device writing {path} "
                                      f"({os.strerror(cause.errno or errno.ENOSPC)}); "
                         "free some space and run again: finished cells are kept")
        self.path = path

    def __str__(self) -> str:
        return self.strerror or ""

    def __reduce__(self):  # travels back from a local worker process intact
        return _storage_full, (str(self.path), self.errno)


def _storage_full(path: str, code: int | None) -> StorageFull:
    return StorageFull(Path(path), OSError(code, os.strerror(code or errno.ENOSPC)))


_FULL = (errno.ENOSPC, errno.EDQUOT)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Temp file in the same folder, fsync, rename: readers see the old file or the new one."""
    atomic_write(path, lambda fh: fh.write(data))


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """`write(fh)` into a temp file in the same folder, fsync, rename. On any failure the temp
    file is removed; a full disk becomes StorageFull naming `path`."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp's 0600 would hide results from collaborators
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        full = _full_disk_cause(exc)
        if full is not None and not isinstance(exc, StorageFull):
            raise StorageFull(path, full) from None
        raise


def _full_disk_cause(exc: BaseException) -> OSError | None:
    """The ENOSPC/EDQUOT behind `exc`: torch.save wraps the OSError in a RuntimeError."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, OSError) and exc.errno in _FULL:
            return exc
        if isinstance(exc, RuntimeError) and ("No space left" in str(exc)
                                              or "Disk quota" in str(exc)):
            return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


def atomic_torch_save(obj: object, path: Path) -> None:
    """Streamed into the temp file (no in-memory copy: the decoded TinyImageNet is 1.2 GB)."""
    import torch  # deferred, as in safe_torch_load: records and YAML are read without torch

    atomic_write(Path(path), lambda fh: torch.save(obj, fh))


def safe_torch_load(path: Path, map_location: Any = "cpu", mmap: bool = False) -> Any:
    """torch.load that builds only tensors and plain values (`weights_only=True`): a file planted
    in a results folder cannot run code. Anything unreadable raises DamagedFile naming the path."""
    import torch  # deferred: the store's records are read without starting torch (bench.status)

    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except FileNotFoundError:
        raise
    except Exception as exc:  # UnpicklingError for a forbidden global, RuntimeError for a cut
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DamagedFile(f"{path} is damaged or not a plain tensor file "
                          f"({type(exc).__name__}: {first[:200]})") from None


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
