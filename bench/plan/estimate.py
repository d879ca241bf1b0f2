"""The GPU-hour estimate that `bench.run --dry-run` prints for a grid's cells (the cost model is
described below; the named grids are in bench/plan/grids.py)."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple, Sequence

from bench.catalog import DATASETS, METHODS
from bench.plan import phase_keys
from bench.plan.phase_keys import shared  # methods and plugins call it as bench.plan.estimate.shared

if TYPE_CHECKING:
    from bench.config import RunConfig

# GPU-hours = Σ over phases of (training images × epochs × the model's cost per image) /
# REFERENCE_IMAGES_PER_SECOND, where cost per image is relative to ResNet-18 (CIFAR variant) on a
# 32×32 image, from multiply-accumulates of one forward pass (RELATIVE_MACS_32, scaled by the
# dataset's image area: ResNet-50 ≈ 2.3×, ResNet-18 at 64×64 = 4×, ResNet-20 ≈ 0.07×).
# Reference: ResNet-18 trains at ≈3,800 CIFAR images/s on one A100-class GPU. This is calibrated
# on COLT's printed 276 minutes for CIFAR-10 at 97.7 %: 24 rounds × 50 epochs of two half-data
# trainings + a 50-epoch ticket = 1,250 epochs × 50,000 images / 16,560 s ≈ 3,800 images/s.
# Each method declares its phases, their cache keys and their work (register_method(cost=...));
# phases shared through the cache (teacher, dense CE network, teacher-guided student, COLT and EGP
# round prefixes) are counted once per cache key, as the harness runs them once. A teacher forward pass inside KD costs a third
# of its training step. Small networks are slower on a GPU than their MACs suggest, so estimates
# for resnet20-size grids are low; the model is for sizing GPU grids, not CPU ones.
REFERENCE_IMAGES_PER_SECOND = 3800.0
# training images per epoch after the 10 % validation split; unknown datasets count as CIFAR
TRAIN_IMAGES = {"cifar10": 45000, "cifar100": 45000, "tinyimagenet": 90000, "digits": 1294,
                "synthetic": 288}


def rounds_to(sparsity: float, fraction: float) -> int:
    """Rounds of removing `fraction` of what is left until at most (1 − sparsity) remains."""
    if sparsity <= 0:
        return 0
    return max(1, math.ceil(math.log(1.0 - sparsity) / math.log(1.0 - fraction) - 1e-9))


# Forward multiply-accumulates per 32×32 image relative to ResNet-18 (CIFAR variant, 10 classes:
# RESNET18_MACS_32), counted over every Conv2d and Linear by `count_macs` (a test keeps this table
# honest). Building the models here instead would make `--dry-run` take seconds.
RESNET18_MACS_32 = 555_422_720
RELATIVE_MACS_32 = {"resnet18": 1.0, "resnet34": 2.087, "resnet50": 2.337, "resnet20": 0.0735,
                    "resnet32": 0.1245, "resnet56": 0.2264, "resnet110": 0.4558, "smallcnn": 0.0220}


def relative_cost(model: str, dataset: str) -> float:
    """Cost of one `dataset` image through `model`, relative to ResNet-18 on a 32×32 image;
    unknown models (timm:, plugins) are assumed to cost what ResNet-18 does."""
    size = DATASETS.get(dataset).image_size if dataset in DATASETS else 32
    return RELATIVE_MACS_32.get(model, 1.0) * (size / 32.0) ** 2


def count_macs(model: str, num_classes: int = 10, channels: int = 3, size: int = 32) -> float:
    """Forward multiply-accumulates of one image through a registered model (Conv2d + Linear)."""
    # deferred: the estimate itself builds no model (torch's start-up); only this check does
    from bench.train.flops import macs_per_image
    from bench.train.models import build_model

    return float(macs_per_image(build_model(model, num_classes, channels, size), channels, size)[0])


class PhaseCost(NamedTuple):
    """One phase of a cell: its cache key (None: the cell's own), name and work in ResNet-18-CIFAR
    image equivalents (images × epochs × relative cost per image)."""

    key: tuple | None
    name: str
    work: float
    # a round of a trajectory shared across sparsities (off with --no-share): the trajectory's
    # identity (bench.plan.estimate.shared of its key without the round), else None
    prefix: tuple | None = None
    # the Slurm plan's dependency: None, after the cell's previous shared phase (the student
    # after the teacher); () for a phase that needs none (a teacher, a dense network)
    after: tuple | None = None


def train_images(cfg: RunConfig) -> float:
    return TRAIN_IMAGES.get(cfg.dataset, 45000) * cfg.train_fraction


def dense_phase(cfg: RunConfig) -> PhaseCost:
    """The dense CE network shared by magnitude, random and EGP (no work when loaded)."""
    phase = phase_keys.dense(cfg)
    work = 0.0 if phase.checkpoint else \
        train_images(cfg) * cfg.dense_epochs * relative_cost(cfg.model, cfg.dataset)
    return PhaseCost(shared(cfg, phase.kind, phase.key), phase.name, work, after=())


def teacher_phase(cfg: RunConfig) -> PhaseCost:
    """The dense teacher shared by the KD methods (no work when loaded)."""
    phase = phase_keys.teacher(cfg)
    work = 0.0 if phase.checkpoint else \
        train_images(cfg) * cfg.teacher_epochs * relative_cost(cfg.teacher, cfg.dataset)
    return PhaseCost(shared(cfg, phase.kind, phase.key), phase.name, work, after=())


def default_cost(cfg: RunConfig) -> list[PhaseCost]:
    """A method that declares no cost: a dense training plus a sparse one."""
    m = relative_cost(cfg.model, cfg.dataset)
    return [dense_phase(cfg), PhaseCost(None, "sparse", train_images(cfg) * cfg.sparse_epochs * m)]


def cell_phases(cfg: RunConfig) -> list[PhaseCost]:
    """The phases of a cell as its method declares them (register_method(cost=...))."""
    method = METHODS.get(cfg.method)
    return (method.cost or default_cost)(cfg)


def format_hours(hours: float) -> str:
    """GPU-hours as the dry run prints them: one decimal, or one significant digit below 0.1."""
    return f"≈{hours:,.1f}" if hours >= 0.1 or hours == 0 else f"≈{hours:.1g}"


def estimate_gpu_hours(cells: Sequence[RunConfig],
                       images_per_second: float = REFERENCE_IMAGES_PER_SECOND,
                       share: bool = True) -> float:
    """Estimated GPU-hours to run `cells` from an empty cache (see the cost model above): a
    shared phase, a COLT or EGP round prefix included, counts once per cache key. `share=False`:
    as with --no-share, round prefixes count once per cell."""
    seen: set[tuple] = set()
    images = 0.0
    for cfg in cells:
        for key, name, work, prefix, _ in cell_phases(cfg):
            if key is None or (prefix and not share):
                key = ("cell", cfg.id, name)  # a matched cell may also be in the grid
            if key in seen:
                continue
            seen.add(key)
            images += work
    return images / images_per_second / 3600.0
