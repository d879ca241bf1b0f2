import pytest
import torch
from torch import nn

from bench.train.importance import ImportanceEMA, saliency
from bench.train.trainer import Phase, TrainState


def test_constant_score_comes_back_exactly_from_the_first_step():
    model = nn.Linear(3, 2)
    ema = ImportanceEMA(model, beta=0.9)
    const = [torch.full_like(w, 0.37) for w in ema.weights]
    for step in range(5):
        ema.update([c.clone() for c in const])
        assert torch.allclose(ema.scores()[ema.names[0]], const[0], rtol=1e-6)


def test_ema_recurrence_by_hand():
    model = nn.Linear(1, 1, bias=False)
    ema = ImportanceEMA(model, beta=0.5)
    for a in (1.0, 3.0):
        ema.update([torch.tensor([[a]])])
    # v1 = 0.5, v2 = 0.25 + 1.5 = 1.75; corrected by 1 - 0.25
    assert float(ema.scores()[ema.names[0]]) == pytest.approx(1.75 / 0.75)


def test_saliency_kinds():
    w, g = [torch.tensor([2.0, -3.0])], [torch.tensor([-0.5, 0.25])]
    assert saliency(w, g, "taylor")[0].tolist() == [1.0, 0.75]
    assert saliency(w, g, "grad")[0].tolist() == [0.5, 0.25]
    assert saliency(w, g, "grad2")[0].tolist() == [0.25, 0.0625]
    with pytest.raises(ValueError, match="valid: taylor, grad, grad2"):
        saliency(w, g, "fisher")


def test_no_scored_step_is_an_error():
    with pytest.raises(RuntimeError, match="no importance"):
        ImportanceEMA(nn.Linear(2, 2)).scores()


@pytest.mark.parametrize("score", ["taylor", "grad", "grad2"])
def test_ema_golden_through_after_backward(score):
    """β = 0.9 over four steps with fixed weights and gradients, against the recurrence written
    out in plain Python: a_t per kind, v_t = β v_{t−1} + (1 − β) a_t, ŝ = v_t / (1 − β^t); the
    step before `first_step` is not scored."""
    model = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.5, -2.0]]))
    ema = ImportanceEMA(model, score=score, beta=0.9, first_step=1)
    grads = [[1.0, 0.5], [-2.0, 0.25], [0.5, -1.0], [3.0, 0.0], [-1.0, 2.0]]
    kind = {"taylor": lambda w, g: abs(w * g), "grad": lambda w, g: abs(g),
            "grad2": lambda w, g: g * g}[score]
    v, t = [0.0, 0.0], 0
    state = TrainState(model, Phase("p", 1), optimizer=None)
    for step, g in enumerate(grads):
        model.weight.grad = torch.tensor([g])
        state.step = step
        ema.after_backward(state)
        if step >= 1:
            t += 1
            v = [0.9 * vi + 0.1 * kind(w, gi) for vi, w, gi in zip(v, (0.5, -2.0), g)]
    assert ema.steps == t == 4
    want = [vi / (1 - 0.9 ** t) for vi in v]
    assert ema.scores()[ema.names[0]][0].tolist() == pytest.approx(want, rel=1e-6)
