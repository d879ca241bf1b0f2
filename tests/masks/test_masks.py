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
    from bench.train.trainer import Phase, Trainer

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


# --- the Mask type ---------------------------------------------------------------------------


def test_mask_is_boolean_and_counts_itself():
    from bench.masks import Mask

    mask = Mask({"a": torch.tensor([1.0, 0.0, 1.0, 1.0]), "b": torch.tensor([[0, 0], [0, 1]])})
    assert mask["a"].dtype == torch.bool and mask["b"].dtype == torch.bool
    assert (mask.kept, mask.total) == (4, 8)
    assert mask.sparsity == 0.5
    assert mask.layer_counts() == {"a": (3, 4), "b": (1, 4)}
    assert mask.layer_sparsity() == {"a": 0.25, "b": 0.75}
    with pytest.raises(MaskViolation, match="mask of a holds values other than 0 and 1"):
        Mask({"a": torch.tensor([1.0, 0.5])})
    assert Mask.ones({"w": torch.zeros(2, 3)}).kept == 6


def test_attach_rejects_a_float_mask_that_would_scale_weights():
    model = net()
    with pytest.raises(MaskViolation, match="values other than 0 and 1"):
        attach_mask(model, {"0": torch.full_like(model[0].weight, 0.5)})


# --- scores keyed by module or by parameter name -----------------------------------------------


def test_scores_keyed_by_parameter_name_give_the_same_mask():
    from bench.masks import prune_model

    by_module, by_param = net(), net()
    scores = magnitude_scores(by_module)
    prune_model(by_module, scores, 0.8)
    prune_model(by_param, {f"{n}.weight": s for n, s in scores.items()}, 0.8)
    assert get_mask(by_param) == get_mask(by_module)
    verify_mask(by_param, 0.8)
    attach_mask(by_param, {"4.weight": torch.zeros_like(by_param[4].weight)})  # attach too
    assert int(get_mask(by_param)["4"].sum()) == 0


def test_unknown_names_get_an_error_that_lists_the_expected_ones():
    model = net()
    with pytest.raises(MaskViolation, match=r"\['conv9.weight'\], which are not prunable layers; "
                                            r"expected .*2 here: 0, 4\) .*0\.weight"):
        attach_mask(model, {"conv9.weight": torch.ones(3)})
    with pytest.raises(MaskViolation, match="names layer '0' twice"):
        attach_mask(model, {"0": torch.ones_like(model[0].weight),
                            "0.weight": torch.ones_like(model[0].weight)})


# --- the shared pruning functions ----------------------------------------------------------------


def test_prune_global_removes_the_weakest_survivors_and_breaks_ties_by_position():
    from bench.masks import prune_global

    scores = {"x": torch.tensor([5.0, 1.0, 3.0, 0.5]), "y": torch.tensor([1.0, 4.0, 1.0, 9.0])}
    alive = {"x": torch.tensor([True, True, True, False]), "y": torch.ones(4, dtype=torch.bool)}
    # alive scores 5 1 3 | 1 4 1 9; the three weakest are the three 1.0s (x1, y0, y2); removing
    # two of them takes the later ones first (y2, then y0): the earlier weight is kept
    mask = prune_global(scores, alive, 2)
    assert mask["x"].tolist() == [True, True, True, False]
    assert mask["y"].tolist() == [False, True, False, True]
    assert prune_global(scores, alive, 0) == alive


def test_removal_rank_is_the_order_prune_global_follows():
    from bench.masks import flatten, prune_global, removal_rank

    g = torch.Generator().manual_seed(3)
    scores = {"a": torch.randint(0, 5, (6, 5), generator=g).float(),  # many ties
              "b": torch.randint(0, 5, (17,), generator=g).float()}
    alive = {n: torch.rand(s.shape, generator=g) > 0.3 for n, s in scores.items()}
    alive_flat = flatten(alive).bool()
    rank = removal_rank(flatten(scores), alive_flat)
    for count in (0, 1, 7, int(alive_flat.sum())):
        removed = torch.nonzero(alive_flat).flatten()[rank < count]
        expected = alive_flat.clone()
        expected[removed] = False
        assert torch.equal(flatten(prune_global(scores, alive, count)), expected)


