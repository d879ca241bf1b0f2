"""Masks over prunable weights: pure scoring-to-mask functions, enforcement, accounting.

Prunable weights are the weight tensors of every Conv2d and Linear layer. A mask is stored on the
model as a `weight_mask` buffer of each prunable module, so it travels in every state_dict.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

import torch
from torch import nn

Mask = dict[str, torch.Tensor]  # prunable-module name -> bool tensor shaped like its weight
MASK_BUFFER = "weight_mask"


class MaskViolation(RuntimeError):
    """Weights that the mask prunes are not zero, or the mask is malformed."""


def prunable_modules(model: nn.Module) -> dict[str, nn.Module]:
    return {name: m for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


def prunable_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: m.weight for name, m in prunable_modules(model).items()}


# --- pure functions: scores -> mask ------------------------------------------------------------


def keep_count(total: int, sparsity: float) -> int:
    """Survivors for a target sparsity: round((1 - s) * N), the exact count every method hits."""
    return int(round((1.0 - sparsity) * total))


def global_topk_mask(scores: Mapping[str, torch.Tensor], sparsity: float, *,
                     min_per_layer: int = 1) -> tuple[Mask, list[str]]:
    """Keep the top (1 - s) of all scores together, one threshold, exactly `keep_count` survivors.

    Ties are broken by position (earlier layer, earlier index wins), so the result is
    deterministic. A layer that would be emptied keeps its `min_per_layer` best weights instead of
    the globally weakest survivors elsewhere; the names of such layers are returned.
    """
    names = list(scores)
    flat = torch.cat([scores[n].detach().reshape(-1).float() for n in names])
    if not torch.isfinite(flat).all():
        raise ValueError("scores contain NaN or inf")
    k = keep_count(flat.numel(), sparsity)
    order = torch.argsort(flat, descending=True, stable=True)
    keep = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    keep[order[:k]] = True
    sizes = [scores[n].numel() for n in names]
    guarded: list[str] = []
    if min_per_layer > 0 and k >= min_per_layer * len(names):
        keep, guarded = _guard_empty_layers(flat, keep, order, names, sizes, min_per_layer)
    return _unflatten(keep, names, scores), guarded


def _guard_empty_layers(flat, keep, order, names, sizes, min_per_layer):
    offsets = [0]
    for s in sizes:
        offsets.append(offsets[-1] + s)
    k = int(keep.sum())
    guarded = []
    for i, name in enumerate(names):
        lo, hi = offsets[i], offsets[i + 1]
        need = min(min_per_layer, hi - lo)
        if int(keep[lo:hi].sum()) >= need:
            continue
        guarded.append(name)
        local = torch.argsort(flat[lo:hi], descending=True, stable=True)[:need]
        keep[lo + local] = True
    added = int(keep.sum()) - k
    if added:
        # Give back as many survivors as were added: the globally weakest of the original
        # survivors, taken only from layers that keep more than the minimum.
        layer_of = torch.repeat_interleave(torch.arange(len(names)), torch.tensor(sizes))
        counts = torch.bincount(layer_of[keep.cpu()], minlength=len(names)).tolist()
        for j in order[:k].flip(0).tolist():
            layer = int(layer_of[j])
            if counts[layer] > min_per_layer:
                keep[j] = False
                counts[layer] -= 1
                added -= 1
                if added == 0:
                    break
    return keep, guarded


def _unflatten(flat: torch.Tensor, names: list[str], like: Mapping[str, torch.Tensor]) -> Mask:
    out, start = {}, 0
    for n in names:
        size = like[n].numel()
        out[n] = flat[start:start + size].view_as(like[n]).clone()
        start += size
    return out


def random_scores(model: nn.Module, generator: torch.Generator) -> dict[str, torch.Tensor]:
    return {n: torch.rand(w.shape, generator=generator) for n, w in prunable_weights(model).items()}


def magnitude_scores(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: w.detach().abs() for n, w in prunable_weights(model).items()}


# --- masks on a model ------------------------------------------------------------------------


def attach_mask(model: nn.Module, mask: Mapping[str, torch.Tensor]) -> None:
    """Store the mask as buffers on the model and zero the pruned weights."""
    modules = prunable_modules(model)
    unknown = set(mask) - set(modules)
    if unknown:
        raise MaskViolation(f"mask names modules that are not prunable: {sorted(unknown)[:5]}")
    for name, module in modules.items():
        m = mask.get(name)
        if m is None:
            m = torch.ones_like(module.weight, dtype=torch.bool)
        if m.shape != module.weight.shape:
            raise MaskViolation(f"mask for {name} is {tuple(m.shape)}; weight is "
                                f"{tuple(module.weight.shape)}")
        m = m.to(device=module.weight.device, dtype=torch.bool)
        if hasattr(module, MASK_BUFFER):
            getattr(module, MASK_BUFFER).copy_(m)
        else:
            module.register_buffer(MASK_BUFFER, m)
    apply_mask(model)


def get_mask(model: nn.Module) -> Mask | None:
    modules = prunable_modules(model)
    if not modules or not all(hasattr(m, MASK_BUFFER) for m in modules.values()):
        return None
    return {n: getattr(m, MASK_BUFFER) for n, m in modules.items()}


def prepare_for_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Attach all-ones masks where a state_dict carries masks, so `load_state_dict` can fill them."""
    if any(k.endswith("." + MASK_BUFFER) for k in state) and get_mask(model) is None:
        attach_mask(model, {})


