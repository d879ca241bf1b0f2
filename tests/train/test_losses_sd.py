"""The self-distillation losses of bench/train/losses.py against hand computations on small tensors."""
import math

import pytest
import torch

from bench.train.losses import cskd_loss, dlb_loss, pskd_alpha, pskd_loss


def softmax(row, t=1.0):
    e = [math.exp(v / t) for v in row]
    return [v / sum(e) for v in e]


def ce(row, label):
    return -math.log(softmax(row)[label])


def kl(p, q):
    return sum(a * math.log(a / b) for a, b in zip(p, q))


def test_cskd_loss_is_anchor_ce_plus_lambda_t2_kl_from_partner():
    anchors = [[1.0, 2.0, 0.0], [0.5, -1.0, 2.0]]
    partners = [[0.0, 1.0, 3.0], [1.0, 1.0, -2.0]]
    labels = [1, 2]
    T, lam = 2.0, 0.5
    want = sum(ce(a, y) for a, y in zip(anchors, labels)) / 2 + lam * T * T * sum(
        kl(softmax(p, T), softmax(a, T)) for a, p in zip(anchors, partners)) / 2
    got = cskd_loss(torch.tensor(anchors), torch.tensor(partners), torch.tensor(labels),
                    temperature=T, lam=lam)
    assert got.item() == pytest.approx(want, rel=1e-5)


def test_cskd_partner_side_gets_no_gradient():
    anchors = torch.randn(4, 3, requires_grad=True)
    partners = torch.randn(4, 3, requires_grad=True)
    cskd_loss(anchors, partners, torch.tensor([0, 1, 2, 0])).backward()
    assert anchors.grad is not None and anchors.grad.abs().sum() > 0
    assert partners.grad is None


def test_pskd_loss_is_soft_target_ce():
    logits = [[2.0, 0.0, -1.0], [0.0, 1.0, 1.0]]
    labels = [0, 2]
    previous = [[0.6, 0.3, 0.1], [0.2, 0.5, 0.3]]
    alpha = 0.3
    want = 0.0
    for z, y, p in zip(logits, labels, previous):
        target = [(1 - alpha) * (c == y) + alpha * p[c] for c in range(3)]
        want -= sum(t * math.log(s) for t, s in zip(target, softmax(z)))
    want /= 2
    got = pskd_loss(torch.tensor(logits), torch.tensor(labels), torch.tensor(previous), alpha)
    assert got.item() == pytest.approx(want, rel=1e-5)


def test_pskd_with_alpha_zero_is_ce():
    logits, labels = torch.randn(5, 4), torch.tensor([0, 1, 2, 3, 0])
    got = pskd_loss(logits, labels, torch.softmax(torch.randn(5, 4), 1), 0.0)
    assert got.item() == pytest.approx(torch.nn.functional.cross_entropy(logits, labels).item(),
                                       rel=1e-6)


def test_pskd_alpha_follows_the_official_schedule():
    # official: alpha_t = alpha_T * ((epoch + 1) / end_epoch), epoch 0-based
    assert [pskd_alpha(0.8, e, 4) for e in range(4)] == pytest.approx([0.2, 0.4, 0.6, 0.8])


def test_dlb_loss_is_ce_over_batch_plus_alpha_tau2_kl_on_repeated_rows():
    logits = [[1.0, 0.0, 0.0], [0.0, 2.0, 1.0], [1.0, 1.0, 3.0], [-1.0, 0.5, 0.0]]
    labels = [0, 1, 2, 1]
    previous = [[0.5, 0.0, 2.0], [0.0, 1.0, 0.0]]  # logits of rows 2 and 3 one step earlier
    tau, alpha = 3.0, 0.7
    want = sum(ce(z, y) for z, y in zip(logits, labels)) / 4 + alpha * tau * tau * sum(
        kl(softmax(p, tau), softmax(z, tau)) for z, p in zip(logits[2:], previous)) / 2
    got = dlb_loss(torch.tensor(logits), torch.tensor(labels), torch.tensor(previous),
                   tau=tau, alpha=alpha)
    assert got.item() == pytest.approx(want, rel=1e-5)
