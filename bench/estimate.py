"""The GPU-hour estimate that `bench.run --dry-run` prints for a grid's cells (the cost model is
described below; the named grids are in bench/grids.py)."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence

from bench.catalog import DATASETS

if TYPE_CHECKING:
    from bench.config import RunConfig

# GPU-hours = Σ over phases of (training images × epochs × the model's cost per image) /
# REFERENCE_IMAGES_PER_SECOND, where cost per image is relative to ResNet-18 (CIFAR variant) on a
# 32×32 image, from multiply-accumulates of one forward pass (RELATIVE_MACS_32, scaled by the
# dataset's image area: ResNet-50 ≈ 2.3×, ResNet-18 at 64×64 = 4×, ResNet-20 ≈ 0.07×).
# Reference: ResNet-18 trains at ≈3,800 CIFAR images/s on one A100-class GPU. This is calibrated
# on COLT's printed 276 minutes for CIFAR-10 at 97.7 %: 24 rounds × 50 epochs of two half-data
# trainings + a 50-epoch ticket = 1,250 epochs × 50,000 images / 16,560 s ≈ 3,800 images/s.
# Phases shared through the cache (teacher, dense CE network, teacher-guided student) are counted
# once per cache key, as the harness runs them once. A teacher forward pass inside KD costs a third
# of its training step. Small networks are slower on a GPU than their MACs suggest, so estimates
# for resnet20-size grids are low; the model is for sizing GPU grids, not CPU ones.
REFERENCE_IMAGES_PER_SECOND = 3800.0
# training images per epoch after the 10 % validation split; unknown datasets count as CIFAR
TRAIN_IMAGES = {"cifar10": 45000, "cifar100": 45000, "tinyimagenet": 90000, "digits": 1294,
                "synthetic": 288}
SD_FORWARDS = {"cskd": 2.0, "dlb": 2.0, "pskd": 1.0}  # samples forwarded per new sample


def _rounds(sparsity: float, fraction: float) -> int:
    """Rounds of removing `fraction` of what is left until at most (1 − sparsity) remains."""
    if sparsity <= 0:
        return 0
    return max(1, math.ceil(math.log(1.0 - sparsity) / math.log(1.0 - fraction) - 1e-9))


# Forward multiply-accumulates per 32×32 image relative to ResNet-18 (CIFAR variant, 10 classes:
# RESNET18_MACS_32), counted over every Conv2d and Linear by `count_macs` (a test keeps this table
# honest). Building the models here instead would make `--dry-run` take seconds.
RESNET18_MACS_32 = 555_422_720
RELATIVE_MACS_32 = {"resnet18": 1.0, "resnet34": 2.087, "resnet50": 2.337, "resnet20": 0.0735,
                    "resnet32": 0.1245, "resnet56": 0.2264, "smallcnn": 0.0220}


def _relative_cost(model: str, dataset: str) -> float:
    """Cost of one `dataset` image through `model`, relative to ResNet-18 on a 32×32 image;
    unknown models (timm:, plugins) are assumed to cost what ResNet-18 does."""
    size = DATASETS.get(dataset).image_size if dataset in DATASETS else 32
    return RELATIVE_MACS_32.get(model, 1.0) * (size / 32.0) ** 2


def count_macs(model: str, num_classes: int = 10, channels: int = 3, size: int = 32) -> float:
    """Forward multiply-accumulates of one image through a registered model (Conv2d + Linear)."""
    from bench.flops import macs_per_image
    from bench.models import build_model

    return float(macs_per_image(build_model(model, num_classes, channels, size), channels, size)[0])


def cell_phases(cfg: RunConfig) -> list[tuple[tuple | None, str, float]]:
    """(cache key or None for cell-specific, phase, ResNet-18-CIFAR image equivalents) of a cell."""
    n = TRAIN_IMAGES.get(cfg.dataset, 45000)
    m = _relative_cost(cfg.model, cfg.dataset)
    opt = cfg.option_dict
    recipe = (cfg.dataset, cfg.seed, cfg.batch_size, cfg.lr, cfg.momentum, cfg.weight_decay,
              cfg.schedule)
    dense = (("dense-ce", cfg.model, cfg.dense_epochs) + recipe, "dense", n * cfg.dense_epochs * m)
    family = cfg.method.split("-")[0]
    if cfg.method == "tg-oneshot":
        t = _relative_cost(cfg.teacher, cfg.dataset)
        student_key = ("tg-student", cfg.model, cfg.dense_epochs, cfg.teacher, cfg.teacher_epochs,
                       cfg.alpha, cfg.resolved_temperature(),
                       tuple(sorted((k, v) for k, v in opt.items()
                                    if k not in ("retrain", "mask_control")))) + recipe
        retrain = m + (t / 3.0 if opt.get("retrain") == "kd" else 0.0)
        return [(("teacher", cfg.teacher, cfg.teacher_epochs) + recipe, "teacher",
                 n * cfg.teacher_epochs * t),
                (student_key, "student", n * cfg.dense_epochs * (m + t / 3.0)),
                (None, "retrain", n * cfg.sparse_epochs * retrain)]
    if cfg.method in ("magnitude", "random"):
        phases = [dense, (None, "finetune", n * cfg.sparse_epochs * m)]
        if opt.get("retrain") == "kd":  # the cached teacher, and its forward in every step
            t = _relative_cost(cfg.teacher, cfg.dataset)
            phases = [dense, (("teacher", cfg.teacher, cfg.teacher_epochs) + recipe, "teacher",
                              n * cfg.teacher_epochs * t),
                      (None, "finetune", n * cfg.sparse_epochs * (m + t / 3.0))]
        if opt.get("match"):  # the matched cell runs first if missing: its phases, once
            from bench.method import method_for_label

            name, options = method_for_label(opt["match"])
            other = cfg.replace(method=name, options=options)
            phases = [(key or ("cell", other.id, phase), phase, work)
                      for key, phase, work in cell_phases(other)] + phases
        return phases
    if cfg.method == "small-dense":  # a narrower network trained for both budgets together
        # its MACs shrink about as its weights do: (1 − s) of the full network's
        return [(None, "train", n * (cfg.dense_epochs + cfg.sparse_epochs) * m * (1 - cfg.sparsity))]
    if family in SD_FORWARDS and cfg.method.endswith(("-simple", "-epsd")):
        return [(None, "sparse", n * cfg.sparse_epochs * m * SD_FORWARDS[family])]
    if cfg.method == "colt":
        # two halves, each on half of the data, per round-epoch: one full epoch's images
        rounds = _rounds(cfg.sparsity, opt.get("prune_fraction", 0.15))
        return [(None, "rounds", n * rounds * cfg.round_epochs * m),
                (None, "ticket", n * cfg.sparse_epochs * m)]
    if cfg.method == "egp":
        rounds = _rounds(cfg.sparsity, opt.get("prune_fraction", 0.5))
        return [dense, (None, "rounds", n * rounds * cfg.round_epochs * m)]
    # a method this model does not know: a dense training plus a sparse one
    return [dense, (None, "sparse", n * cfg.sparse_epochs * m)]


def estimate_gpu_hours(cells: Sequence[RunConfig],
                       images_per_second: float = REFERENCE_IMAGES_PER_SECOND) -> float:
    """Estimated GPU-hours to run `cells` from an empty cache (see the cost model above)."""
    seen: set[tuple] = set()
    images = 0.0
    for cfg in cells:
        for key, phase, work in cell_phases(cfg):
            key = key or ("cell", cfg.id, phase)  # a matched cell may also be in the grid
            if key in seen:
                continue
            seen.add(key)
            images += work
    return images / images_per_second / 3600.0