@torch.no_grad()
def apply_mask(model: nn.Module) -> None:
    """Zero the pruned weights."""
    for module in _masked_modules(model):
        _keep_only(module.weight, module)


@torch.no_grad()
def mask_gradients(model: nn.Module) -> None:
    """Zero the gradients of pruned weights, so momentum and weight decay cannot revive them."""
    for module in _masked_modules(model):
        if module.weight.grad is not None:
            _keep_only(module.weight.grad, module)


def _masked_modules(model: nn.Module) -> list[nn.Module]:
    return [m for m in prunable_modules(model).values() if hasattr(m, MASK_BUFFER)]


def _keep_only(tensor: torch.Tensor, module: nn.Module) -> None:
    """Zero every entry the mask prunes: gather the survivors, clear, scatter them back.

    At high sparsity this moves a few percent of the tensor instead of multiplying all of it by
    the mask (12x faster for ResNet-18 at 98% on a CPU). The survivors' flat positions are cached
    per module and memory layout, and recomputed whenever the mask buffer changes.
    """
    flat, index = _flat_view(tensor), _keep_index(module, tensor)
    if index is None:
        return  # a layer that keeps everything
    kept = flat[index]
    flat.zero_()
    flat[index] = kept


def _layout(tensor: torch.Tensor) -> tuple[int, ...] | None:
    """The permutation under which `tensor` is contiguous (channels_last conv weights)."""
    if tensor.is_contiguous():
        return None
    if tensor.dim() == 4 and tensor.is_contiguous(memory_format=torch.channels_last):
        return (0, 2, 3, 1)
    raise MaskViolation(f"cannot mask a tensor with strides {tensor.stride()}")


def _flat_view(tensor: torch.Tensor) -> torch.Tensor:
    perm = _layout(tensor)
    return (tensor if perm is None else tensor.permute(*perm)).view(-1)


def _keep_index(module: nn.Module, like: torch.Tensor) -> torch.Tensor | None:
    mask = getattr(module, MASK_BUFFER)
    perm = _layout(like)
    key = (mask._version, mask.data_ptr(), mask.device, perm)
    cache = module.__dict__.setdefault("_prunebench_keep", {})
    if cache.get("key") != key:
        ordered = mask if perm is None else mask.permute(*perm)
        index = ordered.reshape(-1).nonzero().squeeze(1)
        cache.update(key=key, index=None if index.numel() == mask.numel() else index)
    return cache["index"]


# --- accounting and verification ---------------------------------------------------------------


@dataclass(frozen=True)
class SparsityReport:
    prunable_total: int
    prunable_kept: int
    params_total: int
    params_nonzero: int
    layers: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (kept, total)

    @property
    def prunable_sparsity(self) -> float:
        return 1.0 - self.prunable_kept / max(1, self.prunable_total)

    @property
    def overall_sparsity(self) -> float:
        return 1.0 - self.params_nonzero / max(1, self.params_total)

    @property
    def empty_layers(self) -> list[str]:
        return [n for n, (kept, _) in self.layers.items() if kept == 0]

    def as_record(self) -> dict:
        return {"prunable": self.prunable_sparsity, "overall": self.overall_sparsity,
                "prunable_kept": self.prunable_kept, "prunable_total": self.prunable_total,
                "params_nonzero": self.params_nonzero, "params_total": self.params_total,
                "empty_layers": self.empty_layers,
                "layers": {n: list(v) for n, v in self.layers.items()}}


@torch.no_grad()
def sparsity_report(model: nn.Module) -> SparsityReport:
    """Counts from the mask where there is one (what the method asked for), else from zeros."""
    mask = get_mask(model)
    layers = {}
    for name, w in prunable_weights(model).items():
        kept = int(mask[name].sum()) if mask is not None else int((w != 0).sum())
        layers[name] = (kept, w.numel())
    params = list(model.parameters())
    return SparsityReport(
        prunable_total=sum(t for _, t in layers.values()),
        prunable_kept=sum(k for k, _ in layers.values()),
        params_total=sum(p.numel() for p in params),
        params_nonzero=sum(int((p != 0).sum()) for p in params),
        layers=layers)


@torch.no_grad()
def verify_mask(model: nn.Module, expected_sparsity: float | None = None) -> SparsityReport:
    """Raise MaskViolation unless every pruned weight is zero (and the count is the one asked)."""
    mask = get_mask(model)
    if mask is None:
        if expected_sparsity:
            raise MaskViolation("model carries no mask but a sparsity was expected")
        return sparsity_report(model)
    for name, module in prunable_modules(model).items():
        m, w = mask[name], module.weight
        if m.dtype != torch.bool:
            raise MaskViolation(f"mask of {name} is {m.dtype}, not bool")
        index = _keep_index(module, w)
        survivors = w.numel() if index is None else int(torch.count_nonzero(_flat_view(w)[index]))
        revived = int(torch.count_nonzero(w)) - survivors if index is not None else 0
        if revived:
            raise MaskViolation(f"{revived} pruned weights of {name} are non-zero")
    report = sparsity_report(model)
    if expected_sparsity is not None:
        want = keep_count(report.prunable_total, expected_sparsity)
        if report.prunable_kept != want:
            raise MaskViolation(f"mask keeps {report.prunable_kept} of {report.prunable_total} "
                                f"prunable weights; sparsity {expected_sparsity} needs {want}")
    return report


def intersect(masks: Iterable[Mapping[str, torch.Tensor]]) -> Mask:
    masks = list(masks)
    return {n: torch.stack([m[n].bool() for m in masks]).all(0) for n in masks[0]}
