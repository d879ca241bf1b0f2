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

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from bench.store.files import atomic_write_bytes

SCHEMA_VERSION = 1
REQUIRED_KEYS = ("schema", "id", "label", "status", "config", "checksum")
STATUSES = ("ok", "failed")


class CorruptRecord(ValueError):
    pass


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

    def unfinished_work(self) -> list[Path]:
        """Folders holding the epoch checkpoints of phases cut short: a cell's work folder, a
        shared phase's scratch folder in the cache. A rerun on this store resumes from them."""
        def has_checkpoint(folder: Path) -> bool:
            try:
                return folder.is_dir() and any(folder.rglob("*.pt"))
            except OSError:  # removed meanwhile by the process that finished it
                return False

        folders = [*(self.root / "work").glob("*"), *self.cache_dir.glob("*/*.partial")]
        return sorted(f for f in folders if has_checkpoint(f))

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
        import pandas as pd  # deferred: reading records (bench.status, the run) never needs it

        records, _ = self.load_all(ids)
        return pd.DataFrame([flatten_record(r) for r in records])


def flatten_record(r: dict[str, Any]) -> dict[str, Any]:
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


def record_precision(record: Mapping[str, Any]) -> str:
    """The precision a record was trained at. Records written before the field existed were fp32
    on the CPU and bf16 autocast on CUDA (the trainer's only mode there)."""
    value = record.get("precision")
    if value in ("fp32", "bf16"):
        return value
    device = str((record.get("provenance") or {}).get("device") or "cpu")
    return "bf16" if device.startswith("cuda") else "fp32"


def mixed_precisions(records: Iterable[Mapping[str, Any]]) -> list[str]:
    """The precisions of the finished records, sorted, if there is more than one, else []: a
    table built from them must say so (a report's guard against mixing them silently)."""
    found = sorted({record_precision(r) for r in records if r.get("status") == "ok"})
    return found if len(found) > 1 else []
