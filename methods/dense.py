"""`dense`: the unpruned network, trained with CE (docs/methods.md).

The reference every pruned row is read against, and a way to train a model once and use it
elsewhere: its checkpoint (`<results>/checkpoints/<id>.pt`) is a `teacher_checkpoint` or a
`dense_checkpoint` as it stands. It is the very dense network magnitude, random and EGP start
from (the same cache entry), so it costs nothing extra in a grid that has them.
"""
from __future__ import annotations

from bench.plan.estimate import PhaseCost, dense_phase
from bench.method import register_method


def check_sparsity(config) -> str | None:
    if config.sparsity != 0.0:
        return (f"dense trains the unpruned network: sparsity {config.sparsity:g} is not "
                "reachable; give it sparsity 0 (e.g. --sparsities 0)")
    return None


def dense_cost(cfg) -> list[PhaseCost]:
    return [dense_phase(cfg)]


@register_method("dense", requires_epochs=("dense_epochs",), precheck=check_sparsity,
                 cost=dense_cost)
def dense(ctx):
    """Train the dense network with CE (shared through the cache); no pruning."""
    return ctx.dense_model()
