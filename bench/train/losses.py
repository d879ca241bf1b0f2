"""Losses: CE, classic KD, CA-KLD with logit normalisation, and the combined teacher-guided loss.

All distillation losses detach the teacher side and average over the batch.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

KD_NORMS = ("sample", "sample-pop", "batch", "none")
SAMPLE_EPS = 1e-7  # std + eps in the per-sample standardisation
BATCH_EPS = 1e-5  # var + eps in the per-class batch normalisation


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float(), labels)


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """CE against a probability vector per sample (PS-KD's softened targets)."""
    return -(targets * F.log_softmax(logits.float(), dim=1)).sum(1).mean()


def normalize_logits(z: torch.Tensor, mode: str) -> torch.Tensor:
    """`sample`: standardise each sample over classes (Sun et al. 2024) with the unbiased std
    (÷(C−1), as `torch.std` in their code); `sample-pop`: the same with the population std (÷C);
    `batch`: each class over the batch (LumiNet); `none`: unchanged."""
    z = z.float()
    if mode in ("sample", "sample-pop"):
        mean = z.mean(dim=1, keepdim=True)
        std = z.std(dim=1, keepdim=True, correction=1 if mode == "sample" else 0)
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


# ---------------------------------------------------------------------------------------------
# Self-distillation losses (docs/methods.md, the EPSD family): CS-KD, PS-KD, DLB. The "teacher" side of each
# is the network itself at another input or another time, always detached.


def cskd_loss(anchor_logits: torch.Tensor, partner_logits: torch.Tensor,
              anchor_labels: torch.Tensor, *, temperature: float = 4.0,
              lam: float = 1.0) -> torch.Tensor:
    """Class-wise self-KD (Yun et al. 2020): CE on the anchors plus
    lam * T^2 * KL(softmax(z(x')/T) || softmax(z(x)/T)), x' a sample of the anchor's class.
    As in the official code, CE covers the anchors only; the partners act as the teacher."""
    return cross_entropy(anchor_logits, anchor_labels) + \
        lam * kl_distill(anchor_logits, partner_logits, temperature)


def pskd_alpha(alpha_T: float, epoch: int, epochs: int) -> float:
    """PS-KD's progressive weight alpha_t = alpha_T * t / T with t = epoch + 1 (epoch 0-based),
    as in the official code (`alpha_T * ((epoch + 1) / end_epoch)`): alpha_T in the last epoch."""
    return alpha_T * (epoch + 1) / max(1, epochs)


def pskd_loss(logits: torch.Tensor, labels: torch.Tensor, previous: torch.Tensor,
              alpha: float) -> torch.Tensor:
    """Progressive self-KD (Kim et al. 2021): soft-target CE against
    (1 - alpha) * onehot(y) + alpha * p_prev(x), p_prev the sample's last-epoch prediction."""
    onehot = F.one_hot(labels, logits.shape[1]).float()
    return soft_cross_entropy(logits, (1.0 - alpha) * onehot + alpha * previous.detach().float())


def dlb_loss(logits: torch.Tensor, labels: torch.Tensor, previous: torch.Tensor, *,
             tau: float = 3.0, alpha: float = 1.0) -> torch.Tensor:
    """Self-distillation from the last mini-batch (Shen et al. 2022): CE over the whole batch plus
    alpha * tau^2 * KL(softmax(z_prev/tau) || softmax(z/tau)) over its last len(previous) rows,
    the samples repeated from the previous step, whose logits then were `previous`."""
    repeated = logits[logits.shape[0] - previous.shape[0]:]
    return cross_entropy(logits, labels) + alpha * kl_distill(repeated, previous, tau)
