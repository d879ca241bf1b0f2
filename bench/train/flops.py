"""Cost accounting beyond seconds: parameters, compression, and multiply-accumulates per image.

Dense MACs count every weight of every Conv2d and Linear once per output position; sparse MACs
count only the weights the mask keeps (a theoretical figure: what an ideal sparse kernel does).
"""
from __future__ import annotations

import torch
from torch import nn

from bench.masks import get_mask, prunable_modules


@torch.no_grad()
def macs_per_image(model: nn.Module, in_channels: int, image_size: int) -> tuple[int, int]:
    """(dense, sparse) multiply-accumulates for one image, measured with forward hooks."""
    modules = prunable_modules(model)
    mask = get_mask(model)
    positions: dict[str, int] = {}

    def hook(name):
        def record(module, inputs, output):
            # output positions per image: H*W for a conv, 1 for a linear (per sample)
            positions[name] = output[0].numel() // output.shape[1] if output.dim() > 2 else 1
        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in modules.items()]
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        model(torch.zeros(1, in_channels, image_size, image_size, device=device))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    # A conv's weight (out, in/groups, kh, kw) does weight.numel() MACs per output position.
    dense = sparse = 0
    for name, module in modules.items():
        kept = int(mask[name].sum()) if mask is not None else int((module.weight != 0).sum())
        dense += positions.get(name, 0) * module.weight.numel()
        sparse += positions.get(name, 0) * kept
    return dense, sparse


def cost_accounting(model: nn.Module, in_channels: int, image_size: int) -> dict[str, float]:
    params = list(model.parameters())
    total = sum(p.numel() for p in params)
    nonzero = sum(int((p != 0).sum()) for p in params)
    dense, sparse = macs_per_image(model, in_channels, image_size)
    return {"params_total": total, "params_nonzero": nonzero,
            "compression_ratio": total / max(1, nonzero),
            "macs_dense": dense, "macs_sparse": sparse,
            "theoretical_speedup": dense / max(1, sparse)}
