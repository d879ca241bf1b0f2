"""SNIP (Lee et al., ICLR 2019) as a prunebench plugin: one file, no edit to the package.

Run it beside the built-ins on the quick grid:
    python -m bench.run --plugin docs/examples/snip.py --methods snip,magnitude
    python -m bench.report --plugin docs/examples/snip.py --methods snip,magnitude
"""
import torch

from bench.train.losses import cross_entropy
from bench.masks import prunable_weights
from bench.method import Option, register_method


@register_method("snip", options={"batches": Option(1, check=lambda n: n >= 1,
                                                   valid="must be >= 1",
                                                   help="batches to average the saliency over")})
def snip(ctx):
    """Prune at initialisation by connection sensitivity |g ⊙ w|, then train the sparse net."""
    model = ctx.make_model()  # seeded by the cell's seed
    with ctx.clock("score"):  # the harness times this step and records it as a phase
        weights = prunable_weights(model)
        scores = {name: torch.zeros_like(w) for name, w in weights.items()}
        loader = ctx.trainer.loader(ctx.data.train, ctx.config.batch_size, train=True, salt="snip")
        for _, batch in zip(range(ctx.options["batches"]), loader):
            model.zero_grad()
            cross_entropy(model(batch.x), batch.y).backward()
            for name, w in weights.items():
                scores[name] += (w.grad * w.detach()).abs()
        model.zero_grad()
    with ctx.clock("prune"):
        ctx.prune(model, scores)  # global top-k to the exact count; the mask is attached
    # the one trainer: it keeps pruned weights at zero and records the phase
    ctx.train(model, ctx.phase("train", ctx.config.sparse_epochs))
    return model
