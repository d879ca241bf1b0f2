"""Content-addressed cache for sparsity-independent phases (teachers, dense students, scores).

An entry is computed once per key: a file lock makes a second process wait for the first and
then read its result, files are written atomically, and a checksum catches a damaged file, which
is then recomputed rather than trusted.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from filelock import FileLock, SoftFileLock, Timeout

from bench.store.files import atomic_torch_save, atomic_write_bytes, safe_torch_load, sha256_file

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CacheEntry:
    payload: dict[str, Any]
    meta: dict[str, Any]  # what compute returned beside the payload, e.g. seconds, accuracy
    hit: bool  # read from the cache rather than computed by this call
    key_hash: str
    waited: float = 0.0  # seconds spent waiting for the entry's lock (another process held it)


def key_hash(kind: str, key: dict[str, Any]) -> str:
    text = json.dumps({"kind": kind, **key}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


class PhaseCache:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def paths(self, kind: str, digest: str) -> tuple[Path, Path, Path]:
        """(tensor file, sidecar, lock) of an entry; the tensor file is the one its sidecar
        names once it is published (<digest>.<token>.pt), <digest>.pt before."""
        folder = self.root / kind
        meta_path = folder / f"{digest}.json"
        blob = folder / f"{digest}.pt"
        try:
            blob = folder / json.loads(meta_path.read_text())["blob"]
        except (OSError, ValueError, KeyError, TypeError):
            pass
        return blob, meta_path, folder / f"{digest}.lock"

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
        t_wait = time.perf_counter()
        with _lock(lock_path):
            waited = time.perf_counter() - t_wait
            found = self._load(meta_path)
            if found is not None:
                return CacheEntry(found[0], found[1], True, digest, waited)
            scratch = blob.parent / f"{digest}.partial"
            scratch.mkdir(exist_ok=True)
            t0 = time.perf_counter()
            payload, meta = compute(scratch)
            meta = dict(meta)
            meta.setdefault("seconds", time.perf_counter() - t0)
            published = self._publish(kind, key, digest, payload, meta)
            shutil.rmtree(scratch, ignore_errors=True)
            if published is not None:  # another writer was first: its entry is the entry
                return CacheEntry(published[0], published[1], True, digest, waited)
            return CacheEntry(payload, meta, False, digest, waited)

    def _publish(self, kind: str, key: dict[str, Any], digest: str, payload: dict[str, Any],
                 meta: dict[str, Any]) -> tuple[dict, dict] | None:
        """Write the entry so that it appears whole or not at all, and only once: the tensors go
        to a file of their own (named in the sidecar, so a sidecar never describes another
        writer's tensors), and the sidecar is published with a hard link, which fails if one is
        already there. Where file locks do not reach across nodes and two jobs computed the same
        entry, the second finds the first's sidecar, discards its own files and returns the
        published entry (None: this call published)."""
        blob, meta_path, _ = self.paths(kind, digest)
        token = uuid.uuid4().hex[:8]
        own_blob = blob.with_name(f"{digest}.{token}.pt")
        staged = meta_path.with_name(f"{digest}.{token}.json.staged")
        try:
            atomic_torch_save(payload, own_blob)
            sidecar = {"kind": kind, "key": key, "blob": own_blob.name,
                       "sha256": sha256_file(own_blob), "meta": meta,
                       "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            atomic_write_bytes(staged, json.dumps(sidecar, indent=1, default=str).encode())
        except BaseException:  # a full disk or a kill: no tensors without an entry are left
            own_blob.unlink(missing_ok=True)
            staged.unlink(missing_ok=True)
            raise
        try:
            if self._load(meta_path) is not None:
                raise FileExistsError(meta_path)
            try:
                os.link(staged, meta_path)  # atomic create-if-absent, also on NFS and Lustre
            except FileExistsError:
                raise
            except OSError:  # a file system without hard links: last writer wins, still whole
                os.replace(staged, meta_path)
        except FileExistsError:
            found = self._load(meta_path)
            if found is not None:
                log.info("cache entry %s/%s was published by another process meanwhile; "
                         "this duplicate is discarded", kind, digest)
                own_blob.unlink(missing_ok=True)
                staged.unlink(missing_ok=True)
                return found
            os.replace(staged, meta_path)  # the other entry is damaged: this one replaces it
        staged.unlink(missing_ok=True)
        return None

    def plan_keys(self) -> set[tuple]:
        """The Slurm plan's keys (bench.plan.estimate.shared) of the complete entries: which shared
        phases need no job. Entries written before plan keys existed are not listed; their
        phase job then finds them and stops at once."""
        out: set[tuple] = set()
        for sidecar in self.root.glob("*/*.json"):
            try:
                data = json.loads(sidecar.read_text())
                key = data["meta"].get("plan_key")
                if key and (sidecar.parent / data.get("blob", sidecar.stem + ".pt")).is_file():
                    out.add(tuple(key))
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                continue
        return out

    def _load(self, meta_path: Path) -> tuple[dict, dict] | None:
        """The entry whose sidecar is `meta_path`, or None if there is none or it is damaged.
        The sidecar names its tensor file (entries from before that was so use <digest>.pt)."""
        if not meta_path.is_file():
            return None
        try:
            sidecar = json.loads(meta_path.read_text())
            blob = meta_path.parent / sidecar.get("blob", meta_path.stem + ".pt")
            if sha256_file(blob) != sidecar["sha256"]:
                raise ValueError("checksum mismatch")
            # weights_only: the checksum guards against accidents, not against a writer of the
            # folder, who can rewrite the sidecar too; only plain tensors and values load.
            payload = safe_torch_load(blob)
        except Exception as exc:  # any damage means: recompute, and say so
            log.warning("cache entry %s is damaged (%s); recomputing", meta_path, exc)
            return None
        return payload, sidecar["meta"]


SOFT_LOCK_WAIT_S = 1800


@contextlib.contextmanager
def _lock(path: Path):
    """The entry's lock: flock where the file system honours it; where it refuses (ENOLCK, some
    NFS and Lustre mounts without flock), a lock file created with O_EXCL, waited on for at most
    SOFT_LOCK_WAIT_S (a holder killed without removing it would block forever). A lock is only a
    saving: PhaseCache._publish keeps the entry whole and single when two jobs compute it."""
    try:
        lock = FileLock(str(path))
        lock.acquire()
    except OSError as exc:
        log.warning("flock on %s failed (%s); using a lock file instead", path, exc)
        lock = SoftFileLock(str(path) + ".soft", timeout=SOFT_LOCK_WAIT_S)
        try:
            lock.acquire()
        except Timeout:  # a holder killed without cleaning up: go on, the publish is safe
            log.warning("%s.soft held for %ss; computing without it", path, SOFT_LOCK_WAIT_S)
            yield
            return
    try:
        yield
    finally:
        lock.release()
