"""Teacher-guided one-shot pruning via context-aware KD (Alim et al., IEEE BigData 2025).

    1. A dense student learns from a cached dense teacher with
       L_total = α·L_CA-KLD + (1 − α)·L_CE, and the importance of every prunable weight is
       accumulated from ∇L_total (EMA with bias correction) during its final epoch(s).
       This stage does not depend on the sparsity: it is cached and shared by every cell.
    2. One global threshold over the importance keeps exactly round((1 − s)·N) weights.
    3. The sparse student is retrained: `ft` with CE, `kd` with L_total and the same teacher.
"""
from __future__ import annotations

import torch

from bench.train.importance import SCORES, ImportanceEMA
from bench.train.losses import KD_NORMS, cross_entropy, teacher_guided_loss
from bench.plan.estimate import PhaseCost, relative_cost, shared, teacher_phase, train_images
from bench.method import Option, register_method
from bench.method.retraining import retrain, snapshot_hooks, snapshot_payload
from bench.plan.phase_keys import snapshot_key
from bench.train.trainer import ce_objective
from methods import controls

OPTIONS = {
    "retrain": Option("kd", choices=("kd", "ft"), help="retraining loss: L_total (kd) or CE (ft)"),
    "kd_norm": Option("sample", choices=KD_NORMS, help="logit normalisation in CA-KLD"),
    "score": Option("taylor", choices=SCORES, help="per-batch saliency"),
    "beta": Option(0.9, check=lambda b: 0.0 < b < 1.0, valid="must be in (0, 1)",
                   help="EMA factor of the importance"),
    "score_epochs": Option(1, check=lambda e: e >= 1, valid="must be >= 1",
                           help="final epochs of the dense student whose batches are scored"),
    "score_batches": Option(0, check=lambda b: b >= 0, valid="must be >= 0",
                            help="if > 0, score only the last this many batches instead"),
    "mask_control": controls.MASK_CONTROL,
}


class TeacherGuidedObjective:
    """L_total on a batch: the teacher runs without gradients on the same augmented images."""

    def __init__(self, teacher, alpha: float, temperature: float, kd_norm: str):
        self.teacher, self.alpha, self.temperature, self.kd_norm = teacher, alpha, temperature, kd_norm

    def __call__(self, model, batch):
        logits = model(batch.x)
        if self.alpha == 0.0:
            return cross_entropy(logits, batch.y), logits
        with torch.no_grad():
            teacher_logits = self.teacher(batch.x)
        loss = teacher_guided_loss(logits, teacher_logits, batch.y, alpha=self.alpha,
                                   temperature=self.temperature, kd_norm=self.kd_norm)
        return loss, logits


STUDENT_KIND = "tg-student"  # the cache kind of the teacher-guided student


def student_key(cfg) -> dict:
    """What determines the teacher-guided dense student and its importance scores."""
    opt = cfg.option_dict
    return {"model": cfg.model, "epochs": cfg.dense_epochs, "teacher": cfg.teacher,
            "teacher_epochs": cfg.teacher_epochs, "alpha": cfg.alpha,
            "temperature": cfg.resolved_temperature(),
            **{k: opt[k] for k in ("kd_norm", "score", "beta", "score_epochs", "score_batches")},
            **snapshot_key(cfg),
            # its importance scores cover the prunable layers only
            **({"prunable": cfg.prunable} if cfg.prunable != "all" else {})}


def tg_cost(cfg) -> list[PhaseCost]:
    """Teacher and student shared (a teacher forward inside KD costs a third of a training step),
    retraining per cell."""
    n, m = train_images(cfg), relative_cost(cfg.model, cfg.dataset)
    t = relative_cost(cfg.teacher, cfg.dataset)
    retrain = m + (t / 3.0 if cfg.option_dict["retrain"] == "kd" else 0.0)
    return [teacher_phase(cfg),
            PhaseCost(shared(cfg, STUDENT_KIND, student_key(cfg)), "student",
                      n * cfg.dense_epochs * (m + t / 3.0)),
            PhaseCost(None, "retrain", n * cfg.sparse_epochs * retrain)]


@register_method("tg-oneshot", options=OPTIONS, uses_temperature=True, cost=tg_cost,
                 label_options=("retrain",), requires_epochs=("teacher_epochs", "dense_epochs"),
                 one_shot=True)
def teacher_guided_oneshot(ctx):
    """Teacher-guided dense training with importance accumulation, one-shot global pruning,
    sparsity-aware retraining."""
    cfg, opt = ctx.config, ctx.options
    teacher = ctx.teacher()
    objective = TeacherGuidedObjective(teacher, cfg.alpha, ctx.temperature, opt["kd_norm"])

    # Stage 1 (cached): dense student under the teacher, importance from ∇L_total.
    def train_student_and_score(scratch):
        student = ctx.make_model()
        phase = ctx.phase("student", cfg.dense_epochs)
        steps_per_epoch = len(ctx.trainer.loader(ctx.data.train, phase.batch_size, train=True))
        total = steps_per_epoch * cfg.dense_epochs
        scored = opt["score_batches"] or steps_per_epoch * min(opt["score_epochs"], cfg.dense_epochs)
        importance = ImportanceEMA(student, opt["score"], opt["beta"],
                                   first_step=max(0, total - scored))
        snapshots = snapshot_hooks(cfg)
        result = ctx.trainer.fit(student, phase, objective, [importance, *snapshots],
                                 checkpoint=scratch / "student.pt")
        return ({"state_dict": {k: v.detach().cpu() for k, v in student.state_dict().items()},
                 "scores": {k: v.cpu() for k, v in importance.scores().items()},
                 **snapshot_payload(snapshots)},
                {"student_test_acc": ctx.trainer.accuracy(student, ctx.data.test),
                 "scored_steps": importance.steps, "phases": {"student": result.as_record()}})

    entry = ctx.cached_phase(STUDENT_KIND, student_key(cfg), train_student_and_score)
    ctx.rewind_points = entry.payload.get("snapshots", {})
    student = ctx.make_model()
    student.load_state_dict(entry.payload["state_dict"])
    ctx.extra["dense_test_acc"] = entry.meta["student_test_acc"]
    ctx.extra["scored_steps"] = entry.meta["scored_steps"]

    # Stage 2: one global threshold over the importance, exact count, no empty layer.
    with ctx.clock("prune"):
        student = controls.prune(ctx, student, entry.payload["scores"], mask_control=opt["mask_control"])

    # Stage 3: sparsity-aware retraining (as the retraining option says); the trainer keeps
    # pruned weights at zero.
    retrain_objective = objective if opt["retrain"] == "kd" else ce_objective
    return retrain(ctx, student, retrain_objective, name="retrain")
