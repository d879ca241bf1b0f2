"""RunConfig: one cell of a grid, validated, with a canonical id."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

from bench import catalog
from bench.registry import UsageError
from bench.store.files import sha256_file

SCHEDULES = ("cosine", "step")
PRUNABLE_SETS = ("all", "conv")
EPOCH_LIST_FIELDS = ("milestones", "snapshot_epochs")
PRECISIONS = ("auto", "fp32", "bf16")  # resolved by bench/train/precision.py, which needs torch
EPOCH_FIELDS = ("teacher_epochs", "dense_epochs", "sparse_epochs", "round_epochs")
# Users' own trained models (bench/exec/checkpoints.py): each checkpoint field and the field that
# names the architecture it is loaded into.
CHECKPOINT_MODELS = {"teacher_checkpoint": "teacher", "dense_checkpoint": "model"}
CHECKPOINT_FIELDS = tuple(CHECKPOINT_MODELS)

OptionValue = Any  # str | int | float | bool


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines one result. Fields at their default are left out of the id,
    so adding a field later does not rename finished runs."""

    # Each field says what it means in its metadata: `python -m bench.run --fields` prints them.
    method: str = field(default="magnitude", metadata=_help(
        "the pruning method, a registered name (docs/methods.md); its own options go in options"))
    dataset: str = field(default="digits", metadata=_help(
        "digits, synthetic, cifar10, cifar100, tinyimagenet, imagefolder:PATH or a plugin's"))
    model: str = field(default="resnet20", metadata=_help(
        "the network pruned: resnet18/20/32/34/50/56/110, smallcnn, timm:NAME or a plugin's"))
    teacher: str = field(default="resnet32", metadata=_help(
        "the dense teacher of the distilling methods (tg-oneshot, retrain=kd); names as model"))
    sparsity: float = field(default=0.9, metadata=_help(
        "the target: the fraction of prunable weights removed, in [0, 1)"))
    seed: int = field(default=0, metadata=_help(
        "seeds initialisation, data order and augmentation; repeats differ only in it"))
    temperature: float | None = field(default=None, metadata=_help(
        "the distillation temperature; unset: the dataset's default (docs/methods.md, tg-oneshot)"))
    alpha: float = field(default=0.9, metadata=_help(
        "the distillation term's weight in the KD losses: alpha * KD + (1 - alpha) * CE"))
    # Per-phase budgets in epochs. Which phases a method uses is the method's business.
    teacher_epochs: int = field(default=15, metadata=_help(
        "epochs training the dense teacher (one teacher per recipe, shared through the cache)"))
    dense_epochs: int = field(default=15, metadata=_help(
        "epochs training the dense network before pruning (CE, or the teacher-guided student)"))
    sparse_epochs: int = field(default=10, metadata=_help(
        "epochs training after pruning, or of a sparse network from its initialisation"))
    round_epochs: int = field(default=4, metadata=_help(
        "epochs of training in each round of an iterative method (COLT, EGP)"))
    batch_size: int = field(default=128, metadata=_help("the training batch size of every phase"))
    lr: float = field(default=0.1, metadata=_help(
        "SGD's learning rate at the start of every phase"))
    momentum: float = field(default=0.9, metadata=_help("SGD's momentum"))
    weight_decay: float = field(default=5e-4, metadata=_help("SGD's weight decay"))
    schedule: str = field(default="cosine", metadata=_help(
        "the learning rate over a phase: cosine, or step (x0.1 at 50 % and at 75 %)"))
    milestones: tuple[int, ...] = field(default=(), metadata=_help(
        "step schedule drops, in epochs of the dense phase (e.g. 91,136); empty: 50 %, 75 %"))
    snapshot_epochs: tuple[int, ...] = field(default=(), metadata=_help(
        "dense epochs whose weights are kept for weight-rewind (e.g. 92,132,172)"))
    prunable: str = field(default="all", metadata=_help(
        "the layers pruned and counted: all (conv and linear weights) or conv"))
    # auto: bf16 where the device computes it natively, else fp32 (bench/train/precision.py). The
    # default stays out of the id, so ids of existing cells do not change; fp32 and bf16 enter
    # it. Records hold the resolved value, and reports flag a table that mixes the two.
    precision: str = field(default="auto", metadata=_help(
        "auto (bf16 autocast on a CUDA GPU that has it, fp32 elsewhere), fp32 or bf16"))
    # A seeded, class-stratified share of the training split (bench/data/datasets.py:
    # train_subset).
    train_fraction: float = field(default=1.0, metadata=_help(
        "the share of the training split used (seeded, class-stratified), in (0, 1]"))
    # Your own trained models (bench/exec/checkpoints.py). The id holds the file's SHA-256, not its
    # path; the hash is computed once, when the path is given, and kept in the record.
    teacher_checkpoint: str | None = field(default=None, metadata=_help(
        "a saved state dict (path) loaded as the teacher instead of training one"))
    teacher_checkpoint_sha256: str | None = field(default=None, metadata=_help(
        "the teacher checkpoint's SHA-256, computed from the file (the id holds it, not the path)"))
    dense_checkpoint: str | None = field(default=None, metadata=_help(
        "a saved state dict (path) loaded as the dense network instead of training one"))
    dense_checkpoint_sha256: str | None = field(default=None, metadata=_help(
        "the dense checkpoint's SHA-256, computed from the file (the id holds it, not the path)"))
    # Method-specific options, e.g. (("retrain", "ft"),). Defaults are dropped on construction.
    options: tuple[tuple[str, OptionValue], ...] = field(default=(), metadata=_help(
        "the method's options, e.g. retrain=kd: give them as --methods name:key=value"))

    def __post_init__(self) -> None:
        # The registries load the built-ins on their first lookup (bench/catalog.py), so a config
        # validates in any process; importing this module imports neither torch nor the methods.
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type in ("float", "float | None") and isinstance(value, (int, float)) \
                    and not isinstance(value, bool):
                object.__setattr__(self, f.name, float(value))
        for name in EPOCH_LIST_FIELDS:
            object.__setattr__(self, name, _epoch_list(name, getattr(self, name)))
        self._check_numbers()
        method = catalog.METHODS.get(self.method)
        object.__setattr__(self, "method", catalog.METHODS.canonical(self.method))
        for name, registry in (("dataset", catalog.DATASETS), ("model", catalog.MODELS),
                               ("teacher", catalog.MODELS)):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise UsageError(f"{name}={value!r} is invalid; expected a name")
            if registry is catalog.MODELS and value.startswith("timm:") and len(value) > 5:
                continue  # checked against timm's list when built; importing timm here is slow
            registry.get(value)
            object.__setattr__(self, name, registry.canonical(value))
        object.__setattr__(self, "options", method.normalize_options(dict(self.options)))
        self._hash_checkpoints()
        self._check_retraining()
        for name in method.requires_epochs:
            if getattr(self, name) < 1:
                raise UsageError(f"{name}={getattr(self, name)} is invalid for method "
                                 f"{self.method!r}; it must be >= 1")

    def _check_retraining(self) -> None:
        """The retraining option one-shot methods share (bench/method/retraining.py) needs what
        it replays: a dense schedule at least as long, and the weights to rewind to."""
        retraining = dict(self.options).get("retraining", "restart")
        if retraining in ("lr-rewind", "weight-rewind") and self.sparse_epochs > self.dense_epochs:
            raise UsageError(f"retraining={retraining} replays the dense schedule's last "
                             f"sparse_epochs={self.sparse_epochs} epochs; it must be <= "
                             f"dense_epochs={self.dense_epochs}")
        point = self.dense_epochs - self.sparse_epochs
        if retraining == "weight-rewind" and point not in self.snapshot_epochs:
            raise UsageError(f"retraining=weight-rewind rewinds to the dense weights at epoch "
                             f"{point} (dense_epochs - sparse_epochs); add {point} to "
                             f"snapshot_epochs (now: {','.join(map(str, self.snapshot_epochs)) or 'none'})")

    def _hash_checkpoints(self) -> None:
        for name in CHECKPOINT_FIELDS:
            path, digest = getattr(self, name), getattr(self, name + "_sha256")
            if path is not None and not isinstance(path, str):
                raise UsageError(f"{name}={path!r} is invalid; expected a file path")
            if path is None and digest is not None:
                raise UsageError(f"{name}_sha256 is set without {name}")
            if path is not None and digest is None:  # a record's config keeps its hash
                object.__setattr__(self, name + "_sha256", checkpoint_sha256(path))
                # absolute, so a Slurm job started elsewhere finds the same file
                object.__setattr__(self, name, str(Path(path).expanduser().resolve()))

    def _check_numbers(self) -> None:
        def bad(name: str, valid: str) -> UsageError:
            return UsageError(f"{name}={getattr(self, name)!r} is invalid; {valid}")

        if not _finite(self.sparsity) or not 0.0 <= self.sparsity < 1.0:
            raise bad("sparsity", "must be a number in [0, 1)")
        if self.temperature is not None and (not _finite(self.temperature) or self.temperature <= 0):
            raise bad("temperature", "must be a number > 0")
        if not _finite(self.alpha) or not 0.0 <= self.alpha <= 1.0:
            raise bad("alpha", "must be a number in [0, 1]")
        for name in EPOCH_FIELDS + ("seed",):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise bad(name, "must be an integer >= 0")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) \
                or self.batch_size < 1:
            raise bad("batch_size", "must be an integer >= 1")
        if not _finite(self.lr) or self.lr <= 0:
            raise bad("lr", "must be a number > 0")
        if not _finite(self.momentum) or not 0.0 <= self.momentum < 1.0:
            raise bad("momentum", "must be a number in [0, 1)")
        if not _finite(self.weight_decay) or self.weight_decay < 0:
            raise bad("weight_decay", "must be a number >= 0")
        if self.schedule not in SCHEDULES:
            raise bad("schedule", f"valid: {', '.join(SCHEDULES)}")
        if not _finite(self.train_fraction) or not 0.0 < self.train_fraction <= 1.0:
            raise bad("train_fraction", "must be a number in (0, 1]")
        if self.precision not in PRECISIONS:
            raise bad("precision", f"valid: {', '.join(PRECISIONS)}")
        if self.prunable not in PRUNABLE_SETS:
            raise bad("prunable", f"valid: {', '.join(PRUNABLE_SETS)}")
        if self.milestones and self.schedule != "step":
            raise bad("milestones", "they set the step schedule's drops; add schedule=step")
        if any(not 0 < m < self.dense_epochs for m in self.milestones):
            raise bad("milestones", f"each must be an epoch in (0, dense_epochs={self.dense_epochs})")
        if any(not 0 <= e <= self.dense_epochs for e in self.snapshot_epochs):
            raise bad("snapshot_epochs", f"each must be an epoch in [0, dense_epochs="
                                         f"{self.dense_epochs}]")

    # -- identity -------------------------------------------------------------------------
    def canonical(self) -> dict[str, Any]:
        """The fields that differ from their defaults; the id is a hash of this."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in CHECKPOINT_FIELDS:
                continue  # the path may move; its content hash (the *_sha256 field) is the id
            if value != f.default and not (f.name == "options" and not value):
                out[f.name] = dict(value) if f.name == "options" else value
        return out

    @property
    def id(self) -> str:
        text = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    @property
    def option_dict(self) -> dict[str, OptionValue]:
        return catalog.METHODS.get(self.method).resolve_options(dict(self.options))

    @property
    def label(self) -> str:
        """The row name in tables: method plus the options that make it a variant."""
        return catalog.METHODS.get(self.method).label(dict(self.options))

    def resolved_temperature(self) -> float:
        if self.temperature is not None:
            return self.temperature
        return catalog.DATASETS.get(self.dataset).default_temperature

    # -- (de)serialisation --------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["options"] = dict(self.options)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RunConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UsageError(f"unknown config field(s) {', '.join(map(repr, unknown))}; "
                             f"valid: {', '.join(sorted(known))}")
        d = dict(data)
        if "options" in d:
            opts = d["options"]
            d["options"] = tuple(sorted(dict(opts).items())) if isinstance(opts, Mapping) else \
                tuple(tuple(p) for p in opts)
        return cls(**d)

    def replace(self, **changes: Any) -> "RunConfig":
        if "options" in changes and isinstance(changes["options"], Mapping):
            changes["options"] = tuple(sorted(changes["options"].items()))
        return dataclasses.replace(self, **changes)


def checkpoint_sha256(path: str | Path) -> str:
    p = Path(path).expanduser()
    try:
        st = p.stat()
    except OSError:
        raise UsageError(f"checkpoint {str(path)!r} does not exist (give the path of a saved "
                         "state dict)") from None
    if not p.is_file():
        raise UsageError(f"checkpoint {str(path)!r} is not a file")
    return _sha256(str(p.resolve()), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int) -> str:  # size and mtime key the memo
    return sha256_file(Path(path))


def _epoch_list(name: str, value: Any) -> tuple[int, ...]:
    """A sorted tuple of distinct epochs from a tuple, a list, one integer or "91,136"."""
    items = value.split(",") if isinstance(value, str) else \
        [value] if isinstance(value, int) else value
    try:
        out = [int(str(v).strip()) for v in items if str(v).strip()] \
            if isinstance(items, (list, tuple)) else None
    except ValueError:
        out = None
    if out is None or any(isinstance(v, bool) or isinstance(v, float) for v in
                          (items if isinstance(items, (list, tuple)) else [])):
        raise UsageError(f"{name}={value!r} is invalid; expected epochs such as 91,136")
    return tuple(sorted(set(out)))


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


CONFIG_FIELDS = tuple(f.name for f in fields(RunConfig))


def describe_fields() -> str:
    """Every RunConfig field with its type, default and meaning, read from the dataclass itself:
    what `python -m bench.run --fields` prints."""
    def shown(value: Any) -> str:  # as it is written after --set FIELD=
        return "(unset)" if value is None else "(none)" if value == () else str(value)

    rows = [("field", "type", "default", "meaning")]
    rows += [(f.name, str(f.type), shown(f.default), f.metadata.get("help", ""))
             for f in fields(RunConfig)]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(
        ["RunConfig's fields. --set FIELD=VALUE sets one for every cell of the selection; a field",
         "at its default is left out of the cell's id, so adding a field renames no result.", ""]
        + ["  ".join(c.ljust(w) for c, w in zip(r[:3], widths)) + "  " + r[3] for r in rows])
