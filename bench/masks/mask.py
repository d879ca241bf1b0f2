"""The mask type: prunable-module name -> bool tensor, checked, with its own counts."""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

MASK_BUFFER = "weight_mask"


class MaskViolation(RuntimeError):
    """Weights that the mask prunes are not zero, or the mask is malformed."""


class Mask(Mapping[str, torch.Tensor]):
    """Prunable-module name -> bool tensor shaped like its weight (True = the weight is kept).

    The one mask type every method builds and the harness attaches. It holds booleans only: 0/1
    tensors of another dtype are converted, any other value is refused, so a float "mask" can
    never scale weights. It knows its kept count and its sparsity, overall and per layer. It is
    read-only: pruning functions return a new Mask. Payloads saved to disk hold `to_dict()`, so a
    saved state never depends on this class.
    """

    __slots__ = ("_tensors",)

    def __init__(self, tensors: Mapping[str, torch.Tensor] | None = None):
        checked = {}
        for name, t in dict(tensors or {}).items():
            if not isinstance(t, torch.Tensor):
                raise MaskViolation(f"mask of {name} is a {type(t).__name__}, not a tensor")
            if t.dtype != torch.bool:
                if t.is_complex() or not bool(((t == 0) | (t == 1)).all()):
                    raise MaskViolation(f"mask of {name} holds values other than 0 and 1 "
                                        f"(dtype {t.dtype}); a mask is boolean")
                t = t.bool()
            checked[name] = t
        self._tensors = checked

    @classmethod
    def ones(cls, like: Mapping[str, torch.Tensor]) -> "Mask":
        """Everything kept, shaped like `like` (weights or scores)."""
        return cls({n: torch.ones(t.shape, dtype=torch.bool, device=t.device)
                    for n, t in like.items()})

    def __getitem__(self, name: str) -> torch.Tensor:
        return self._tensors[name]

    def __iter__(self):
        return iter(self._tensors)

    def __len__(self) -> int:
        return len(self._tensors)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mapping) or list(self) != list(other):
            return NotImplemented if not isinstance(other, Mapping) else False
        return all(torch.equal(self[n], torch.as_tensor(other[n]).bool()) for n in self)

    __hash__ = None  # mutable tensors inside: not hashable, like a dict

    def __repr__(self) -> str:
        return f"Mask({self.kept}/{self.total} kept, {len(self)} layers)"

    def to_dict(self) -> dict[str, torch.Tensor]:
        return dict(self._tensors)

    def replace(self, updates: Mapping[str, torch.Tensor]) -> "Mask":
        """A new Mask with some layers' tensors replaced (or added)."""
        return Mask({**self._tensors, **updates})

    def layer_counts(self) -> dict[str, tuple[int, int]]:
        """name -> (kept, total)."""
        return {n: (int(t.sum()), t.numel()) for n, t in self._tensors.items()}

    def layer_sparsity(self) -> dict[str, float]:
        return {n: 1.0 - k / max(1, t) for n, (k, t) in self.layer_counts().items()}

    @property
    def kept(self) -> int:
        return sum(int(t.sum()) for t in self._tensors.values())

    @property
    def total(self) -> int:
        return sum(t.numel() for t in self._tensors.values())

    @property
    def sparsity(self) -> float:
        return 1.0 - self.kept / max(1, self.total)


PRUNABLE_SETS = {"all": (nn.Conv2d, nn.Linear), "conv": (nn.Conv2d,)}
PRUNABLE_ATTR = "_bench_prunable"  # set on a model whose prunable set is not "all"


def restrict_prunable(model: nn.Module, prunable: str) -> nn.Module:
    """Make `prunable` (a PRUNABLE_SETS name) the layers every mask, count and check of this
    model covers; the others are never pruned nor counted."""
    if prunable not in PRUNABLE_SETS:
        raise ValueError(f"prunable={prunable!r} is invalid; valid: {', '.join(PRUNABLE_SETS)}")
    if prunable != "all":
        setattr(model, PRUNABLE_ATTR, prunable)
    return model


def prunable_modules(model: nn.Module) -> dict[str, nn.Module]:
    kinds = PRUNABLE_SETS[getattr(model, PRUNABLE_ATTR, "all")]
    return {name: m for name, m in model.named_modules() if isinstance(m, kinds)}


def prunable_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: m.weight for name, m in prunable_modules(model).items()}


def by_module_name(mapping: Mapping[str, Any], modules: Mapping[str, nn.Module],
                   what: str = "mask") -> dict[str, Any]:
    """`mapping` keyed by prunable-module name ('layer1.0.conv1'), the spelling masks use. Keys in
    parameter spelling ('layer1.0.conv1.weight', as `named_parameters()` gives) are accepted and
    renamed; any other key is an error that says which names are expected."""
    out: dict[str, Any] = {}
    unknown = []
    for key, value in mapping.items():
        name = key
        if key not in modules and key.endswith(".weight") and key[:-len(".weight")] in modules:
            name = key[:-len(".weight")]
        if name not in modules:
            unknown.append(key)
            continue
        if name in out:
            raise MaskViolation(f"{what} names layer {name!r} twice (as {name!r} and "
                                f"{name + '.weight'!r})")
        out[name] = value
    if unknown:
        expected = list(modules)
        sample = ", ".join(expected[:3]) + (", ..." if len(expected) > 3 else "")
        raise MaskViolation(
            f"{what} names {sorted(unknown)[:5]}, which are not prunable layers; expected the "
            f"names of Conv2d/Linear modules ({len(expected)} here: {sample}) or their weights' "
            f"parameter names ({expected[0] + '.weight' if expected else 'none'}, ...)")
    return out
