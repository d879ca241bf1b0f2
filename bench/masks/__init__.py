"""Masks over prunable weights: one checked type, one set of pruning functions, enforcement,
accounting.

Prunable weights are the weight tensors of every Conv2d and Linear layer (of every Conv2d alone
on a model restricted with `restrict_prunable(model, "conv")`). A mask (`Mask`) maps each
prunable module's name to a bool tensor shaped like its weight; on a model it is stored as a
`weight_mask` buffer of each prunable module, so it travels in every state_dict.

    mask.py     the Mask type, prunable layers, and the names a mask (or scores) may use
    ranking.py  scores -> Mask: the exact-count, tie and empty-layer rules, written once
    model.py    masks on a model: attach, enforce after each step, count, verify

Every method (built-in or plugin) builds masks through `ranking`'s functions, so two methods never
count or break ties differently. docs/methods.md states the rules.
"""
from bench.masks.mask import (MASK_BUFFER, PRUNABLE_SETS, Mask, MaskViolation, by_module_name,
                              prunable_modules, prunable_weights, restrict_prunable)
from bench.masks.model import (Accounting, SparsityReport, apply_mask, attach_mask, get_mask,
                               mask_gradients, prepare_for_state_dict, prune_model,
                               sparsity_report, verify_mask)
from bench.masks.ranking import (flatten, global_topk_mask, intersect, keep_best, keep_count,
                                 magnitude_scores, prune_global, prune_per_layer, random_scores,
                                 ranking, removal_rank, unflatten)

__all__ = [
    "MASK_BUFFER", "Mask", "MaskViolation", "by_module_name", "prunable_modules",
    "prunable_weights", "PRUNABLE_SETS", "restrict_prunable", "Accounting", "SparsityReport",
    "apply_mask", "attach_mask", "get_mask",
    "mask_gradients", "prepare_for_state_dict", "prune_model", "sparsity_report", "verify_mask",
    "flatten", "global_topk_mask", "intersect", "keep_best", "keep_count", "magnitude_scores",
    "prune_global", "prune_per_layer", "random_scores", "ranking", "removal_rank", "unflatten",
]
