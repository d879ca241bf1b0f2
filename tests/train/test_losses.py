import math

import pytest
import torch

from bench.train.losses import (KD_NORMS, ca_kld, cross_entropy, kl_distill, normalize_logits,
                          soft_cross_entropy, teacher_guided_loss)


def softmax(xs):
    m = max(xs)
    e = [math.exp(x - m) for x in xs]
    return [v / sum(e) for v in e]


def hand_kl(p, q):
    return sum(a * math.log(a / b) for a, b in zip(p, q))


S = [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]]
T = [[2.0, 0.0, 1.0], [1.0, 1.0, 2.5]]


def hand_norm(rows, mode):
    """The reference formulas of docs/methods.md (its EPSD-family section), in plain Python."""
    if mode in ("sample", "sample-pop"):
        out = []
        for row in rows:
            mean = sum(row) / len(row)
            dof = len(row) - 1 if mode == "sample" else len(row)
            std = math.sqrt(sum((x - mean) ** 2 for x in row) / dof)
            out.append([(x - mean) / (std + 1e-7) for x in row])
        return out
    if mode == "batch":
        cols = []
        for col in zip(*rows):
            mean = sum(col) / len(col)
            var = sum((x - mean) ** 2 for x in col) / len(col)
            cols.append([(x - mean) / math.sqrt(var + 1e-5) for x in col])
        return [list(r) for r in zip(*cols)]
    return [list(r) for r in rows]


def test_kd_norms_are_the_documented_four():
    assert KD_NORMS == ("sample", "sample-pop", "batch", "none")


def test_sample_standardisation_by_hand():
    z = normalize_logits(torch.tensor(S), "sample")
    row = S[0]  # mean 7/6; unbiased var (1/36 + 25/36 + 16/36) / 2 = 21/36
    std = math.sqrt(21 / 36)
    assert z[0].tolist() == pytest.approx([(x - 7 / 6) / (std + 1e-7) for x in row], rel=1e-6)


def test_population_std_option_by_hand():
    z = normalize_logits(torch.tensor(S), "sample-pop")
    std = math.sqrt(14 / 36)  # the same sum of squares, 42/36, over 3, not 2
    assert z[0].tolist() == pytest.approx([(x - 7 / 6) / (std + 1e-7) for x in S[0]], rel=1e-6)
    ratio = normalize_logits(torch.tensor(S), "sample")[0] / z[0]
    assert ratio.tolist() == pytest.approx([math.sqrt(2 / 3)] * 3, rel=1e-6)


def test_batch_normalisation_by_hand():
    z = normalize_logits(torch.tensor(S), "batch")
    col = [S[0][1], S[1][1]]  # mean 0.5, population var 2.25
    assert z[:, 1].tolist() == pytest.approx([(x - 0.5) / math.sqrt(2.25 + 1e-5) for x in col])


@pytest.mark.parametrize("norm", KD_NORMS)
def test_ca_kld_matches_a_hand_computation(norm):
    temp = 3.0
    zs, zt = hand_norm(S, norm), hand_norm(T, norm)
    expected = sum(hand_kl(softmax([x / temp for x in t]), softmax([x / temp for x in s]))
                   for s, t in zip(zs, zt)) / 2 * temp ** 2  # batch mean, T^2
    got = ca_kld(torch.tensor(S), torch.tensor(T), temp, norm)
    assert float(got) == pytest.approx(expected, rel=1e-5)


def test_ca_kld_forms_give_different_numbers():
    values = [float(ca_kld(torch.tensor(S), torch.tensor(T), 3.0, n)) for n in KD_NORMS]
    assert len({round(v, 6) for v in values}) == len(KD_NORMS)


def test_cross_entropy_golden():
    # -log softmax: row 0 label 1, row 1 label 2
    want = (-math.log(softmax(S[0])[1]) - math.log(softmax(S[1])[2])) / 2
    assert float(cross_entropy(torch.tensor(S), torch.tensor([1, 2]))) == pytest.approx(want)
    assert float(cross_entropy(torch.tensor([[0.0, 0.0]]), torch.tensor([0]))) == \
        pytest.approx(math.log(2))


def test_soft_cross_entropy_golden():
    targets = [[0.2, 0.7, 0.1], [0.0, 0.5, 0.5]]
    want = -sum(sum(t * math.log(p) for t, p in zip(tr, softmax(s)))
                for s, tr in zip(S, targets)) / 2
    got = soft_cross_entropy(torch.tensor(S), torch.tensor(targets))
    assert float(got) == pytest.approx(want, rel=1e-6)


def test_hinton_kd_golden():
    temp = 4.0
    want = temp ** 2 * sum(hand_kl(softmax([x / temp for x in t]), softmax([x / temp for x in s]))
                           for s, t in zip(S, T)) / 2
    assert float(kl_distill(torch.tensor(S), torch.tensor(T), temp)) == pytest.approx(want,
                                                                                    rel=1e-6)


def test_teacher_guided_loss_golden():
    temp, alpha = 3.0, 0.9
    zs, zt = hand_norm(S, "sample"), hand_norm(T, "sample")
    kd = sum(hand_kl(softmax([x / temp for x in t]), softmax([x / temp for x in s]))
             for s, t in zip(zs, zt)) / 2 * temp ** 2
    ce = (-math.log(softmax(S[0])[1]) - math.log(softmax(S[1])[2])) / 2
    got = teacher_guided_loss(torch.tensor(S), torch.tensor(T), torch.tensor([1, 2]),
                              alpha=alpha, temperature=temp)
    assert float(got) == pytest.approx(alpha * kd + (1 - alpha) * ce, rel=1e-5)


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
