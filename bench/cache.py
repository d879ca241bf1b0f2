"""Content-addressed cache for sparsity-independent phases (teachers, dense students, scores).

An entry is computed once per key: a file lock makes a second process wait for the first and
then read its result, files are written atomically, and a checksum catches a damaged file, which
is then recomputed rather than trusted.
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from filelock import FileLock

from bench.store import atomic_torch_save, atomic_write_bytes, safe_torch_load, sha256_file

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CacheEntry:
    payload: dict[str, Any]
    meta: dict[str, Any]  # what compute returned beside the payload, e.g. seconds, accuracy
    hit: bool  # read from the cache rather than computed by this call
    key_hash: str


def key_hash(kind: str, key: dict[str, Any]) -> str:
    text = json.dumps({"kind": kind, **key}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


class PhaseCache:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def paths(self, kind: str, digest: str) -> tuple[Path, Path, Path]:
        folder = self.root / kind
        return folder / f"{digest}.pt", folder / f"{digest}.json", folder / f"{digest}.lock"

    def get_or_compute(self, kind: str, key: dict[str, Any],
                       compute: Callable[[Path], tuple[dict[str, Any], dict[str, Any]]]
                       ) -> CacheEntry:
        """`compute(scratch)` returns (payload of tensors, meta of JSON values); it runs at most
        once per key across processes sharing this folder. `scratch` is a folder for its epoch
        checkpoints: a computation killed half-way (preempted job) resumes from there, whichever
        cell needs the entry next."""
        digest = key_hash(kind, key)
        blob, meta_path, lock_path = self.paths(kind, digest)
        blob.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(lock_path)):
            found = self._load(blob, meta_path)
            if found is not None:
                return CacheEntry(found[0], found[1], True, digest)
            scratch = blob.parent / f"{digest}.partial"
            scratch.mkdir(exist_ok=True)
            t0 = time.perf_counter()
            payload, meta = compute(scratch)
            meta = dict(meta)
            meta.setdefault("seconds", time.perf_counter() - t0)
            atomic_torch_save(payload, blob)
            sidecar = {"kind": kind, "key": key, "sha256": sha256_file(blob), "meta": meta,
                       "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            # The sidecar is written last: an entry without one is incomplete and recomputed.
            atomic_write_bytes(meta_path, json.dumps(sidecar, indent=1, default=str).encode())
            shutil.rmtree(scratch, ignore_errors=True)
            return CacheEntry(payload, meta, False, digest)

    def plan_keys(self) -> set[tuple]:
        """The Slurm plan's keys (bench.estimate.shared) of the complete entries: which shared
        phases need no job. Entries written before plan keys existed are not listed; their
        phase job then finds them and stops at once."""
        out: set[tuple] = set()
        for sidecar in self.root.glob("*/*.json"):
            try:
                data = json.loads(sidecar.read_text())
                key = data["meta"].get("plan_key")
                if key and sidecar.with_suffix(".pt").is_file():
                    out.add(tuple(key))
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                continue
        return out

    def _load(self, blob: Path, meta_path: Path) -> tuple[dict, dict] | None:
        if not (blob.is_file() and meta_path.is_file()):
            return None
        try:
            sidecar = json.loads(meta_path.read_text())
            if sha256_file(blob) != sidecar["sha256"]:
                raise ValueError("checksum mismatch")
            # weights_only: the checksum guards against accidents, not against a writer of the
            # folder, who can rewrite the sidecar too; only plain tensors and values load.
            payload = safe_torch_load(blob)
        except Exception as exc:  # any damage means: recompute, and say so
            log.warning("cache entry %s is damaged (%s); recomputing", blob, exc)
            return None
        return payload, sidecar["meta"]
