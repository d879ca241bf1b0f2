"""The results store: one JSON record per cell, written atomically, validated when read.

Layout under the results directory:
    records/<cell id>.json     one record per cell (status ok or failed), with a checksum
    checkpoints/<cell id>.pt   the final (sparse) model of an ok cell
    work/<cell id>/            resumable state of a cell in progress (removed when it finishes)
    cache/                     sparsity-independent phases shared by cells (bench/store/cache.py)
    locks/                     one lock per cell being run, so concurrent runs never duplicate it
    tables/                    the run's summary tables
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable

SCHEMA_VERSION = 1
REQUIRED_KEYS = ("schema", "id", "label", "status", "config", "checksum")
STATUSES = ("ok", "failed")


_UMASK = os.umask(0)
os.umask(_UMASK)


class CorruptRecord(ValueError):
    pass


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


# --- atomic files ---------------------------------------------------------------------------


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
    import torch

    atomic_write(Path(path), lambda fh: torch.save(obj, fh))


def safe_torch_load(path: Path, map_location: Any = "cpu", mmap: bool = False) -> Any:
    """torch.load that builds only tensors and plain values (`weights_only=True`): a file planted
    in a results folder cannot run code. Anything unreadable raises DamagedFile naming the path."""
    import torch

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


# --- records --------------------------------------------------------------------------------


def _checksum(record: dict[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k != "checksum"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()


def seal(record: dict[str, Any]) -> dict[str, Any]:
    record = dict(record, schema=SCHEMA_VERSION)
    record["checksum"] = _checksum(record)
    return record


def validate_record(record: Any, source: str) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise CorruptRecord(f"{source}: not a JSON object")
    missing = [k for k in REQUIRED_KEYS if k not in record]
    if missing:
        raise CorruptRecord(f"{source}: missing key(s) {', '.join(missing)}")
    if record["checksum"] != _checksum(record):
        raise CorruptRecord(f"{source}: checksum mismatch (edited or truncated)")
    if record["status"] not in STATUSES:
        raise CorruptRecord(f"{source}: status {record['status']!r} is not one of {STATUSES}")
    if record["status"] == "ok" and not isinstance(record.get("accuracy", {}).get("test"), float):
        raise CorruptRecord(f"{source}: an ok record without accuracy.test")
    return record


@dataclass(frozen=True)
class LoadProblem:
    path: Path
    message: str


class ResultStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def record_path(self, cell_id: str) -> Path:
        return self.root / "records" / f"{cell_id}.json"

    def checkpoint_path(self, cell_id: str) -> Path:
        return self.root / "checkpoints" / f"{cell_id}.pt"

    def work_dir(self, cell_id: str) -> Path:
        return self.root / "work" / cell_id

    def lock_path(self, cell_id: str) -> Path:
        return self.root / "locks" / f"{cell_id}.lock"

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    @property
    def tables_dir(self) -> Path:
        return self.root / "tables"

    def write(self, record: dict[str, Any]) -> Path:
        sealed = seal(record)
        path = self.record_path(sealed["id"])
        atomic_write_bytes(path, json.dumps(sealed, indent=1, sort_keys=True).encode())
        return path

    def read(self, cell_id: str) -> dict[str, Any] | None:
        """The cell's record, or None when absent. Raises CorruptRecord for a damaged file."""
        path = self.record_path(cell_id)
        if not path.is_file():
            return None
        return self._read_path(path)

    def _read_path(self, path: Path) -> dict[str, Any]:
        try:
            record = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CorruptRecord(f"{path}: not valid JSON ({exc})") from exc
        return validate_record(record, str(path))

    def is_done(self, cell_id: str) -> bool:
        """True for a valid ok record. Failed and corrupt records are run again."""
        try:
            record = self.read(cell_id)
        except CorruptRecord:
            return False
        return record is not None and record["status"] == "ok"

    def load_all(self, ids: Iterable[str] | None = None) -> tuple[list[dict], list[LoadProblem]]:
        folder = self.root / "records"
        if ids is None:
            paths = sorted(folder.glob("*.json")) if folder.is_dir() else []
        else:
            paths = [self.record_path(i) for i in ids if self.record_path(i).is_file()]
        records, problems = [], []
        for path in paths:
            try:
                records.append(self._read_path(path))
            except CorruptRecord as exc:
                problems.append(LoadProblem(path, str(exc)))
        return records, problems

    def frame(self, ids: Iterable[str] | None = None):
        """Records flattened into a pandas DataFrame, one row per cell."""
        import pandas as pd

        records, _ = self.load_all(ids)
        return pd.DataFrame([flatten_record(r) for r in records])


def flatten_record(r: dict[str, Any]) -> dict[str, Any]:
    from bench.train.precision import record_precision  # imports torch; the store itself does not

    cfg = r["config"]
    row = {"id": r["id"], "label": r["label"], "status": r["status"], **cfg}
    row.pop("options", None)
    row["temperature"] = r.get("temperature", cfg.get("temperature"))
    row["precision"] = record_precision(r)  # resolved; the config's own may say "auto"
    row["memory_format"] = r.get("memory_format")
    row["test_acc"] = r.get("accuracy", {}).get("test")
    for key in ("top5", "ece", "nll"):  # absent from records before they were measured
        row[f"test_{key}"] = (r.get("accuracy") or {}).get(key)
    extra = r.get("extra") or {}  # the teacher and dense network the cell learned from or pruned
    row["teacher_test_acc"] = (extra.get("teacher") or {}).get("test_acc")
    row["dense_test_acc"] = extra.get("dense_test_acc")
    sp = r.get("sparsity") or {}
    row["sparsity_prunable"] = sp.get("prunable")
    row["sparsity_overall"] = sp.get("overall")
    row["sparsity_over"] = sp.get("over")
    row["empty_layers"] = len(sp.get("empty_layers", []))
    compute = r.get("compute") or {}
    for key in ("params_nonzero", "compression_ratio", "macs_dense", "macs_sparse",
                "theoretical_speedup"):
        row[key] = compute.get(key)
    cost = r.get("cost") or {}
    row["seconds"] = cost.get("seconds_total")
    row["seconds_cell"] = cost.get("seconds_cell")
    row["seconds_shared"] = cost.get("seconds_shared")
    err = r.get("error") or {}
    row["error"] = err.get("message")
    return row
