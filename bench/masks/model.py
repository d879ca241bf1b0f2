"""Masks on a model: attached as buffers, enforced after every step, counted and verified."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import torch
from torch import nn

from bench.masks.mask import MASK_BUFFER, Mask, MaskViolation, by_module_name, prunable_modules, \
    prunable_weights
from bench.masks.ranking import global_topk_mask, keep_count

def attach_mask(model: nn.Module, mask: Mapping[str, torch.Tensor]) -> None:
    """Store the mask as buffers on the model and zero the pruned weights. Layers the mask does
    not name keep everything; names may be module or parameter names (`by_module_name`)."""
    modules = prunable_modules(model)
    mask = Mask(by_module_name(mask, modules))
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


def prune_model(model: nn.Module, scores: Mapping[str, torch.Tensor], sparsity: float, *,
                min_per_layer: int = 1) -> list[str]:
    """Global top-k of `scores` (keyed by module or parameter name) to the exact count, attached
    to `model`; returns the layers the empty-layer guard kept alive."""
    scores = by_module_name(scores, prunable_modules(model), "scores")
    mask, guarded = global_topk_mask(scores, sparsity, min_per_layer=min_per_layer)
    attach_mask(model, mask)
    return guarded


def get_mask(model: nn.Module) -> Mask | None:
    modules = prunable_modules(model)
    if not modules or not all(hasattr(m, MASK_BUFFER) for m in modules.values()):
        return None
    return Mask({n: getattr(m, MASK_BUFFER) for n, m in modules.items()})


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
class Accounting:
    """The weights a method counts its target sparsity over. `over` names the rule in records
    ("prunable": every Conv2d and Linear weight, the harness's uniform accounting); `layers` are
    the layers it covers (None: every prunable layer)."""

    over: str = "prunable"
    layers: tuple[str, ...] | None = None

    def counts(self, layers: Mapping[str, tuple[int, int]]) -> tuple[int, int]:
        """(kept, total) over the covered layers, from per-layer (kept, total) counts."""
        names = layers if self.layers is None else self.layers
        return sum(layers[n][0] for n in names), sum(layers[n][1] for n in names)


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

    def as_record(self, target: float | None = None,
                  accounting: Accounting | None = None) -> dict:
        """The record's `sparsity` block. `prunable` is what was reached over all prunable
        weights; `target` is the config's sparsity and `over` the accounting the method counted
        it over; when that is not all prunable weights, `over_kept`/`over_total`/`over_sparsity`
        give the reached figure over its own layers."""
        accounting = accounting or Accounting()
        out = {"prunable": self.prunable_sparsity, "overall": self.overall_sparsity,
               "prunable_kept": self.prunable_kept, "prunable_total": self.prunable_total,
               "params_nonzero": self.params_nonzero, "params_total": self.params_total,
               "empty_layers": self.empty_layers,
               "layers": {n: list(v) for n, v in self.layers.items()},
               "target": target, "over": accounting.over}
        if accounting.layers is not None:
            kept, total = accounting.counts(self.layers)
            out.update(over_kept=kept, over_total=total, over_sparsity=1.0 - kept / max(1, total))
        return out


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
def verify_mask(model: nn.Module, expected_sparsity: float | None = None,
                accounting: Accounting | None = None) -> SparsityReport:
    """Raise MaskViolation unless every pruned weight is zero (and the count is the one asked,
    counted over `accounting`'s layers: all prunable weights by default)."""
    modules = prunable_modules(model)
    if not modules or not all(hasattr(m, MASK_BUFFER) for m in modules.values()):
        if expected_sparsity:
            raise MaskViolation("model carries no mask but a sparsity was expected")
        return sparsity_report(model)
    for name, module in modules.items():
        m, w = getattr(module, MASK_BUFFER), module.weight
        if m.dtype != torch.bool:
            raise MaskViolation(f"mask of {name} is {m.dtype}, not bool")
        index = _keep_index(module, w)
        survivors = w.numel() if index is None else int(torch.count_nonzero(_flat_view(w)[index]))
        revived = int(torch.count_nonzero(w)) - survivors if index is not None else 0
        if revived:
            raise MaskViolation(f"{revived} pruned weights of {name} are non-zero")
    report = sparsity_report(model)
    if expected_sparsity is not None:
        accounting = accounting or Accounting()
        kept, total = accounting.counts(report.layers)
        want = keep_count(total, expected_sparsity)
        if kept != want:
            where = "prunable weights" if accounting.layers is None else \
                f"weights of the {accounting.over} layers"
            raise MaskViolation(f"mask keeps {kept} of {total} {where}; sparsity "
                                f"{expected_sparsity} needs {want}")
    return report
