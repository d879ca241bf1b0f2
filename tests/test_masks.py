import pytest
import torch
from torch import nn

from bench.masks import (MaskViolation, attach_mask, get_mask, global_topk_mask, keep_count,
                         magnitude_scores, prepare_for_state_dict, sparsity_report, verify_mask)


def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 6 * 6, 3))


@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.5, 0.9, 0.98, 0.999])
def test_global_topk_keeps_the_exact_count(sparsity):
    g = torch.Generator().manual_seed(1)
    scores = {"a": torch.rand(7, 11, generator=g), "b": torch.rand(300, generator=g),
              "c": torch.rand(5, generator=g)}
    mask, _ = global_topk_mask(scores, sparsity)
    assert sum(int(m.sum()) for m in mask.values()) == keep_count(382, sparsity)
    assert all(m.dtype == torch.bool and m.shape == scores[k].shape for k, m in mask.items())


def test_one_threshold_over_raw_scores():
    scores = {"a": torch.tensor([1.0, 2.0, 3.0]), "b": torch.tensor([10.0, 20.0, 0.5])}
    mask, guarded = global_topk_mask(scores, 0.5)
    assert mask["a"].tolist() == [False, False, True] and mask["b"].tolist() == [True, True, False]
    assert guarded == []


def test_ties_are_broken_by_position_deterministically():
    scores = {"a": torch.ones(4), "b": torch.ones(4)}
    mask, _ = global_topk_mask(scores, 0.5, min_per_layer=0)
    assert mask["a"].tolist() == [True] * 4 and mask["b"].tolist() == [False] * 4


def test_no_layer_is_emptied_and_the_count_stays_exact():
    scores = {"big": torch.arange(100.0) + 100, "small": torch.tensor([1.0, 2.0])}
    mask, guarded = global_topk_mask(scores, 0.9)
    assert guarded == ["small"]
    assert mask["small"].tolist() == [False, True]
    assert int(mask["big"].sum()) + int(mask["small"].sum()) == keep_count(102, 0.9)
    assert not mask["big"][90]  # the weakest original survivor made room


def test_nan_scores_are_rejected():
    with pytest.raises(ValueError, match="NaN"):
        global_topk_mask({"a": torch.tensor([1.0, float("nan")])}, 0.5)


def test_attached_mask_zeroes_weights_and_reports_both_sparsities():
    model = net()
    mask, _ = global_topk_mask(magnitude_scores(model), 0.75)
    attach_mask(model, mask)
    report = verify_mask(model, 0.75)
    assert report.prunable_total == 36 + 432
    assert report.prunable_kept == keep_count(468, 0.75)
    assert report.prunable_sparsity == pytest.approx(0.75, abs=1e-3)
    # all-parameter sparsity counts biases and BatchNorm too, so it is lower
    assert 0 < report.overall_sparsity < report.prunable_sparsity
    assert set(report.layers) == {"0", "4"}


def test_pruned_weights_stay_zero_under_momentum_and_weight_decay():
    from bench.data import load_dataset
    from bench.trainer import Phase, Trainer

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 36, 4))
    # give the optimizer something to remember: momentum built up while dense
    trainer = Trainer(load_dataset("synthetic"), progress=False)
    trainer.fit(model, Phase("dense", 1, batch_size=32, weight_decay=0.1))
    mask, _ = global_topk_mask(magnitude_scores(model), 0.9)
    attach_mask(model, mask)
    trainer.fit(model, Phase("sparse", 2, batch_size=32, weight_decay=0.1, lr=0.5))
    for name, m in get_mask(model).items():
        w = dict(model.named_modules())[name].weight
        assert torch.all(w[~m] == 0) and torch.any(w[m] != 0)
    verify_mask(model, 0.9)


def test_verify_catches_revived_weights_and_wrong_counts():
    model = net()
    attach_mask(model, global_topk_mask(magnitude_scores(model), 0.5)[0])
    with pytest.raises(MaskViolation, match="needs"):
        verify_mask(model, 0.6)
    with torch.no_grad():
        m = model[0].weight_mask
        model[0].weight[~m] = 1.0
    with pytest.raises(MaskViolation, match="pruned weights of 0 are non-zero"):
        verify_mask(model)


def test_checkpoint_round_trip_keeps_the_mask():
    model = net()
    attach_mask(model, global_topk_mask(magnitude_scores(model), 0.8)[0])
    state = model.state_dict()
    assert "0.weight_mask" in state and "4.weight_mask" in state
    fresh = net()
    prepare_for_state_dict(fresh, state)
    fresh.load_state_dict(state)
    assert sparsity_report(fresh) == sparsity_report(model)
    verify_mask(fresh, 0.8)


def test_enforcement_follows_a_changed_mask_and_channels_last_layout():
    from bench.masks import apply_mask, mask_gradients

    model = net()
    scores = magnitude_scores(model)
    attach_mask(model, global_topk_mask(scores, 0.5)[0])
    apply_mask(model)  # caches the survivors' positions
    attach_mask(model, global_topk_mask({k: -v for k, v in scores.items()}, 0.5)[0])
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(1.0)
    apply_mask(model)
    verify_mask(model, 0.5)  # the second mask, not the cached first one
    model = nn.Sequential(nn.Conv2d(3, 4, 3))
    attach_mask(model, global_topk_mask(magnitude_scores(model), 0.7)[0])
    model = model.to(memory_format=torch.channels_last)
    w = model[0].weight
    assert not w.is_contiguous()
    with torch.no_grad():
        w.fill_(2.0)
    w.grad = torch.ones_like(w)
    apply_mask(model)
    mask_gradients(model)
    m = model[0].weight_mask
    assert torch.all(w[~m] == 0) and torch.all(w[m] == 2.0)
    assert torch.all(w.grad[~m] == 0) and torch.all(w.grad[m] == 1.0)
