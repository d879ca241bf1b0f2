"""Test metrics from one evaluation pass: top-1 and top-5 accuracy, expected calibration error and
negative log-likelihood, all pure functions of the fp32 logits and the labels.

ECE (Guo et al. 2017; Naeini et al. 2015): the predictions are binned by their confidence (the
top softmax probability) into 15 equal-width bins over [0, 1] (bin b holds confidences in
(b/15, (b+1)/15], the first bin includes 0), and ECE = Σ_b (|B_b|/n)·|acc(B_b) − conf(B_b)|.
NLL is the mean cross-entropy of the true class (natural log).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

ECE_BINS = 15


@dataclass(frozen=True)
class EvalMetrics:
    top1: float
    top5: float
    ece: float
    nll: float


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    """Fraction of samples whose label is among the k largest logits (k capped at the classes)."""
    k = min(k, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    return float((top == labels.view(-1, 1)).any(1).float().mean())


def expected_calibration_error(logits: torch.Tensor, labels: torch.Tensor,
                               bins: int = ECE_BINS) -> float:
    probs = torch.softmax(logits.double(), dim=1)
    confidence, predicted = probs.max(1)
    correct = (predicted == labels).double()
    # bin b = ceil(conf * bins) - 1, so conf = b/bins falls in bin b-1 and conf = 0 in bin 0
    index = (torch.ceil(confidence * bins).long() - 1).clamp(0, bins - 1)
    ece = torch.zeros((), dtype=torch.float64)
    for b in range(bins):
        inside = index == b
        if inside.any():
            gap = (correct[inside].mean() - confidence[inside].mean()).abs()
            ece += inside.double().mean() * gap
    return float(ece)


def negative_log_likelihood(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float(torch.nn.functional.cross_entropy(logits.double(), labels))


def evaluation_metrics(logits: torch.Tensor, labels: torch.Tensor) -> EvalMetrics:
    """All metrics of one evaluation pass; top-1 is argmax agreement, as `Trainer.accuracy` counts
    it, so records keep the same `accuracy.test` they had before these fields existed."""
    logits = logits.detach().float().cpu()
    labels = labels.detach().cpu().long()
    top1 = float((logits.argmax(1) == labels).sum().item() / max(1, len(labels)))
    return EvalMetrics(top1=top1, top5=topk_accuracy(logits, labels, 5),
                       ece=expected_calibration_error(logits, labels),
                       nll=negative_log_likelihood(logits, labels))
