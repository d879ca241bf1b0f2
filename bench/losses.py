"""Losses: CE, classic KD, CA-KLD with logit normalisation, and the combined teacher-guided loss.

All distillation losses detach the teacher side and average over the batch.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

KD_NORMS = ("sample", "batch", "none")
SAMPLE_EPS = 1e-7  # std + eps in the per-sample standardisation
BATCH_EPS = 1e-5  # var + eps in the per-class batch normalisation


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float(), labels)


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """CE against a probability vector per sample (PS-KD's softened targets)."""
    return -(targets * F.log_softmax(logits.float(), dim=1)).sum(1).mean()


def normalize_logits(z: torch.Tensor, mode: str) -> torch.Tensor:
    """`sample`: standardise each sample over classes (Sun et al. 2024); `batch`: each class over
    the batch (LumiNet); `none`: unchanged."""
    z = z.float()
    if mode == "sample":
        mean = z.mean(dim=1, keepdim=True)
        std = z.std(dim=1, keepdim=True)  # unbiased, as torch.std and the reference code
        return (z - mean) / (std + SAMPLE_EPS)
    if mode == "batch":
        mean = z.mean(dim=0, keepdim=True)
        var = z.var(dim=0, unbiased=False, keepdim=True)
        return (z - mean) / torch.sqrt(var + BATCH_EPS)
    if mode == "none":
        return z
    raise ValueError(f"kd_norm={mode!r} is invalid; valid: {', '.join(KD_NORMS)}")


def kl_distill(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * KL(softmax(t/T) || softmax(s/T)), averaged over the batch; teacher side detached."""
    log_p_s = F.log_softmax(student.float() / temperature, dim=1)
    log_p_t = F.log_softmax(teacher.detach().float() / temperature, dim=1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=1).mean()
    return kl * temperature ** 2


def ca_kld(student: torch.Tensor, teacher: torch.Tensor, temperature: float,
           kd_norm: str = "sample") -> torch.Tensor:
    """Context-aware KLD: both sides normalised, then temperature-scaled KL with T^2."""
    return kl_distill(normalize_logits(student, kd_norm),
                      normalize_logits(teacher.detach(), kd_norm), temperature)


def teacher_guided_loss(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, *,
                        alpha: float, temperature: float, kd_norm: str = "sample") -> torch.Tensor:
    """L_total = alpha * L_CA-KLD + (1 - alpha) * L_CE."""
    return alpha * ca_kld(student, teacher, temperature, kd_norm) + \
        (1 - alpha) * cross_entropy(student, labels)
