"""Researchers' own trained models: `teacher_checkpoint=PATH` and `dense_checkpoint=PATH`.

A checkpoint is a state dict, or a dict holding one under a usual key (state_dict, model,
model_state_dict, net), as saved by this harness, timm or a plain training script; a
DataParallel `module.` prefix is stripped. It is read with weights_only (no code runs), and
identified by its content's SHA-256: cell ids and cache keys use the hash, never the path, so
a moved file keeps its results and an edited one gets new ones.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from bench import catalog
from bench.config import CHECKPOINT_MODELS
from bench.registry import UsageError
from bench.store import DamagedFile, safe_torch_load
from bench.train.models import build_model

STATE_KEYS = ("state_dict", "model", "model_state_dict", "net")


def read_state_dict(path: str | Path) -> dict[str, Any]:
    try:
        blob = safe_torch_load(Path(path).expanduser())
    except DamagedFile as exc:
        raise UsageError(f"checkpoint {str(path)!r} is not a loadable weights file ({exc})") \
            from None
    if isinstance(blob, dict) and not any(isinstance(v, torch.Tensor) for v in blob.values()):
        inner = next((blob[k] for k in STATE_KEYS if isinstance(blob.get(k), dict)), None)
        if inner is None:
            raise UsageError(f"checkpoint {str(path)!r} holds no state dict (keys: "
                             f"{', '.join(map(str, list(blob)[:8]))}; expected tensors or one "
                             f"of {', '.join(STATE_KEYS)})")
        blob = inner
    if not isinstance(blob, dict):
        raise UsageError(f"checkpoint {str(path)!r} holds a {type(blob).__name__}, not a state dict")
    if blob and all(k.startswith("module.") for k in blob):
        blob = {k[len("module."):]: v for k, v in blob.items()}
    return blob


def load_into(model, path: str | Path, what: str) -> None:
    """Load the checkpoint into `model` (strict); a mismatch is one line naming the first
    differences, e.g. a class count or an architecture that is not the configured one."""
    state = read_state_dict(path)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)}, model {tuple(v.shape)}"
              for k, v in own.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or shapes:
        parts = ([f"shape {shapes[0]}" + (f" (+{len(shapes) - 1} more)" if len(shapes) > 1 else "")]
                 if shapes else [])
        if missing:
            parts.append(f"{len(missing)} missing key(s), e.g. {missing[0]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s), e.g. {unexpected[0]}")
        raise UsageError(f"{what}={str(path)!r} does not fit the configured model: "
                         + "; ".join(parts))
    model.load_state_dict(state)


def check_checkpoints(cells) -> None:
    """Load every distinct checkpoint into its configured model once before any training, so a
    wrong architecture or class count is one line (exit 2), not a failed grid."""
    seen = set()
    for cell in cells:
        for field, model_field in CHECKPOINT_MODELS.items():
            path, arch = getattr(cell, field), getattr(cell, model_field)
            key = (field, getattr(cell, field + "_sha256"), arch, cell.dataset)
            if path is None or key in seen:
                continue
            seen.add(key)
            spec = catalog.DATASETS.get(cell.dataset)
            model = build_model(arch, spec.num_classes, spec.channels, spec.image_size)
            load_into(model, path, field)
