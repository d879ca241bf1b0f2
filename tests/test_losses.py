import math

import pytest
import torch

from bench.losses import ca_kld, kl_distill, normalize_logits, teacher_guided_loss


def softmax(xs):
    m = max(xs)
    e = [math.exp(x - m) for x in xs]
    return [v / sum(e) for v in e]


def hand_kl(p, q):
    return sum(a * math.log(a / b) for a, b in zip(p, q))


S = [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]]
T = [[2.0, 0.0, 1.0], [1.0, 1.0, 2.5]]


def test_sample_standardisation_by_hand():
    z = normalize_logits(torch.tensor(S), "sample")
    row = S[0]
    mean = sum(row) / 3
    std = math.sqrt(sum((x - mean) ** 2 for x in row) / 2)  # unbiased
    assert z[0].tolist() == pytest.approx([(x - mean) / (std + 1e-7) for x in row], rel=1e-6)


def test_batch_normalisation_by_hand():
    z = normalize_logits(torch.tensor(S), "batch")
    col = [S[0][1], S[1][1]]
    mean = sum(col) / 2
    var = sum((x - mean) ** 2 for x in col) / 2
    assert z[:, 1].tolist() == pytest.approx([(x - mean) / math.sqrt(var + 1e-5) for x in col])


@pytest.mark.parametrize("norm", ["sample", "batch", "none"])
def test_ca_kld_matches_a_hand_computation(norm):
    temp = 3.0
    zs = normalize_logits(torch.tensor(S), norm).tolist()
    zt = normalize_logits(torch.tensor(T), norm).tolist()
    expected = sum(hand_kl(softmax([x / temp for x in t]), softmax([x / temp for x in s]))
                   for s, t in zip(zs, zt)) / 2 * temp ** 2  # batch mean, T^2
    got = ca_kld(torch.tensor(S), torch.tensor(T), temp, norm)
    assert float(got) == pytest.approx(expected, rel=1e-5)


def test_none_is_classic_hinton_kd():
    s, t = torch.tensor(S), torch.tensor(T)
    assert float(ca_kld(s, t, 4.0, "none")) == pytest.approx(float(kl_distill(s, t, 4.0)))


def test_total_loss_mixes_kd_and_ce_and_only_the_student_gets_gradients():
    s = torch.tensor(S, requires_grad=True)
    t = torch.tensor(T, requires_grad=True)
    y = torch.tensor([1, 2])
    total = teacher_guided_loss(s, t, y, alpha=0.9, temperature=3.0)
    kd = ca_kld(s, t, 3.0)
    ce = torch.nn.functional.cross_entropy(s, y)
    assert float(total.detach()) == pytest.approx(float((0.9 * kd + 0.1 * ce).detach()), rel=1e-6)
    total.backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None


def test_identical_logits_give_zero_divergence():
    s = torch.tensor(S)
    assert float(ca_kld(s, s.clone(), 3.0)) == pytest.approx(0.0, abs=1e-6)
