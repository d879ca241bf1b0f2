"""EGP's measurement (methods/egp.py): the entropy of each ReLU's on/off states, attributed to the
conv that feeds it. For one batch and one ReLU, p_c is the fraction of positive inputs of channel
c (over batch and space); channels with p_c in {0, 1} are left out and the batch's value is the
mean binary entropy (bits) of the others, 0 if none is left. A layer's H_l is the mean over the
batches seen. Each ReLU call is attributed to the Conv2d that ran last among its siblings (modules
with the same parent), and read by a forward *pre*-hook, before an in-place ReLU overwrites it."""
from __future__ import annotations

import math

import torch
from torch import nn

from bench.masks import prunable_modules


def binary_entropy(p: torch.Tensor) -> torch.Tensor:
    """H(p) in bits, elementwise; H(0) = H(1) = 0."""
    p = p.double()
    return -(torch.special.xlogy(p, p) + torch.special.xlogy(1 - p, 1 - p)) / math.log(2)


def relu_entropy(preact: torch.Tensor) -> float:
    """One batch's entropy of a ReLU's states: mean binary entropy of the per-channel fraction of
    positive inputs, over the channels that are neither always on nor always off (0 if none).
    `preact` is N x C (x H x W)."""
    dims = [d for d in range(preact.dim()) if d != 1]
    p = (preact > 0).float().mean(dim=dims)
    ambiguous = (p > 0) & (p < 1)
    if not bool(ambiguous.any()):
        return 0.0
    return float(binary_entropy(p[ambiguous]).mean())


class ReluEntropy:
    """Hooks that accumulate, per conv feeding a ReLU, the batch entropies of that ReLU's input.

        with ReluEntropy(model) as probe:
            for batch in batches: model(batch.x)
        probe.entropies()   # {conv name: H_l}
    """

    def __init__(self, model: nn.Module):
        self.model = model
        self.sums: dict[str, float] = {}
        self.batches = 0
        self._last_conv: dict[str, str] = {}  # parent name -> last sibling conv that ran
        self._handles: list = []

    def __enter__(self) -> "ReluEntropy":
        self._handles.append(self.model.register_forward_pre_hook(self._on_batch))
        for name, module in self.model.named_modules():
            parent = name.rpartition(".")[0]
            if isinstance(module, nn.Conv2d):
                self._handles.append(module.register_forward_hook(self._conv_hook(name, parent)))
            elif isinstance(module, nn.ReLU):
                self._handles.append(module.register_forward_pre_hook(self._relu_hook(parent)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _on_batch(self, module, inputs) -> None:
        self.batches += 1
        self._last_conv.clear()

    def _conv_hook(self, name: str, parent: str):
        def hook(module, inputs, output):
            self._last_conv[parent] = name
        return hook

    def _relu_hook(self, parent: str):
        def hook(module, inputs):
            conv = self._last_conv.get(parent)
            if conv is not None:
                self._record(conv, inputs[0])
        return hook

    def _record(self, conv: str, preact: torch.Tensor) -> None:
        self.sums[conv] = self.sums.get(conv, 0.0) + relu_entropy(preact)

    def entropies(self) -> dict[str, float]:
        return {name: total / max(1, self.batches) for name, total in self.sums.items()}


class _ReluFeeders(ReluEntropy):
    """The same attribution of ReLUs to convs, measuring nothing."""

    def _record(self, conv: str, preact: torch.Tensor) -> None:
        self.sums.setdefault(conv, 0.0)


@torch.no_grad()
def relu_fed_convs(model: nn.Module, channels: int, image_size: int) -> list[str]:
    """The convs EGP prunes (those that feed a ReLU), in the model's module order, found by one
    forward pass of a blank image through the same hooks that measure the entropies."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with _ReluFeeders(model) as probe:
        model(torch.zeros(1, channels, image_size, image_size, device=device))
    model.train(was_training)
    return [n for n in prunable_modules(model) if n in probe.sums]


@torch.no_grad()
def layer_entropies(model: nn.Module, trainer, split, *, batches: int, batch_size: int,
                    salt: str) -> dict[str, float]:
    """H_l for every conv that feeds a ReLU, over `batches` training batches (0: all)."""
    model.eval()
    with ReluEntropy(model) as probe, trainer.autocast():
        for i, batch in enumerate(trainer.loader(split, batch_size, train=True, salt=salt)):
            if batches and i >= batches:
                break
            model(batch.x)
    return probe.entropies()
