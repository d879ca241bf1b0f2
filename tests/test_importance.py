import pytest
import torch
from torch import nn

from bench.importance import ImportanceEMA, saliency


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