def test_prune_per_layer_takes_each_layers_budget_from_its_survivors():
    from bench.masks import prune_per_layer

    scores = {"a": torch.tensor([0.4, 0.1, 0.3, 0.2]), "b": torch.tensor([2.0, 2.0, 1.0])}
    alive = {"a": torch.tensor([True, True, False, True]), "b": torch.ones(3, dtype=torch.bool)}
    mask = prune_per_layer(scores, alive, {"a": 2, "b": 1})
    assert mask["a"].tolist() == [True, False, False, False]  # 0.1 and 0.2 go; 0.3 was dead
    assert mask["b"].tolist() == [True, True, False]
    assert prune_per_layer(scores, alive, {"b": 2})["b"].tolist() == [True, False, False]  # tie
    assert torch.equal(prune_per_layer(scores, alive, {"b": 2})["a"], alive["a"])


# --- accounting ------------------------------------------------------------------------------


def test_the_record_carries_target_and_accounting_and_counts_over_its_layers():
    from bench.masks import Accounting

    model = net()
    attach_mask(model, {"0": torch.arange(36).view(4, 1, 3, 3) < 9})  # conv keeps 9 of 36
    report = verify_mask(model, 0.75, Accounting("conv", ("0",)))
    record = report.as_record(0.75, Accounting("conv", ("0",)))
    assert (record["target"], record["over"]) == (0.75, "conv")
    assert (record["over_kept"], record["over_total"], record["over_sparsity"]) == (9, 36, 0.75)
    assert record["prunable_kept"] == 9 + 432 and record["prunable"] == pytest.approx(27 / 468)
    plain = report.as_record()
    assert (plain["target"], plain["over"]) == (None, "prunable") and "over_kept" not in plain
    with pytest.raises(MaskViolation, match="keeps 9 of 36 weights of the conv layers; sparsity "
                                            "0.5 needs 18"):
        verify_mask(model, 0.5, Accounting("conv", ("0",)))


@pytest.mark.e2e
def test_a_plugin_that_keys_scores_by_parameter_name_runs_and_a_wrong_name_is_explained(
        tmp_path, monkeypatch):
    from bench.catalog import METHODS
    from bench.exec.cell import RunOptions, run_cell
    from bench.config import RunConfig
    from bench.method import Method
    from bench.store import ResultStore

    def by_parameter(ctx):
        model = ctx.dense_model()
        ctx.prune(model, {n: p.detach().abs() for n, p in model.named_parameters()
                          if n.endswith(".weight") and p.dim() > 1})  # '0.weight', '3.weight', ...
        return model

    def misnamed(ctx):
        model = ctx.dense_model()
        ctx.prune(model, {"conv9.weight": torch.ones(3)})
        return model

    monkeypatch.setitem(METHODS._items, "by-parameter", Method("by-parameter", by_parameter))
    monkeypatch.setitem(METHODS._items, "misnamed", Method("misnamed", misnamed))
    store = ResultStore(tmp_path)

    def run(method):
        cfg = RunConfig(method=method, dataset="synthetic", model="smallcnn", sparsity=0.9,
                        dense_epochs=1)
        return run_cell(cfg, store, RunOptions(progress=False, save_checkpoints=False))

    ok = run("by-parameter")
    assert ok["status"] == "ok", ok.get("error", {}).get("traceback")
    assert ok["sparsity"]["prunable_kept"] == keep_count(ok["sparsity"]["prunable_total"], 0.9)
    assert (ok["sparsity"]["target"], ok["sparsity"]["over"]) == (0.9, "prunable")
    bad = run("misnamed")
    assert bad["status"] == "failed"
    assert "scores names ['conv9.weight'], which are not prunable layers; expected the names " \
           "of Conv2d/Linear modules (5 here: 0, 3, 7, ...)" in bad["error"]["message"]
